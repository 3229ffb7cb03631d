-- Completes many jobs at once, each only if this worker holds it on the
-- same attempt; returns those completed.
UPDATE jobs j SET state = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = now()
FROM unnest($2::bigint[], $3::int[]) AS t(id, attempts)
WHERE j.id = t.id AND j.attempts = t.attempts AND j.locked_by = $1 AND j.state = 'running'
RETURNING j.id

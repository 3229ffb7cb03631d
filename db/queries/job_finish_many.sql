-- Completes many jobs at once, each only by its holder on the same attempt.
-- A job whose lease ran out while its worker could not reach the database
-- (and that was put back, or dead-lettered, but not claimed since: the
-- attempt number would have moved) may still be completed by that worker, so
-- an outage longer than a lease does not throw its work away. Returns the
-- ids completed.
UPDATE jobs j SET state = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = now()
FROM unnest($2::bigint[], $3::int[]) AS t(id, attempts)
WHERE j.id = t.id AND j.attempts = t.attempts
  AND ((j.state = 'running' AND j.locked_by = $1) OR (j.state IN ('queued', 'dead') AND j.locked_by IS NULL))
RETURNING j.id

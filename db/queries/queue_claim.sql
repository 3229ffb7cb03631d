-- Claims up to $2 ready jobs, highest priority first, skipping rows other
-- workers hold; each claim is an attempt and carries a lease of $3 seconds.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state = 'queued' AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET
    state = 'running', locked_by = $1, attempts = j.attempts + 1,
    lease_until = now() + make_interval(secs => $3::float8), updated_at = now()
FROM picked, images i
WHERE j.id = picked.id AND i.id = j.image_id
RETURNING j.id, j.image_id, j.attempts, j.max_attempts, j.priority, i.object_key, i.format, i.sha256

-- Leases that ran out (a worker died or stalled) go back to the queue; a job
-- that has used up its attempts is dead-lettered and its photo marked failed.
WITH expired AS (
    UPDATE jobs SET
        state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
        last_error = CASE WHEN attempts >= max_attempts
                          THEN 'lease expired on attempt ' || attempts || ' (' || coalesce(locked_by, '?') || ')'
                          ELSE last_error END,
        locked_by = NULL, lease_until = NULL, run_at = now(), updated_at = now()
    WHERE state = 'running' AND lease_until < now()
    RETURNING image_id, state
), failed AS (
    UPDATE images i SET status = 'failed'
    FROM expired e WHERE i.id = e.image_id AND e.state = 'dead'
    RETURNING i.id
)
SELECT (SELECT count(*) FROM expired) AS "requeued!", (SELECT count(*) FROM failed) AS "dead!"

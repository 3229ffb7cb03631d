-- A failed attempt, by its holder: back to the queue after $4 seconds, or
-- dead-lettered with the error once the attempts are used up, or at once
-- when $6 (the photo can never be scored: retrying would change nothing).
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts OR $6::bool THEN 'dead' ELSE 'queued' END,
    run_at = now() + make_interval(secs => $4::float8),
    last_error = $5, locked_by = NULL, lease_until = NULL, updated_at = now()
WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'
RETURNING state, image_id

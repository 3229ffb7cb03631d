-- Completion by the holder only: the same worker and the same attempt.
UPDATE jobs SET state = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = now()
WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'
RETURNING image_id

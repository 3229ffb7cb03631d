-- Completion by the holder: the same worker on the same attempt. A job whose
-- lease ran out while its worker could not reach the database (and that was
-- put back, or dead-lettered, but not claimed since: the attempt number
-- would have moved) may still be completed by that worker, so an outage
-- longer than a lease does not throw its work away.
UPDATE jobs SET state = 'done', locked_by = NULL, lease_until = NULL, last_error = NULL, updated_at = now()
WHERE id = $1 AND attempts = $3
  AND ((state = 'running' AND locked_by = $2) OR (state IN ('queued', 'dead') AND locked_by IS NULL))
RETURNING image_id

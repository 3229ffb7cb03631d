-- Puts dead-lettered jobs back in the queue with fresh attempts: the given
-- ids, or every dead job when $2. Jobs in any other state are left alone.
WITH retried AS (
    UPDATE jobs SET state = 'queued', attempts = 0, give_backs = 0, run_at = now(), locked_by = NULL,
        lease_until = NULL, last_error = NULL, updated_at = now()
    WHERE state = 'dead' AND (id = ANY($1) OR $2)
    RETURNING id, image_id
), imgs AS (
    UPDATE images SET status = 'queued' FROM retried WHERE images.id = retried.image_id
)
SELECT id, image_id FROM retried ORDER BY id

-- Gives a job back without counting the attempt; it is ready again after $4
-- seconds. When $5 (a timeout or a dead model thread, not a shutdown) the
-- give-back is counted, and the $6th one dead-letters the job: its photo is
-- marked failed and sent to review as 'scoring_failed'.
WITH released AS (
    UPDATE jobs SET
        give_backs = give_backs + CASE WHEN $5 THEN 1 ELSE 0 END,
        state = CASE WHEN $5 AND give_backs + 1 >= $6 THEN 'dead' ELSE 'queued' END,
        last_error = CASE WHEN $5 AND give_backs + 1 >= $6
                          THEN 'given_back: ' || (give_backs + 1) || ' times without a result (timeouts or model failures)'
                          ELSE last_error END,
        attempts = attempts - 1, locked_by = NULL, lease_until = NULL,
        run_at = now() + make_interval(secs => $4::float8), updated_at = now()
    WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'
    RETURNING id, image_id, state
), failed AS (
    UPDATE images i SET status = 'failed'
    FROM released r WHERE i.id = r.image_id AND r.state = 'dead'
    RETURNING i.id
), to_review AS (
    INSERT INTO review_items (image_id, reason, site_id)
    SELECT f.id, 'scoring_failed', s.site_id
    FROM failed f JOIN images i ON i.id = f.id JOIN studies s ON s.id = i.study_id
    WHERE NOT EXISTS (SELECT 1 FROM review_items r WHERE r.image_id = f.id AND r.reason = 'scoring_failed' AND r.state <> 'decided')
    RETURNING 1
)
SELECT state AS "state!" FROM released

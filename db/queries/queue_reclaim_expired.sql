-- Leases that ran out (a worker died or stalled) go back to the queue; a job
-- that has used up its attempts is dead-lettered, its photo marked failed and
-- sent to review as 'scoring_failed'. A lease that ran out while the database
-- was down is not the worker's fault: for $1 seconds (a lease) after the
-- database starts, its holder may still renew it, so an outage costs no attempt.
WITH expired AS (
    UPDATE jobs SET
        state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
        last_error = CASE WHEN attempts >= max_attempts
                          THEN 'lease expired on attempt ' || attempts || ' (' || coalesce(locked_by, '?') || ')'
                          ELSE last_error END,
        locked_by = NULL, lease_until = NULL, run_at = now(), updated_at = now()
    WHERE state = 'running'
      AND greatest(lease_until, pg_postmaster_start_time() + make_interval(secs => $1::float8)) < now()
    RETURNING image_id, state
), failed AS (
    UPDATE images i SET status = 'failed'
    FROM expired e WHERE i.id = e.image_id AND e.state = 'dead'
    RETURNING i.id
), to_review AS (
    -- A dead-lettered photo stays in the clinical workflow.
    INSERT INTO review_items (image_id, reason, site_id)
    SELECT f.id, 'scoring_failed', s.site_id
    FROM failed f JOIN images i ON i.id = f.id JOIN studies s ON s.id = i.study_id
    WHERE NOT EXISTS (SELECT 1 FROM review_items r WHERE r.image_id = f.id AND r.reason = 'scoring_failed' AND r.state <> 'decided')
    RETURNING 1
)
SELECT (SELECT count(*) FROM expired) AS "requeued!", (SELECT count(*) FROM failed) AS "dead!"

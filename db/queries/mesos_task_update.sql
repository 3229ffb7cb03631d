-- The last state Mesos reported. A terminal state is final: a late or
-- reordered update never brings a task back to life.
UPDATE mesos_tasks SET
    state = CASE WHEN ended_at IS NULL THEN $2 ELSE state END,
    reason = CASE WHEN ended_at IS NULL THEN $3 ELSE reason END,
    message = CASE WHEN ended_at IS NULL THEN $4 ELSE message END,
    agent_id = coalesce($5, agent_id),
    running_at = CASE WHEN $2 = 'TASK_RUNNING' THEN coalesce(running_at, now()) ELSE running_at END,
    ended_at = CASE WHEN $6 THEN coalesce(ended_at, now()) ELSE ended_at END,
    updated_at = now()
WHERE task_id = $1 AND framework = $7
RETURNING ended_at IS NOT NULL AS "ended!", kill_requested_at IS NOT NULL AS "kill_requested!"

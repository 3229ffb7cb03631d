UPDATE mesos_tasks SET kill_requested_at = coalesce(kill_requested_at, now()), updated_at = now()
WHERE task_id = $1 AND framework = $2

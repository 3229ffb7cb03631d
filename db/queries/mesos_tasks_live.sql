SELECT task_id, agent_id, state, launched_at, running_at, kill_requested_at
FROM mesos_tasks WHERE framework = $1 AND ended_at IS NULL
ORDER BY launched_at, task_id

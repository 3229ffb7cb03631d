-- Written before the ACCEPT that launches it: a task Mesos knows of is never
-- unknown here, even if this process dies right after the call.
INSERT INTO mesos_tasks (task_id, framework, agent_id, hostname, state)
VALUES ($1, $2, $3, $4, 'TASK_STAGING')

-- The master removed the framework (its failover timeout ran out, or it was
-- torn down): its tasks are gone with it, and the next subscription starts afresh.
WITH gone AS (
    UPDATE mesos_tasks SET state = 'TASK_GONE', reason = 'framework removed', ended_at = now(), updated_at = now()
    WHERE framework = $1 AND ended_at IS NULL
)
DELETE FROM mesos_frameworks WHERE name = $1

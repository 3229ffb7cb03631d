-- What the scaler needs from the queue, in one round trip: the backlog of
-- urgent (phone, priority > 0) and batch jobs, the age of the oldest urgent
-- job that is ready, urgent arrivals and finished jobs over the last $1
-- seconds, and the worker-seconds our tasks ran in that window.
SELECT
    q.urgent_queued AS "urgent_queued!", q.batch_queued AS "batch_queued!", q.running AS "running!",
    q.urgent_oldest_secs,
    (SELECT count(*) FROM jobs WHERE priority > 0 AND created_at > now() - make_interval(secs => $1)) AS "urgent_arrived!",
    (SELECT count(*) FROM jobs WHERE state = 'done' AND updated_at > now() - make_interval(secs => $1)) AS "done!",
    (SELECT coalesce(sum(extract(epoch FROM
         least(coalesce(ended_at, now()), now()) - greatest(running_at, now() - make_interval(secs => $1)))), 0)::float8
     FROM mesos_tasks
     WHERE framework = $2 AND running_at IS NOT NULL
       AND (ended_at IS NULL OR ended_at > now() - make_interval(secs => $1))) AS "worker_secs!"
FROM (
    SELECT
        count(*) FILTER (WHERE state = 'queued' AND priority > 0) AS urgent_queued,
        count(*) FILTER (WHERE state = 'queued' AND priority <= 0) AS batch_queued,
        count(*) FILTER (WHERE state = 'running') AS running,
        extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND priority > 0 AND run_at <= now()))::float8 AS urgent_oldest_secs
    FROM jobs WHERE state IN ('queued', 'running')
) q

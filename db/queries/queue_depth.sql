SELECT count(*) FILTER (WHERE state = 'queued') AS "queued!",
       count(*) FILTER (WHERE state = 'running') AS "running!",
       count(*) FILTER (WHERE state = 'dead') AS "dead!"
FROM jobs WHERE state <> 'done'

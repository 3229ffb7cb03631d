SELECT count(*) FILTER (WHERE state = 'queued') AS "queued!",
       count(*) FILTER (WHERE state = 'queued' AND priority > 0) AS "urgent!",
       count(*) FILTER (WHERE state = 'running') AS "running!",
       count(*) FILTER (WHERE state = 'dead') AS "dead!"
FROM jobs WHERE state <> 'done'

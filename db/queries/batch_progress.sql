SELECT count(*) AS "total!",
       count(*) FILTER (WHERE j.state = 'done') AS "done!",
       count(*) FILTER (WHERE j.state = 'dead') AS "dead!"
FROM batch_images b JOIN jobs j ON j.image_id = b.image_id AND j.kind = 'score'
WHERE b.batch_id = $1

-- Per reader: reads, how many matched the final outcome (of decided items),
-- and the median time from opening an item to deciding it.
SELECT u.name AS "name!", count(*) AS "reads!",
       count(*) FILTER (WHERE ri.state = 'decided') AS "decided!",
       count(*) FILTER (WHERE ri.state = 'decided' AND d.decision = ri.final_decision) AS "agreed!",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - d.started_at)::float8) AS median_secs
FROM review_decisions d
JOIN users u ON u.id = d.user_id
JOIN review_items ri ON ri.id = d.item_id
WHERE ri.site_id = ANY($1::uuid[])
GROUP BY u.name
ORDER BY u.name

-- The worklist's header: undecided items per reason and state, and the oldest.
SELECT ri.reason, ri.state, count(*) AS "n!", min(ri.created_at) AS "oldest!"
FROM review_items ri
WHERE ri.state <> 'decided' AND ri.site_id = ANY($1::uuid[])
GROUP BY ri.reason, ri.state

-- Upload to final outcome, in seconds.
SELECT count(*) AS "n!",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ri.decided_at - i.created_at)::float8) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM ri.decided_at - i.created_at)::float8) AS p90
FROM review_items ri JOIN images i ON i.id = ri.image_id
WHERE ri.state = 'decided' AND ri.site_id = ANY($1::uuid[])

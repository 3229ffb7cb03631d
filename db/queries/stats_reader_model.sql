-- Every read beside the model's label for the same photo (grader-model agreement).
SELECT m.name AS model_name, m.version AS model_version, d.decision AS reader, r.label AS model, count(*) AS "n!"
FROM review_decisions d
JOIN review_items ri ON ri.id = d.item_id
JOIN results r ON r.id = ri.result_id
JOIN model_versions m ON m.id = r.model_version_id
WHERE d.stage = 'read' AND ri.site_id = ANY($1::uuid[])
GROUP BY 1, 2, 3, 4

-- Decided items: the model's label against the final human outcome, per
-- model version and review reason.
SELECT m.name AS model_name, m.version AS model_version, ri.reason, r.label AS model_label,
       ri.final_decision AS "final_decision!", count(*) AS "n!"
FROM review_items ri
JOIN results r ON r.id = ri.result_id
JOIN model_versions m ON m.id = r.model_version_id
WHERE ri.state = 'decided' AND ri.site_id = ANY($1::uuid[])
GROUP BY 1, 2, 3, 4, 5

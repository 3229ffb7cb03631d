SELECT r.glaucoma_score, r.gradable_score, r.label, r.heatmap_key, r.created_at,
       m.name AS model_name, m.version AS model_version, m.threshold,
       ri.reason AS "review_reason?"
FROM results r
JOIN model_versions m ON m.id = r.model_version_id
LEFT JOIN review_items ri ON ri.result_id = r.id
WHERE r.image_id = $1
ORDER BY r.created_at DESC
LIMIT 1

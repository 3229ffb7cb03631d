-- A row per photo of the batch with its site, latest result and review reason.
SELECT b.name, b.image_id, st.name AS site, b.label AS truth, j.state AS job_state, j.attempts, j.last_error,
       r.glaucoma_score AS "glaucoma_score?", r.gradable_score AS "gradable_score?",
       r.label AS "label?", r.heatmap_key, m.name AS "model_name?", m.version AS "model_version?",
       m.threshold AS "threshold?", ri.reason AS "review_reason?"
FROM batch_images b
JOIN jobs j ON j.image_id = b.image_id AND j.kind = 'score'
JOIN images i ON i.id = b.image_id
JOIN studies sd ON sd.id = i.study_id
JOIN sites st ON st.id = sd.site_id
LEFT JOIN LATERAL (
    SELECT * FROM results WHERE image_id = b.image_id ORDER BY created_at DESC LIMIT 1
) r ON true
LEFT JOIN model_versions m ON m.id = r.model_version_id
LEFT JOIN review_items ri ON ri.result_id = r.id
WHERE b.batch_id = $1
ORDER BY b.name

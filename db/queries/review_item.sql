-- One item with what the viewer shows: the photo, its study, the model's
-- output and the live claim.
SELECT ri.id, ri.image_id, ri.reason, ri.state, ri.blinded, ri.created_at, ri.site_id, st.name AS site,
       CASE WHEN ri.claim_until > now() THEN ri.claimed_by END AS "claimed_by?",
       CASE WHEN ri.claim_until > now() THEN cu.name END AS "claimed_by_name?",
       ri.claimed_at,
       i.study_id, i.eye, i.width, i.height, i.format, i.quality, i.created_at AS uploaded_at,
       sd.patient_ref, sd.captured_at,
       r.glaucoma_score AS "glaucoma_score?", r.gradable_score AS "gradable_score?", r.label AS "label?",
       r.heatmap_key, m.name AS "model_name?", m.version AS "model_version?", m.threshold AS "threshold?",
       ri.final_decision, ri.final_action, ri.final_cdr, ri.decided_at, ri.decided_role
FROM review_items ri
JOIN images i ON i.id = ri.image_id
JOIN studies sd ON sd.id = i.study_id
JOIN sites st ON st.id = ri.site_id
LEFT JOIN results r ON r.id = ri.result_id
LEFT JOIN model_versions m ON m.id = r.model_version_id
LEFT JOIN users cu ON cu.id = ri.claimed_by
WHERE ri.id = $1

-- Final human outcomes, oldest decision first, for training.
SELECT ri.image_id, i.object_key, i.format, i.eye, sd.patient_ref, st.name AS site,
       ri.final_decision AS "final_decision!", ri.final_action, ri.final_cdr, ri.decided_at AS "decided_at!",
       ri.decided_role AS "decided_role!", ri.reason
FROM review_items ri
JOIN images i ON i.id = ri.image_id
JOIN studies sd ON sd.id = i.study_id
JOIN sites st ON st.id = sd.site_id
WHERE ri.state = 'decided' AND ($1::timestamptz IS NULL OR ri.decided_at >= $1)
ORDER BY ri.decided_at, ri.id

-- Each photo of a study with the model's latest label and its latest review
-- item: what the study's outcome is made of.
SELECT i.id, i.eye, i.status, i.created_at,
       r.label AS "model_label?",
       ri.id AS "item_id?", ri.state AS "review_state?",
       -- As the photo routes judge it: any undecided blinded read of the photo.
       EXISTS (SELECT 1 FROM review_items b WHERE b.image_id = i.id AND b.blinded AND b.state <> 'decided') AS "blinded!",
       ri.final_decision AS "final_decision?", ri.final_action AS "final_action?",
       ri.decided_at AS "decided_at?", ri.decided_role AS "decided_role?"
FROM images i
LEFT JOIN LATERAL (SELECT label FROM results WHERE image_id = i.id ORDER BY created_at DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (
    SELECT id, state, final_decision, final_action, decided_at, decided_role
    FROM review_items WHERE image_id = i.id ORDER BY created_at DESC LIMIT 1
) ri ON true
WHERE i.study_id = $1
ORDER BY i.eye, i.created_at

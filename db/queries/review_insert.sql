-- A review item carries its site (for the worklist's index) and is blinded
-- when it is a QA read.
INSERT INTO review_items (image_id, result_id, reason, site_id, blinded)
SELECT i.id, $2, $3, s.site_id, $3 = 'qa_sample'
FROM images i JOIN studies s ON s.id = i.study_id
WHERE i.id = $1
ON CONFLICT (image_id, result_id) DO NOTHING

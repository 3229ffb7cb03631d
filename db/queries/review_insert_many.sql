-- Review items for many photos: each carries its site (for the worklist's
-- index) and is blinded when it is a QA read.
INSERT INTO review_items (image_id, result_id, reason, site_id, blinded)
SELECT i.id, t.result_id, t.reason, s.site_id, t.reason = 'qa_sample'
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS t(image_id, result_id, reason)
JOIN images i ON i.id = t.image_id
JOIN studies s ON s.id = i.study_id
ON CONFLICT (image_id, result_id) DO NOTHING

-- What serving a photo to a reader needs: its object, its site, whether a
-- blinded read of it is under way (then no model output may be shown), and
-- the latest heatmap.
SELECT i.object_key, i.format, s.site_id,
       EXISTS (SELECT 1 FROM review_items ri WHERE ri.image_id = i.id AND ri.blinded AND ri.state <> 'decided') AS "blinded!",
       (SELECT r.heatmap_key FROM results r WHERE r.image_id = i.id ORDER BY r.created_at DESC LIMIT 1) AS "heatmap_key?",
       (SELECT ri.id FROM review_items ri WHERE ri.image_id = i.id ORDER BY ri.created_at DESC LIMIT 1) AS "item_id?"
FROM images i JOIN studies s ON s.id = i.study_id
WHERE i.id = $1

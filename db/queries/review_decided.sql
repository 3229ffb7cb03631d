-- Decided items of the given sites, most recently decided first.
SELECT ri.id, ri.image_id, i.study_id, st.name AS site, i.eye, ri.reason, ri.state, ri.created_at,
       NULL::text AS "claimed_by?"
FROM review_items ri
JOIN images i ON i.id = ri.image_id
JOIN sites st ON st.id = ri.site_id
WHERE ri.state = 'decided' AND ri.site_id = ANY($1::uuid[])
  AND ($2::text IS NULL OR ri.reason = $2)
ORDER BY ri.decided_at DESC, ri.id
LIMIT $3

-- Undecided items of the given sites in clinical order (referable, ungradable,
-- uncertain, QA sample; oldest first), in the given states, with the reason
-- filter when $3 is set, leaving out items user $4 has already read.
SELECT ri.id, ri.image_id, i.study_id, st.name AS site, i.eye, ri.reason, ri.state, ri.created_at,
       CASE WHEN ri.claim_until > now() THEN u.name END AS "claimed_by?"
FROM review_items ri
JOIN images i ON i.id = ri.image_id
JOIN sites st ON st.id = ri.site_id
LEFT JOIN users u ON u.id = ri.claimed_by
WHERE ri.state <> 'decided' AND ri.state = ANY($2::text[])
  AND ri.site_id = ANY($1::uuid[])
  AND ($3::text IS NULL OR ri.reason = $3)
  AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.item_id = ri.id AND d.user_id = $4)
ORDER BY ri.rank, ri.created_at, ri.id
LIMIT $5

-- A dead-lettered photo goes to review as 'scoring_failed' (once: not while
-- an undecided one is there).
INSERT INTO review_items (image_id, reason, site_id)
SELECT i.id, 'scoring_failed', s.site_id
FROM images i JOIN studies s ON s.id = i.study_id
WHERE i.id = $1
  AND NOT EXISTS (SELECT 1 FROM review_items r WHERE r.image_id = $1 AND r.reason = 'scoring_failed' AND r.state <> 'decided')

-- A dead-lettered job completed after all (by the worker whose lease ran
-- out): its 'scoring_failed' item goes, unless someone has read it already.
DELETE FROM review_items r
WHERE r.image_id = $1 AND r.reason = 'scoring_failed' AND r.state = 'open'
  AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.item_id = r.id)

-- Dead-lettered jobs completed after all (by the worker whose lease ran out):
-- their 'scoring_failed' items go, unless someone has read them already.
DELETE FROM review_items r
WHERE r.image_id = ANY($1::uuid[]) AND r.reason = 'scoring_failed' AND r.state = 'open'
  AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.item_id = r.id)

-- Takes or renews the claim unless someone else holds a live one, the item
-- is decided, it awaits arbitration and $4 (the reader is a senior) is false,
-- or this reader has already read it. Two graders racing for one item: the
-- second UPDATE waits for the first to commit, re-reads the row and finds it
-- held.
UPDATE review_items SET
    claimed_by = $2,
    claimed_at = CASE WHEN claimed_by = $2 AND claim_until > now() THEN claimed_at ELSE now() END,
    claim_until = now() + make_interval(secs => $3::float8)
WHERE id = $1
  AND (state = 'open' OR (state = 'arbitration' AND $4::bool))
  AND (claimed_by IS NULL OR claimed_by = $2 OR claim_until <= now())
  AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.item_id = $1 AND d.user_id = $2)
RETURNING claimed_at AS "claimed_at!"

-- Claims the first item of user $3's worklist (sites $1, states $2) that
-- nobody holds, skipping rows another claim is locking right now.
WITH next AS (
    SELECT ri.id FROM review_items ri
    WHERE ri.state <> 'decided' AND ri.state = ANY($2::text[])
      AND ri.site_id = ANY($1::uuid[])
      AND (ri.claimed_by IS NULL OR ri.claim_until <= now() OR ri.claimed_by = $3)
      AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.item_id = ri.id AND d.user_id = $3)
    ORDER BY ri.rank, ri.created_at, ri.id
    LIMIT 1
    FOR UPDATE OF ri SKIP LOCKED
)
UPDATE review_items ri SET claimed_by = $3, claimed_at = now(),
    claim_until = now() + make_interval(secs => $4::float8)
FROM next WHERE ri.id = next.id
RETURNING ri.id

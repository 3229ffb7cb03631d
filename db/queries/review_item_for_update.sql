-- Locks an item for a decision.
SELECT ri.state, ri.reason, ri.blinded, ri.site_id, ri.image_id,
       ri.claimed_by, ri.claimed_at, coalesce(ri.claim_until > now(), false) AS "claim_live!",
       r.label AS "model_label?"
FROM review_items ri LEFT JOIN results r ON r.id = ri.result_id
WHERE ri.id = $1
FOR UPDATE OF ri

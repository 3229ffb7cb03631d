UPDATE review_items SET claimed_by = NULL, claimed_at = NULL, claim_until = NULL
WHERE id = $1 AND claimed_by = $2 AND state <> 'decided'
RETURNING id

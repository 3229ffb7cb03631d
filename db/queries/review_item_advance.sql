-- After a read: still open (another read is due), to arbitration, or decided
-- with the final outcome. The claim ends either way.
UPDATE review_items SET state = $2, final_decision = $3, final_action = $4, final_cdr = $5,
    decided_role = $6, decided_at = CASE WHEN $2 = 'decided' THEN now() END,
    claimed_by = NULL, claimed_at = NULL, claim_until = NULL
WHERE id = $1

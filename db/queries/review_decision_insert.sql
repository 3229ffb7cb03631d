INSERT INTO review_decisions (item_id, user_id, role, stage, decision, ungradable_action, cdr, note, model_shown, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id

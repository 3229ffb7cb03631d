SELECT d.id, u.name AS user_name, d.role, d.stage, d.decision, d.ungradable_action, d.cdr, d.note,
       d.model_shown, d.started_at, d.created_at
FROM review_decisions d JOIN users u ON u.id = d.user_id
WHERE d.item_id = $1 ORDER BY d.id

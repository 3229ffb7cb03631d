SELECT d.user_id, d.role, d.stage, d.decision, d.ungradable_action, d.cdr
FROM review_decisions d WHERE d.item_id = $1 ORDER BY d.id

SELECT EXISTS (SELECT 1 FROM review_decisions WHERE item_id = $1 AND user_id = $2) AS "read!"

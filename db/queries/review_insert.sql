INSERT INTO review_items (image_id, result_id, reason) VALUES ($1, $2, $3)
ON CONFLICT (image_id, result_id) DO NOTHING

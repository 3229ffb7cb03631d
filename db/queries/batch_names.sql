SELECT name FROM batch_images WHERE batch_id = $1

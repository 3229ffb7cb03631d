INSERT INTO batch_images (batch_id, name, image_id, label) VALUES ($1, $2, $3, $4)
ON CONFLICT (batch_id, name) DO NOTHING

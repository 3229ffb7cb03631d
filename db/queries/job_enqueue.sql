INSERT INTO jobs (image_id, kind, priority) VALUES ($1, 'score', $2) RETURNING id

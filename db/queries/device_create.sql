INSERT INTO devices (site_id, name, token_hash) VALUES ($1, $2, $3) RETURNING id

INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) RETURNING id

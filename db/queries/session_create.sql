INSERT INTO sessions (id_hash, user_id, csrf_token, addr, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))

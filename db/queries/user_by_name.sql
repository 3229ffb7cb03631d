SELECT id, name, role, password_hash, disabled_at FROM users WHERE name = $1

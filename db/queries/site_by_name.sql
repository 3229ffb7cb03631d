SELECT id, name, created_at FROM sites WHERE name = $1

SELECT id FROM sites WHERE name = $1

UPDATE sessions SET last_seen = now() WHERE id_hash = $1

INSERT INTO audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)

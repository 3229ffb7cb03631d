SELECT id, at, actor, action, subject, detail FROM audit_log
WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::text IS NULL OR actor = $2)
ORDER BY id
LIMIT $3

-- A concurrent retry of the same upload loses the race here and reads the
-- winner's row instead (the caller does that when nothing is returned).
INSERT INTO images (study_id, eye, sha256, object_key, format, width, height,
                    size_bytes, quality, idempotency_key, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued')
ON CONFLICT DO NOTHING
RETURNING id

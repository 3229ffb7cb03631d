-- The same patient's earlier studies at the same site, newest first.
SELECT id, captured_at FROM studies
WHERE site_id = $1 AND patient_ref = $2 AND id <> $3 AND captured_at <= $4
ORDER BY captured_at DESC
LIMIT 20

UPDATE devices d SET revoked_at = now()
FROM sites s
WHERE d.site_id = s.id AND s.name = $1 AND d.name = $2 AND d.revoked_at IS NULL
RETURNING d.id

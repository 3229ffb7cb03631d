SELECT d.id AS device_id, d.site_id, s.name AS site_name
FROM devices d JOIN sites s ON s.id = d.site_id
WHERE d.token_hash = $1 AND d.revoked_at IS NULL

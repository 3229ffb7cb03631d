SELECT d.id, s.name AS site, d.name, d.created_at, d.revoked_at
FROM devices d JOIN sites s ON s.id = d.site_id
ORDER BY s.name, d.name

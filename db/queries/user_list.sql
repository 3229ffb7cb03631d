SELECT u.id, u.name, u.role, u.created_at, u.disabled_at,
       coalesce(array_agg(s.name ORDER BY s.name) FILTER (WHERE s.name IS NOT NULL), '{}') AS "sites!"
FROM users u
LEFT JOIN user_sites us ON us.user_id = u.id
LEFT JOIN sites s ON s.id = us.site_id
GROUP BY u.id
ORDER BY u.name

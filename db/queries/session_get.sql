-- A live session: before its absolute expiry, not idle for longer than $2
-- seconds, and its user not disabled. Admins see every site.
SELECT s.user_id, s.csrf_token, s.last_seen, u.name, u.role,
       -- Ids and names in the same order (by name): the n-th id is the n-th name's.
       CASE WHEN u.role = 'admin'
            THEN coalesce((SELECT array_agg(id ORDER BY name) FROM sites), '{}')
            ELSE coalesce((SELECT array_agg(st.id ORDER BY st.name) FROM user_sites us
                           JOIN sites st ON st.id = us.site_id WHERE us.user_id = u.id), '{}')
       END AS "site_ids!",
       CASE WHEN u.role = 'admin'
            THEN coalesce((SELECT array_agg(name ORDER BY name) FROM sites), '{}')
            ELSE coalesce((SELECT array_agg(st.name ORDER BY st.name) FROM user_sites us
                           JOIN sites st ON st.id = us.site_id WHERE us.user_id = u.id), '{}')
       END AS "site_names!"
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id_hash = $1 AND s.expires_at > now()
  AND s.last_seen > now() - make_interval(secs => $2::float8)
  AND u.disabled_at IS NULL

-- Dead-lettered jobs, oldest first, with where their photo came from.
SELECT j.id, j.image_id, s.name AS site, j.attempts, j.last_error, j.updated_at
FROM jobs j
JOIN images i ON i.id = j.image_id
JOIN studies st ON st.id = i.study_id
JOIN sites s ON s.id = st.site_id
WHERE j.state = 'dead'
ORDER BY j.updated_at, j.id
LIMIT $1

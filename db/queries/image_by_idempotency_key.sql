SELECT i.id, i.study_id, s.site_id, i.eye, i.status, i.format, i.width, i.height,
       i.size_bytes, i.sha256, i.quality, i.created_at
FROM images i JOIN studies s ON s.id = i.study_id
WHERE i.study_id = $1 AND i.idempotency_key = $2

-- A photo a clinician has reviewed keeps that status.
UPDATE images i SET status = t.status
FROM unnest($1::uuid[], $2::text[]) AS t(id, status)
WHERE i.id = t.id AND i.status <> 'reviewed'

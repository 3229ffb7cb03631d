-- A photo a clinician has reviewed keeps that status.
UPDATE images SET status = $2 WHERE id = $1 AND status <> 'reviewed'

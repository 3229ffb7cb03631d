INSERT INTO batches (source, study_id) VALUES ($1, $2)
ON CONFLICT (source) DO NOTHING
RETURNING id

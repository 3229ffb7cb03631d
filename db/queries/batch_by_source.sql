SELECT id, study_id FROM batches WHERE source = $1

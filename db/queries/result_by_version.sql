SELECT id FROM results WHERE image_id = $1 AND model_version_id = $2

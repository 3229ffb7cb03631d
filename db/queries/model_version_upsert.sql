INSERT INTO model_versions (name, version, mlflow_run_id, weights_uri, threshold, preprocessing)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name, version) DO UPDATE SET name = EXCLUDED.name
RETURNING id

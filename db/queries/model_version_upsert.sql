-- A (name, version) is one model. Loading it again with other weights or card
-- (the digest), threshold or preprocessing returns no row: refused, not
-- merged. A row from before digests were kept takes the first one seen.
INSERT INTO model_versions (name, version, mlflow_run_id, weights_uri, threshold, preprocessing, digest)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name, version) DO UPDATE SET digest = coalesce(model_versions.digest, EXCLUDED.digest)
WHERE (model_versions.digest IS NULL OR model_versions.digest = EXCLUDED.digest)
  AND model_versions.threshold = EXCLUDED.threshold
  AND model_versions.preprocessing = EXCLUDED.preprocessing
RETURNING id

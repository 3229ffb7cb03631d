INSERT INTO studies (site_id, device_id, patient_ref, captured_at, device_model, metadata)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id

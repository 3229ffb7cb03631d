-- One result per (image, model version): a job run twice writes nothing new.
INSERT INTO results (image_id, model_version_id, glaucoma_score, gradable_score, label, heatmap_key, qa_rate, qa_sampled,
                     threshold, gradable_threshold, uncertainty_band)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (image_id, model_version_id) DO NOTHING
RETURNING id

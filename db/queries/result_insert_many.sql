-- One result per (image, model version), for many photos in one statement: a
-- job run twice writes nothing new. Returns the result of every pair given,
-- written now or before (the second half sees only rows from before: a
-- statement does not see its own inserts).
WITH t AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::real[], $4::real[], $5::text[], $6::text[], $7::real[], $8::bool[],
                         $9::real[], $10::real[], $11::real[])
        AS t(image_id, model_version_id, glaucoma_score, gradable_score, label, heatmap_key, qa_rate, qa_sampled,
             threshold, gradable_threshold, uncertainty_band)
), ins AS (
    INSERT INTO results (image_id, model_version_id, glaucoma_score, gradable_score, label, heatmap_key, qa_rate, qa_sampled,
                         threshold, gradable_threshold, uncertainty_band)
    SELECT image_id, model_version_id, glaucoma_score, gradable_score, label, NULLIF(heatmap_key, ''), qa_rate, qa_sampled,
           threshold, gradable_threshold, uncertainty_band
    FROM t
    ON CONFLICT (image_id, model_version_id) DO NOTHING
    RETURNING id, image_id, model_version_id
)
SELECT id AS "id!", image_id AS "image_id!", model_version_id AS "model_version_id!" FROM ins
UNION ALL
SELECT r.id, r.image_id, r.model_version_id FROM results r JOIN t USING (image_id, model_version_id)

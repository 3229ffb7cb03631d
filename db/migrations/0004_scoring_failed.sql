-- A photo whose scoring was dead-lettered stays in the clinical workflow: it
-- becomes a review item with the reason 'scoring_failed', ranked after the
-- ungradable photos and before the uncertain ones (a person must look, and
-- most likely ask for a retake).
ALTER TABLE review_items DROP CONSTRAINT review_items_reason_check;
ALTER TABLE review_items ADD CONSTRAINT review_items_reason_check
    CHECK (reason IN ('referable', 'ungradable', 'scoring_failed', 'uncertain', 'qa_sample'));
DROP INDEX review_items_worklist, review_items_worklist_all, review_items_arbitration;
ALTER TABLE review_items DROP COLUMN rank;
ALTER TABLE review_items ADD COLUMN rank smallint GENERATED ALWAYS AS (
    CASE reason WHEN 'referable' THEN 0 WHEN 'ungradable' THEN 1 WHEN 'scoring_failed' THEN 2
                WHEN 'uncertain' THEN 3 ELSE 4 END
) STORED;
CREATE INDEX review_items_worklist ON review_items (site_id, rank, created_at, id) INCLUDE (state) WHERE state <> 'decided';
CREATE INDEX review_items_worklist_all ON review_items (rank, created_at, id) WHERE state <> 'decided';
CREATE INDEX review_items_arbitration ON review_items (site_id, rank, created_at) WHERE state = 'arbitration';

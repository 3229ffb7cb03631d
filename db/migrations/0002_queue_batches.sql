-- Photos whose scoring job was dead-lettered are 'failed'; batch screening
-- records which photos a batch holds, under the name its source gave them.

ALTER TABLE images DROP CONSTRAINT images_status_check;
ALTER TABLE images ADD CONSTRAINT images_status_check
    CHECK (status IN ('received', 'queued', 'scored', 'in_review', 'reviewed', 'failed'));

-- A batch is named by its source (an object-store prefix or a manifest's path
-- and digest), so running the same source again finds the same batch.
CREATE TABLE batches (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source      text NOT NULL UNIQUE CHECK (source <> ''),
    study_id    uuid NOT NULL REFERENCES studies (id),
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE batch_images (
    batch_id  uuid NOT NULL REFERENCES batches (id),
    name      text NOT NULL CHECK (name <> ''),
    image_id  uuid NOT NULL REFERENCES images (id),
    -- The manifest's label, when it has one: true for glaucoma.
    label     boolean,
    PRIMARY KEY (batch_id, name)
);

CREATE INDEX results_model_version ON results (model_version_id);
CREATE INDEX review_items_open ON review_items (created_at) WHERE state = 'open';

-- Batch sources (a bare object-store prefix) may not say which eye a photo is.
ALTER TABLE images DROP CONSTRAINT images_eye_check;
ALTER TABLE images ADD CONSTRAINT images_eye_check CHECK (eye IN ('left', 'right', 'unknown'));

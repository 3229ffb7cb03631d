-- The first cut of the schema: who uploads (sites, devices), what was uploaded
-- (studies, images), the work queue (jobs), what the models said (model_versions,
-- results), what needs a human (review_items), and who did what (audit_log).
-- Text columns with CHECK constraints stand in for enums: they read well in psql
-- and need no type mapping in the Rust code.

CREATE TABLE sites (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A device token is shown once at creation; only its SHA-256 is kept.
CREATE TABLE devices (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id     uuid NOT NULL REFERENCES sites (id),
    name        text NOT NULL CHECK (name <> '' AND length(name) <= 128),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    UNIQUE (site_id, name)
);

CREATE TABLE studies (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id       uuid NOT NULL REFERENCES sites (id),
    device_id     uuid REFERENCES devices (id),
    patient_ref   text NOT NULL CHECK (patient_ref <> '' AND length(patient_ref) <= 128),
    captured_at   timestamptz NOT NULL,
    device_model  text CHECK (length(device_model) <= 128),
    metadata      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX studies_site ON studies (site_id, created_at);

-- One row per photo of a study. The object is content-addressed (object_key is
-- derived from sha256), so the same bytes in two studies share one object.
CREATE TABLE images (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    study_id         uuid NOT NULL REFERENCES studies (id),
    eye              text NOT NULL CHECK (eye IN ('left', 'right')),
    sha256           bytea NOT NULL CHECK (length(sha256) = 32),
    object_key       text NOT NULL,
    format           text NOT NULL CHECK (format IN ('jpeg', 'png', 'dicom')),
    width            integer NOT NULL CHECK (width > 0),
    height           integer NOT NULL CHECK (height > 0),
    size_bytes       bigint NOT NULL CHECK (size_bytes > 0),
    quality          jsonb NOT NULL,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('received', 'queued', 'scored', 'in_review', 'reviewed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (study_id, sha256),
    UNIQUE (study_id, idempotency_key)
);
CREATE INDEX images_object_key ON images (object_key);

-- The work queue. A job is claimed with FOR UPDATE SKIP LOCKED, held under a
-- lease, and completed only by its holder. Higher priority runs first.
CREATE TABLE jobs (
    id            bigserial PRIMARY KEY,
    image_id      uuid NOT NULL REFERENCES images (id),
    kind          text NOT NULL DEFAULT 'score' CHECK (kind IN ('score')),
    priority      smallint NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (image_id, kind)
);
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';

CREATE TABLE model_versions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL,
    version        text NOT NULL,
    mlflow_run_id  text,
    weights_uri    text NOT NULL,
    threshold      real NOT NULL CHECK (threshold >= 0 AND threshold <= 1),
    preprocessing  jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

-- Written once per (image, model version), however often a job is retried.
CREATE TABLE results (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    image_id          uuid NOT NULL REFERENCES images (id),
    model_version_id  uuid NOT NULL REFERENCES model_versions (id),
    glaucoma_score    real NOT NULL CHECK (glaucoma_score >= 0 AND glaucoma_score <= 1),
    gradable_score    real NOT NULL CHECK (gradable_score >= 0 AND gradable_score <= 1),
    label             text NOT NULL CHECK (label IN ('referable', 'non_referable', 'ungradable')),
    heatmap_key       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (image_id, model_version_id)
);

CREATE TABLE review_items (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    image_id    uuid NOT NULL REFERENCES images (id),
    result_id   uuid REFERENCES results (id),
    reason      text NOT NULL CHECK (reason IN ('referable', 'ungradable', 'uncertain')),
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'claimed', 'decided')),
    claimed_by  text,
    decision    text,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz,
    UNIQUE (image_id, result_id)
);

CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text,
    detail   jsonb NOT NULL DEFAULT '{}'
);

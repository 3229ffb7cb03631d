-- Clinician review: the people who read photos (users, their sites, their
-- sessions), the reading workflow on review_items (claims under a lease,
-- first reads, arbitration by a senior, the final outcome), the append-only
-- decisions, and the QA sample recorded with each result.

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role           text NOT NULL CHECK (role IN ('grader', 'senior', 'admin')),
    -- argon2id, PHC string format.
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- The sites whose photos a user may see (admins see every site).
CREATE TABLE user_sites (
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    site_id  uuid NOT NULL REFERENCES sites (id),
    PRIMARY KEY (user_id, site_id)
);

-- Server-side sessions. The cookie holds 256 random bits; only their SHA-256
-- is kept, so a copy of this table opens no session.
CREATE TABLE sessions (
    id_hash     bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL CHECK (length(csrf_token) >= 32),
    addr        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    -- Absolute expiry; idle expiry is last_seen plus the configured idle time.
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Log-in attempts that have not succeeded, for throttling per account and
-- per client address: written before the password is checked (so parallel
-- guesses count against each other) and deleted when it was right. Rows
-- older than the throttle window are deleted as new ones arrive.
CREATE TABLE login_failures (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    addr      text NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_addr ON login_failures (addr, at);

-- The reading workflow. An item is 'open' until its first reads are done,
-- then 'arbitration' when the reads disagree (with each other, or with a
-- referable model output), then 'decided' with the final outcome. A claim
-- (claimed_by, claim_until) is a lease: an expired one is nobody's.
ALTER TABLE review_items DROP CONSTRAINT review_items_reason_check;
ALTER TABLE review_items ADD CONSTRAINT review_items_reason_check
    CHECK (reason IN ('referable', 'ungradable', 'uncertain', 'qa_sample'));
UPDATE review_items SET state = 'open' WHERE state = 'claimed';
ALTER TABLE review_items DROP CONSTRAINT review_items_state_check;
ALTER TABLE review_items ADD CONSTRAINT review_items_state_check
    CHECK (state IN ('open', 'arbitration', 'decided'));
ALTER TABLE review_items DROP COLUMN claimed_by, DROP COLUMN decision, DROP COLUMN note;
ALTER TABLE review_items
    ADD COLUMN site_id uuid REFERENCES sites (id),
    -- Clinical priority: referable first, then ungradable, uncertain, the QA sample.
    ADD COLUMN rank smallint GENERATED ALWAYS AS (
        CASE reason WHEN 'referable' THEN 0 WHEN 'ungradable' THEN 1 WHEN 'uncertain' THEN 2 ELSE 3 END
    ) STORED,
    -- QA reads are blinded: no model output, no heatmap.
    ADD COLUMN blinded boolean NOT NULL DEFAULT false,
    ADD COLUMN claimed_by uuid REFERENCES users (id),
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN claim_until timestamptz,
    ADD COLUMN final_decision text CHECK (final_decision IN ('referable', 'not_referable', 'ungradable')),
    ADD COLUMN final_action text CHECK (final_action IN ('retake', 'examine')),
    ADD COLUMN final_cdr real,
    ADD COLUMN decided_role text CHECK (decided_role IN ('grader', 'senior', 'admin'));
UPDATE review_items ri SET site_id = s.site_id
FROM images i JOIN studies s ON s.id = i.study_id WHERE i.id = ri.image_id;
ALTER TABLE review_items ALTER COLUMN site_id SET NOT NULL;
ALTER TABLE review_items ADD CONSTRAINT review_items_final_check
    CHECK ((state = 'decided') = (final_decision IS NOT NULL AND decided_at IS NOT NULL));
DROP INDEX review_items_open;
-- The worklist: a site's undecided items in clinical order. The state rides
-- along so that the worklist's counts are an index-only scan.
CREATE INDEX review_items_worklist ON review_items (site_id, rank, created_at, id) INCLUDE (state) WHERE state <> 'decided';
CREATE INDEX review_items_worklist_all ON review_items (rank, created_at, id) WHERE state <> 'decided';
-- Items awaiting a senior: few, and counted on every worklist page.
CREATE INDEX review_items_arbitration ON review_items (site_id, rank, created_at) WHERE state = 'arbitration';
CREATE INDEX review_items_image ON review_items (image_id);

-- Every read, append-only: who, in which role, when, what, and whether the
-- model's output was on the screen.
CREATE TABLE review_decisions (
    id                 bigserial PRIMARY KEY,
    item_id            uuid NOT NULL REFERENCES review_items (id),
    user_id            uuid NOT NULL REFERENCES users (id),
    role               text NOT NULL CHECK (role IN ('grader', 'senior', 'admin')),
    stage              text NOT NULL CHECK (stage IN ('read', 'arbitration')),
    decision           text NOT NULL CHECK (decision IN ('referable', 'not_referable', 'ungradable')),
    ungradable_action  text CHECK (ungradable_action IN ('retake', 'examine')),
    cdr                real CHECK (cdr >= 0 AND cdr <= 1),
    note               text CHECK (length(note) <= 2000),
    model_shown        boolean NOT NULL,
    -- When this reader opened the item (the start of the read).
    started_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((decision = 'ungradable') = (ungradable_action IS NOT NULL))
);
CREATE INDEX review_decisions_item ON review_decisions (item_id);
CREATE INDEX review_decisions_user ON review_decisions (user_id, created_at);

-- Decisions and the audit trail are never rewritten.
CREATE FUNCTION fundus_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER review_decisions_append_only BEFORE UPDATE OR DELETE ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION fundus_append_only();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION fundus_append_only();
CREATE INDEX audit_log_at ON audit_log (at);

-- The QA sample of negatives, recorded with the result it was drawn for.
ALTER TABLE results
    ADD COLUMN qa_rate real CHECK (qa_rate >= 0 AND qa_rate <= 1),
    ADD COLUMN qa_sampled boolean NOT NULL DEFAULT false;

-- The same patient's studies at a site, newest first.
CREATE INDEX studies_patient ON studies (site_id, patient_ref, captured_at);

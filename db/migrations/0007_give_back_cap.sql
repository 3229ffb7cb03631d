-- Give-backs that are the job's own trouble (it timed out, or the model
-- thread died under it) cost no attempt, but they are counted: a photo that
-- is given back again and again is dead-lettered instead of cycling forever.
-- Give-backs at shutdown or scale-down are not counted.
ALTER TABLE jobs ADD COLUMN give_backs integer NOT NULL DEFAULT 0 CHECK (give_backs >= 0);

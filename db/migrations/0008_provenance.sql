-- Provenance that cannot lie. A model version carries the digest of its
-- weights and card: loading the same (name, version) with anything different
-- is refused, not merged. A result records the settings that decided it: the
-- model's threshold and the routing in force (the QA rate was already there).
ALTER TABLE model_versions ADD COLUMN digest text;
ALTER TABLE results
    ADD COLUMN threshold real CHECK (threshold >= 0 AND threshold <= 1),
    ADD COLUMN gradable_threshold real CHECK (gradable_threshold >= 0 AND gradable_threshold <= 1),
    ADD COLUMN uncertainty_band real CHECK (uncertainty_band >= 0 AND uncertainty_band <= 1);

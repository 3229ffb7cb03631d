-- Erasure (`fundus admin erase`) is the one deletion review decisions allow:
-- it marks its own transaction with SET LOCAL fundus.erasure = 'on'. Updates
-- stay refused, and the audit trail stays append-only: its entries name
-- photos and items by random ids only, which lead nowhere once erased.
CREATE FUNCTION fundus_decisions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('fundus.erasure', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER review_decisions_append_only ON review_decisions;
CREATE TRIGGER review_decisions_append_only BEFORE UPDATE OR DELETE ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION fundus_decisions_guard();

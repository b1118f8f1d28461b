-- Security tables (src/audit, src/consent). Times are epoch milliseconds (UTC).

-- Tamper-evident audit trail: one IHE BALP AuditEvent per row, hash-chained
-- (entry_hash = sha256(prev_hash || json), json = canonical JSON incl. "id" = seq).
-- `patients` / `agents` are space-delimited search keys (" a b "), derived from json and re-checked
-- by `audit verify`.
CREATE TABLE audit_event (
    seq        BIGINT PRIMARY KEY,
    recorded   BIGINT NOT NULL,
    type_code  TEXT COLLATE "C" NOT NULL,
    subtype    TEXT COLLATE "C",
    action     TEXT COLLATE "C" NOT NULL,
    outcome    TEXT COLLATE "C" NOT NULL,
    patients   TEXT COLLATE "C" NOT NULL,
    agents     TEXT COLLATE "C" NOT NULL,
    prev_hash  TEXT COLLATE "C" NOT NULL,
    entry_hash TEXT COLLATE "C" NOT NULL,
    json       TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_event_recorded ON audit_event (recorded);
CREATE INDEX audit_event_subtype ON audit_event (subtype, recorded);

-- The chain head (one row, locked FOR UPDATE by every append: serialises the chain across processes).
CREATE TABLE audit_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     BIGINT NOT NULL,
    hash    TEXT COLLATE "C" NOT NULL,
    purging BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO audit_head (id, seq, hash, purging)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', FALSE);

-- Append-only guards (the retention purge sets purging inside its own transaction).
CREATE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND (SELECT purging FROM audit_head WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only';
END $$;
CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
FOR EACH ROW EXECUTE FUNCTION audit_event_guard();

-- Security generation: bumped in the same transaction as any write that can change a consent decision.
CREATE TABLE security_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO security_state (id, generation) VALUES (1, 0);
CREATE FUNCTION security_generation_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE rtype IN ('Consent', 'Patient', 'RelatedPerson', 'CareTeam')) THEN
        UPDATE security_state SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER security_generation_history AFTER INSERT ON resource_history
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION security_generation_history();

CREATE TABLE facility_suspension (
    org_id       TEXT COLLATE "C" PRIMARY KEY,
    suspended_at BIGINT NOT NULL,
    reason       TEXT
);
CREATE FUNCTION security_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE security_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER security_generation_suspend AFTER INSERT OR DELETE ON facility_suspension
FOR EACH STATEMENT EXECUTE FUNCTION security_generation_bump();

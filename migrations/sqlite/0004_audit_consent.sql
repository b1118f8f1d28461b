-- Security tables (src/audit, src/consent). Times are epoch milliseconds (UTC).

-- Tamper-evident audit trail: one IHE BALP AuditEvent per row, hash-chained
-- (entry_hash = sha256(prev_hash || json), json = canonical JSON incl. "id" = seq).
-- `patients` / `agents` are space-delimited search keys (" a b "), derived from json and re-checked
-- by `audit verify`.
CREATE TABLE audit_event (
    seq        INTEGER PRIMARY KEY,
    recorded   INTEGER NOT NULL,
    type_code  TEXT    NOT NULL,
    subtype    TEXT,
    action     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    patients   TEXT    NOT NULL,
    agents     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    entry_hash TEXT    NOT NULL,
    json       TEXT    NOT NULL
);
CREATE INDEX audit_event_recorded ON audit_event (recorded);
CREATE INDEX audit_event_subtype ON audit_event (subtype, recorded);

-- The chain head (one row): last seq and its entry hash; `purging` = 1 only inside a retention purge.
CREATE TABLE audit_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,
    hash    TEXT    NOT NULL,
    purging INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_head (id, seq, hash, purging)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Append-only: rows are never updated; deleted only by the retention purge (which sets purging = 1 in
-- its own transaction). The hash chain detects anything done around these guards.
CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
WHEN (SELECT purging FROM audit_head WHERE id = 1) = 0
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;

-- Security generation: bumped in the same transaction as any write that can change a consent decision
-- (Consent, Patient, RelatedPerson, CareTeam versions; facility suspensions). Caches of consent
-- decisions are valid only while it is unchanged (src/consent).
CREATE TABLE security_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO security_state (id, generation) VALUES (1, 0);
CREATE TRIGGER security_generation_history AFTER INSERT ON resource_history
WHEN NEW.rtype IN ('Consent', 'Patient', 'RelatedPerson', 'CareTeam')
BEGIN UPDATE security_state SET generation = generation + 1 WHERE id = 1; END;

-- Suspended facilities (Organization $suspend / $resume).
CREATE TABLE facility_suspension (
    org_id       TEXT PRIMARY KEY,
    suspended_at INTEGER NOT NULL,
    reason       TEXT
);
CREATE TRIGGER security_generation_suspend AFTER INSERT ON facility_suspension
BEGIN UPDATE security_state SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER security_generation_resume AFTER DELETE ON facility_suspension
BEGIN UPDATE security_state SET generation = generation + 1 WHERE id = 1; END;

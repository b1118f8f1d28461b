-- tobiume-gateway resource store, SQLite dialect (see src/store/mod.rs for the contract).
-- Times are epoch milliseconds (UTC). `json` is the exact resource text as stored (decimal text intact).

CREATE TABLE resources (
    rid          INTEGER PRIMARY KEY,          -- surrogate key used by the search index
    rtype        TEXT    NOT NULL,             -- FHIR resource type
    id           TEXT    NOT NULL,             -- logical id
    version      INTEGER NOT NULL,             -- current version (1-based)
    last_updated INTEGER NOT NULL,             -- meta.lastUpdated of the current version, epoch ms
    deleted      INTEGER NOT NULL DEFAULT 0,   -- 1 when the current version is a delete tombstone
    content_hash TEXT,                         -- sha256 hex of the body as written (import dedup)
    json         TEXT    NOT NULL              -- current version text ('' for a tombstone)
);
CREATE UNIQUE INDEX resources_type_id ON resources (rtype, id);
CREATE INDEX resources_type_lu ON resources (rtype, last_updated);

CREATE TABLE resource_history (
    hid          INTEGER PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    json         TEXT    NOT NULL
);
CREATE UNIQUE INDEX history_type_id_version ON resource_history (rtype, id, version);
CREATE INDEX history_lu ON resource_history (last_updated);
CREATE INDEX history_type_lu ON resource_history (rtype, last_updated);

-- Search index: one table per SearchParameter type; rows exist only for live (non-deleted) current versions.
CREATE TABLE idx_token (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT NOT NULL, display TEXT
);
CREATE INDEX idx_token_lookup ON idx_token (rtype, param, code, system, rid);
CREATE INDEX idx_token_rid ON idx_token (rid, param);

CREATE TABLE idx_string (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    exact TEXT NOT NULL, normalized TEXT NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (rtype, param, normalized, rid);
CREATE INDEX idx_string_rid ON idx_string (rid, param);

CREATE TABLE idx_date (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL
);
CREATE INDEX idx_date_lo ON idx_date (rtype, param, lo, hi, rid);
CREATE INDEX idx_date_hi ON idx_date (rtype, param, hi, rid);
CREATE INDEX idx_date_rid ON idx_date (rid, param);

CREATE TABLE idx_reference (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT NOT NULL, url TEXT NOT NULL
);
CREATE INDEX idx_reference_lookup ON idx_reference (rtype, param, target_id, target_type, rid);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type);
CREATE INDEX idx_reference_rid ON idx_reference (rid, param);

CREATE TABLE idx_quantity (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    value REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
    system TEXT, code TEXT, unit TEXT
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (rtype, param, value, rid);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);

CREATE TABLE idx_number (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    value REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (rtype, param, value, rid);
CREATE INDEX idx_number_rid ON idx_number (rid, param);

CREATE TABLE idx_uri (
    rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    uri TEXT NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (rtype, param, uri, rid);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param);

-- SS-MIX2 import ledger: one row per source file; committed in the same transaction as the file's resources.
CREATE TABLE import_files (
    path           TEXT PRIMARY KEY,
    content_sha256 TEXT NOT NULL,
    status         TEXT NOT NULL,
    error          TEXT,
    imported_at    INTEGER NOT NULL
);

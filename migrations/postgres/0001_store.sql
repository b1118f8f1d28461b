-- tobiume-gateway resource store, PostgreSQL dialect. JSON is TEXT (not JSONB) so the exact text survives; all text
-- columns use COLLATE "C" so prefix ranges (`>= p AND < p||U+10FFFF`) and sort order are byte/code-point order.
-- Times are epoch milliseconds (UTC). `json` is the exact resource text as stored (decimal text intact).

CREATE TABLE resources (
    rid          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- surrogate key used by the search index
    rtype        TEXT COLLATE "C"    NOT NULL,             -- FHIR resource type
    id           TEXT COLLATE "C"    NOT NULL,             -- logical id
    version      BIGINT NOT NULL,             -- current version (1-based)
    last_updated BIGINT NOT NULL,             -- meta.lastUpdated of the current version, epoch ms
    deleted      BOOLEAN NOT NULL DEFAULT FALSE, -- true when the current version is a delete tombstone
    content_hash TEXT COLLATE "C",                         -- sha256 hex of the body as written (import dedup)
    json         TEXT COLLATE "C"    NOT NULL              -- current version text ('' for a tombstone)
);
CREATE UNIQUE INDEX resources_type_id ON resources (rtype, id);
CREATE INDEX resources_type_lu ON resources (rtype, last_updated);

CREATE TABLE resource_history (
    hid          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rtype        TEXT COLLATE "C"    NOT NULL,
    id           TEXT COLLATE "C"    NOT NULL,
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted      BOOLEAN NOT NULL,
    json         TEXT COLLATE "C"    NOT NULL
);
CREATE UNIQUE INDEX history_type_id_version ON resource_history (rtype, id, version);
CREATE INDEX history_lu ON resource_history (last_updated);
CREATE INDEX history_type_lu ON resource_history (rtype, last_updated);

-- Search index: one table per SearchParameter type; rows exist only for live (non-deleted) current versions.
CREATE TABLE idx_token (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C", code TEXT COLLATE "C" NOT NULL, display TEXT COLLATE "C"
);
CREATE INDEX idx_token_lookup ON idx_token (rtype, param, code, system, rid);
CREATE INDEX idx_token_rid ON idx_token (rid, param);

CREATE TABLE idx_string (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    exact TEXT COLLATE "C" NOT NULL, normalized TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (rtype, param, normalized, rid);
CREATE INDEX idx_string_rid ON idx_string (rid, param);

CREATE TABLE idx_date (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    lo BIGINT NOT NULL, hi BIGINT NOT NULL
);
CREATE INDEX idx_date_lo ON idx_date (rtype, param, lo, hi, rid);
CREATE INDEX idx_date_hi ON idx_date (rtype, param, hi, rid);
CREATE INDEX idx_date_rid ON idx_date (rid, param);

CREATE TABLE idx_reference (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C", target_id TEXT COLLATE "C" NOT NULL, url TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_reference_lookup ON idx_reference (rtype, param, target_id, target_type, rid);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type);
CREATE INDEX idx_reference_rid ON idx_reference (rid, param);

CREATE TABLE idx_quantity (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    value DOUBLE PRECISION NOT NULL, lo DOUBLE PRECISION NOT NULL, hi DOUBLE PRECISION NOT NULL,
    system TEXT COLLATE "C", code TEXT COLLATE "C", unit TEXT COLLATE "C"
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (rtype, param, value, rid);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);

CREATE TABLE idx_number (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    value DOUBLE PRECISION NOT NULL, lo DOUBLE PRECISION NOT NULL, hi DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (rtype, param, value, rid);
CREATE INDEX idx_number_rid ON idx_number (rid, param);

CREATE TABLE idx_uri (
    rid BIGINT NOT NULL, rtype TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL,
    uri TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (rtype, param, uri, rid);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param);

-- SS-MIX2 import ledger: one row per source file; committed in the same transaction as the file's resources.
CREATE TABLE import_files (
    path           TEXT COLLATE "C" PRIMARY KEY,
    content_sha256 TEXT COLLATE "C" NOT NULL,
    status         TEXT COLLATE "C" NOT NULL,
    error          TEXT COLLATE "C",
    imported_at    BIGINT NOT NULL
);

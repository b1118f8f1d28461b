-- Store footprint (issue 3, 100,000 patients must fit on one disk): every resource version is stored once.
--
-- * `resources.json` is the CURRENT version; `resource_history` holds only the versions that are no longer
--   current (a write moves the replaced current row there). Instance / type / system history and vread read
--   both tables (src/store/backend_impl.rs). Before: every version twice (current row + history row).
-- * The search index rows carry a small integer `pid` for their (resource type, parameter code) instead of
--   both texts (`search_param`), and token rows a `sid` for their code system URI (`token_system`, NULL =
--   no system). Both tables only grow; an id never changes meaning.
-- * Dropped: `idx_reference_target` (no query looks references up by target alone: includes go through
--   `(rid, pid)`, revincludes and consent through `(pid, target_id)`), `history_lu` (replaced by
--   `resources_lu` and the small history table's own `history_type_lu`).
-- * The security generation (0004) is bumped by writes of the current row now, since a new version no
--   longer always inserts a history row.

CREATE TABLE search_param (
    pid   INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL
);
CREATE UNIQUE INDEX search_param_key ON search_param (rtype, param);

CREATE TABLE token_system (
    sid    INTEGER PRIMARY KEY,
    system TEXT NOT NULL
);
CREATE UNIQUE INDEX token_system_key ON token_system (system);

INSERT INTO search_param (rtype, param)
SELECT rtype, param FROM idx_token UNION SELECT rtype, param FROM idx_string
UNION SELECT rtype, param FROM idx_date UNION SELECT rtype, param FROM idx_reference
UNION SELECT rtype, param FROM idx_quantity UNION SELECT rtype, param FROM idx_number
UNION SELECT rtype, param FROM idx_uri;
INSERT INTO token_system (system) SELECT DISTINCT system FROM idx_token WHERE system IS NOT NULL;

-- token
CREATE TABLE idx_token_v6 (rid INTEGER NOT NULL, pid INTEGER NOT NULL, sid INTEGER, code TEXT NOT NULL, display TEXT);
INSERT INTO idx_token_v6 (rid, pid, sid, code, display)
SELECT x.rid, p.pid, s.sid, x.code, x.display FROM idx_token x
JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param LEFT JOIN token_system s ON s.system = x.system
ORDER BY x.rowid;
DROP TABLE idx_token;
ALTER TABLE idx_token_v6 RENAME TO idx_token;
CREATE INDEX idx_token_lookup ON idx_token (pid, code, sid, rid);
CREATE INDEX idx_token_rid ON idx_token (rid, pid);

-- string
CREATE TABLE idx_string_v6 (rid INTEGER NOT NULL, pid INTEGER NOT NULL, exact TEXT NOT NULL, normalized TEXT NOT NULL);
INSERT INTO idx_string_v6 (rid, pid, exact, normalized)
SELECT x.rid, p.pid, x.exact, x.normalized FROM idx_string x JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param
ORDER BY x.rowid;
DROP TABLE idx_string;
ALTER TABLE idx_string_v6 RENAME TO idx_string;
CREATE INDEX idx_string_lookup ON idx_string (pid, normalized, rid);
CREATE INDEX idx_string_rid ON idx_string (rid, pid);

-- date
CREATE TABLE idx_date_v6 (rid INTEGER NOT NULL, pid INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
INSERT INTO idx_date_v6 (rid, pid, lo, hi)
SELECT x.rid, p.pid, x.lo, x.hi FROM idx_date x JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param
ORDER BY x.rowid;
DROP TABLE idx_date;
ALTER TABLE idx_date_v6 RENAME TO idx_date;
CREATE INDEX idx_date_lo ON idx_date (pid, lo, hi, rid);
CREATE INDEX idx_date_hi ON idx_date (pid, hi, rid);
CREATE INDEX idx_date_rid ON idx_date (rid, pid);

-- reference
CREATE TABLE idx_reference_v6 (
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, target_type TEXT, target_id TEXT NOT NULL, url TEXT NOT NULL
);
INSERT INTO idx_reference_v6 (rid, pid, target_type, target_id, url)
SELECT x.rid, p.pid, x.target_type, x.target_id, x.url FROM idx_reference x
JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param ORDER BY x.rowid;
DROP TABLE idx_reference;
ALTER TABLE idx_reference_v6 RENAME TO idx_reference;
CREATE INDEX idx_reference_lookup ON idx_reference (pid, target_id, target_type, rid);
CREATE INDEX idx_reference_rid ON idx_reference (rid, pid);

-- quantity
CREATE TABLE idx_quantity_v6 (
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
    system TEXT, code TEXT, unit TEXT
);
INSERT INTO idx_quantity_v6 (rid, pid, value, lo, hi, system, code, unit)
SELECT x.rid, p.pid, x.value, x.lo, x.hi, x.system, x.code, x.unit FROM idx_quantity x
JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param ORDER BY x.rowid;
DROP TABLE idx_quantity;
ALTER TABLE idx_quantity_v6 RENAME TO idx_quantity;
CREATE INDEX idx_quantity_lookup ON idx_quantity (pid, value, rid);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, pid);

-- number
CREATE TABLE idx_number_v6 (rid INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL);
INSERT INTO idx_number_v6 (rid, pid, value, lo, hi)
SELECT x.rid, p.pid, x.value, x.lo, x.hi FROM idx_number x JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param
ORDER BY x.rowid;
DROP TABLE idx_number;
ALTER TABLE idx_number_v6 RENAME TO idx_number;
CREATE INDEX idx_number_lookup ON idx_number (pid, value, rid);
CREATE INDEX idx_number_rid ON idx_number (rid, pid);

-- uri
CREATE TABLE idx_uri_v6 (rid INTEGER NOT NULL, pid INTEGER NOT NULL, uri TEXT NOT NULL);
INSERT INTO idx_uri_v6 (rid, pid, uri)
SELECT x.rid, p.pid, x.uri FROM idx_uri x JOIN search_param p ON p.rtype = x.rtype AND p.param = x.param ORDER BY x.rowid;
DROP TABLE idx_uri;
ALTER TABLE idx_uri_v6 RENAME TO idx_uri;
CREATE INDEX idx_uri_lookup ON idx_uri (pid, uri, rid);
CREATE INDEX idx_uri_rid ON idx_uri (rid, pid);

-- history keeps only versions that are no longer current
DELETE FROM resource_history WHERE EXISTS (
    SELECT 1 FROM resources r
    WHERE r.rtype = resource_history.rtype AND r.id = resource_history.id AND r.version = resource_history.version
);
DROP INDEX IF EXISTS history_lu;
CREATE INDEX IF NOT EXISTS resources_lu ON resources (last_updated);

CREATE TRIGGER security_generation_current_insert AFTER INSERT ON resources
WHEN NEW.rtype IN ('Consent', 'Patient', 'RelatedPerson', 'CareTeam')
BEGIN UPDATE security_state SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER security_generation_current_update AFTER UPDATE ON resources
WHEN NEW.rtype IN ('Consent', 'Patient', 'RelatedPerson', 'CareTeam')
BEGIN UPDATE security_state SET generation = generation + 1 WHERE id = 1; END;

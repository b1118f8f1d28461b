-- Data generation for the SQLite resource cache (src/store/sqlite_cache.rs): bumped in the same
-- transaction as every change of an existing current row — an update (new version, delete flag) or the
-- removal of a row — by any connection of any process. A cached current row is served only while the
-- generation it was read under is still the committed one, so a write that another process commits to
-- the same file invalidates this process's cache as surely as its own writes. New rows (INSERT) do not
-- bump it: a cache holds only rows that existed when they were read.
CREATE TABLE data_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO data_generation (id, n) VALUES (1, 0);
CREATE TRIGGER data_generation_update AFTER UPDATE ON resources
BEGIN UPDATE data_generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER data_generation_delete AFTER DELETE ON resources
BEGIN UPDATE data_generation SET n = n + 1 WHERE id = 1; END;

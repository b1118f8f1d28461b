-- Bulk loads (`import ssmix2` into an empty store) drop the secondary search indexes listed in
-- src/store/backend_impl.rs (BULK_INDEXES) and rebuild them once at the end: one sorted CREATE INDEX
-- instead of a random B-tree insert per index row. The row exists while such a load is unfinished
-- (its indexes may be missing); the next import or `serve` start rebuilds them.
CREATE TABLE bulk_load (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    started_at INTEGER NOT NULL
);

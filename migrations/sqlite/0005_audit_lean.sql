-- The audit trail is append-heavy (one row per request): keep one secondary index. Searches by subtype
-- (the break-the-glass report) run over the `recorded` range they always carry.
DROP INDEX audit_event_subtype;

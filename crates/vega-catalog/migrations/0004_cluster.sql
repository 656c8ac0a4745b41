-- Vega catalog, migration 0004: nodes and leases (cluster coordination).
--
-- Expand only: two new tables. Portable SQL: runs unchanged on SQLite and
-- PostgreSQL.
--
-- Never edit this file once released: add a new migration instead.

-- Every node that runs on this catalog, with its latest heartbeat.
-- `roles` is a comma-separated list (api, ingest, sync, scheduler, ...).
CREATE TABLE nodes (
    id           TEXT NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,
    version      TEXT NOT NULL,
    api_url      TEXT,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

-- Named leases (the scheduler leader, a stream consumer, ...): held by one
-- node until `expires_at` unless renewed. `token` is the fencing token: it
-- grows every time the lease changes hands, so work done under an older
-- token can be refused.
CREATE TABLE leases (
    name        TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    token       BIGINT NOT NULL,
    acquired_at TEXT   NOT NULL,
    expires_at  TEXT   NOT NULL
);

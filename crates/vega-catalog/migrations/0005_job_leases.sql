-- Vega catalog, migration 0005: jobs are owned by a node under a lease.
--
-- Expand only: two NULL-able columns without a default and one index;
-- binaries built for earlier migrations never name them (their jobs have
-- no owner and are treated as interrupted by the next start, as before).
-- Portable SQL (SQLite and PostgreSQL).
--
-- Never edit this file once released: add a new migration instead.

-- The node running the job, and until when its hold lasts unless renewed.
-- A running job whose lease expired is claimed by another node: failed as
-- interrupted and run again as a new job there.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;

CREATE INDEX jobs_by_lease ON jobs (state, lease_expires_at);

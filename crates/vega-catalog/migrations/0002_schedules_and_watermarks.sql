-- Vega catalog, migration 0002: asset schedules and incremental watermarks.
--
-- Expand only: two NULL-able columns without defaults, which binaries built
-- for 0001 never name (they list their columns), so they keep working on this
-- schema. Portable SQL: runs unchanged on SQLite and PostgreSQL.
--
-- Never edit this file once released: add a new migration instead.

-- When the asset syncs on its own: an interval ("15m") or a cron expression;
-- NULL syncs only when asked.
ALTER TABLE assets ADD COLUMN schedule TEXT;

-- Where the next incremental sync resumes, as JSON text; NULL before the
-- first incremental sync (or after it was cleared).
ALTER TABLE assets ADD COLUMN watermark_json TEXT;

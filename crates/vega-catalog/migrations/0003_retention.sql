-- Vega catalog, migration 0003: asset retention.
--
-- Expand only: one NULL-able column without a default; binaries built for
-- earlier migrations never name it. Portable SQL (SQLite and PostgreSQL).
--
-- Never edit this file once released: add a new migration instead.

-- How long rows are kept, as JSON text {"column", "period"}; NULL keeps
-- everything.
ALTER TABLE assets ADD COLUMN retention_json TEXT;

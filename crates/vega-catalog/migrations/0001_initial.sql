-- Vega catalog, migration 0001: the initial schema.
--
-- Portable SQL: every statement must run unchanged on SQLite and PostgreSQL.
-- Ids are prefixed text ids (con_..., ast_..., job_..., key_...), times are
-- RFC 3339 UTC text with millisecond precision (fixed width, so text order is
-- time order), JSON is stored as text, booleans and counters are BIGINT.
--
-- Never edit this file once released: add a new migration instead.

-- Sources of data.
CREATE TABLE connections (
    id          TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL UNIQUE,
    kind        TEXT   NOT NULL,
    params_json TEXT   NOT NULL,
    enabled     BIGINT NOT NULL,
    created_at  TEXT   NOT NULL,
    updated_at  TEXT   NOT NULL
);

-- Named datasets `namespace.name`, each fed from one connection.
-- `active_version` is the version queries read (NULL until one is published).
CREATE TABLE assets (
    id             TEXT   NOT NULL PRIMARY KEY,
    namespace      TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    connection_id  TEXT   NOT NULL REFERENCES connections (id),
    sync_mode      TEXT   NOT NULL,
    source_json    TEXT   NOT NULL,
    checks_json    TEXT   NOT NULL,
    active_version BIGINT,
    created_at     TEXT   NOT NULL,
    updated_at     TEXT   NOT NULL,
    UNIQUE (namespace, name)
);

CREATE INDEX assets_by_connection ON assets (connection_id);

-- Immutable snapshots of an asset. The manifest of a version is its schema
-- (here) plus its segments (below), in ordinal order. `job_id` is informative
-- and deliberately not a foreign key.
CREATE TABLE versions (
    asset_id    TEXT   NOT NULL REFERENCES assets (id),
    number      BIGINT NOT NULL,
    created_at  TEXT   NOT NULL,
    job_id      TEXT,
    schema_json TEXT   NOT NULL,
    PRIMARY KEY (asset_id, number)
);

-- One Parquet file of a version.
CREATE TABLE segments (
    asset_id TEXT   NOT NULL,
    version  BIGINT NOT NULL,
    ordinal  BIGINT NOT NULL,
    path     TEXT   NOT NULL,
    rows     BIGINT NOT NULL,
    bytes    BIGINT NOT NULL,
    sha256   TEXT   NOT NULL,
    PRIMARY KEY (asset_id, version, ordinal),
    FOREIGN KEY (asset_id, version) REFERENCES versions (asset_id, number)
);

CREATE INDEX segments_by_path ON segments (path);

-- Units of background work. Deleting an asset sets its jobs' `asset_id` to
-- NULL; the job rows stay as history.
CREATE TABLE jobs (
    id             TEXT   NOT NULL PRIMARY KEY,
    kind           TEXT   NOT NULL,
    asset_id       TEXT   REFERENCES assets (id),
    state          TEXT   NOT NULL,
    params_json    TEXT   NOT NULL,
    attempts       BIGINT NOT NULL,
    rows           BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,
    error          TEXT,
    result_version BIGINT,
    created_at     TEXT   NOT NULL,
    started_at     TEXT,
    finished_at    TEXT
);

-- At most one pending or running job per (asset, kind). A partial unique
-- index: both SQLite and PostgreSQL accept this form. Jobs without an asset
-- (NULL asset_id) are not limited, as NULLs never compare equal.
CREATE UNIQUE INDEX jobs_one_active_per_asset_and_kind
    ON jobs (asset_id, kind)
    WHERE state IN ('pending', 'running');

CREATE INDEX jobs_by_state ON jobs (state);
CREATE INDEX jobs_by_asset ON jobs (asset_id, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

-- Runtime settings changed through the API (rate limits, ...).
CREATE TABLE settings (
    key        TEXT NOT NULL PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- API keys, stored by the sha256 of their secret; the secret itself never is.
CREATE TABLE api_keys (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

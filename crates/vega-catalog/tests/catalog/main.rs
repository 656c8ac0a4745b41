//! Tests of `SqlCatalog` on real SQLite files in temporary directories (or
//! real PostgreSQL databases with `VEGA_TEST_CATALOG=postgres`), one
//! file per resource; one behaviour per test. `replication.rs` always runs
//! on its own PostgreSQL primary and streaming replica.

mod api_keys;
mod assets;
mod cluster;
mod common;
mod connections;
mod corrupt;
mod job_leases;
mod jobs;
mod migrations;
mod replication;
mod settings;
mod snapshot;
mod stream_flush;
mod versions;

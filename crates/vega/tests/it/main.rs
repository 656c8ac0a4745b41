//! Vega's integration tests: one test binary (DuckDB is linked once) whose
//! modules each cover one area, all driving the real `vega` binary through
//! [`server::TestServer`].

mod api;
mod auth;
mod backups;
mod bench;
mod catalog_postgres;
mod chaos;
mod cli;
mod cluster;
mod crash;
mod discovery;
mod drill;
mod incremental;
mod ingest;
mod ingest_faults;
mod mqtt;
mod observability;
mod operations;
mod postgres;
mod query;
mod resilience;
mod retention;
mod sandbox;
mod server;
mod shutdown;
mod sync;
mod trino;
mod validation;

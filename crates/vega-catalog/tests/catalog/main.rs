//! Tests of `SqlCatalog` on real SQLite files in temporary directories, one
//! file per resource; one behaviour per test.

mod api_keys;
mod assets;
mod common;
mod connections;
mod corrupt;
mod jobs;
mod migrations;
mod settings;
mod versions;

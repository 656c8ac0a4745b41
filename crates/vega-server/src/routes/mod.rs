//! HTTP handlers, one file per resource. Each handler is annotated with
//! `#[utoipa::path]`, and routers are built with `utoipa_axum`, so a route
//! cannot exist without its OpenAPI entry.

pub mod assets;
pub mod backups;
pub mod breakers;
pub mod cluster;
pub mod connections;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod operations;
pub mod query;
pub mod views;
pub mod write;

use vega_core::{Id, IdKind};

use crate::error::ApiError;

/// Parses a path id of the given kind; a malformed id is simply unknown (404).
pub(crate) fn path_id(kind: IdKind, raw: &str) -> Result<Id, ApiError> {
    Id::parse(kind, raw)
        .ok_or_else(|| ApiError::not_found(format!("{} '{raw}' not found", kind_name(kind))))
}

fn kind_name(kind: IdKind) -> &'static str {
    match kind {
        IdKind::Connection => "connection",
        IdKind::Asset => "asset",
        IdKind::Job => "job",
        IdKind::ApiKey => "API key",
        IdKind::Backup => "backup",
        IdKind::Node => "node",
    }
}

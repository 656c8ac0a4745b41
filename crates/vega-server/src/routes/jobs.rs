//! `/api/v1/jobs`: background work and its progress.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use vega_catalog::JobFilter;
use vega_core::{Id, IdKind, JobState, Role};

use crate::auth::Principal;

use super::path_id;
use super::views::{ErrorBody, JobView};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    pub asset_id: Option<String>,
    /// pending, running, succeeded, failed or cancelled.
    pub state: Option<String>,
    /// At most this many, newest first (1–1000, default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = Vec<JobView>), (status = 400, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let asset_id = match q.asset_id {
        Some(raw) => Some(Id::parse(IdKind::Asset, &raw).ok_or_else(|| {
            ApiError::bad_request(format!("asset_id '{raw}' is not an asset id"))
                .with_details(json!({ "field": "asset_id" }))
        })?),
        None => None,
    };
    let job_state = match q.state {
        Some(raw) => Some(JobState::parse(&raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state must be pending, running, succeeded, failed or cancelled, not '{raw}'"
            ))
            .with_details(json!({ "field": "state" }))
        })?),
        None => None,
    };
    if let Some(limit) = q.limit {
        if limit == 0 || limit > 1000 {
            return Err(ApiError::bad_request("limit must be between 1 and 1000")
                .with_details(json!({ "field": "limit" })));
        }
    }
    let jobs = state
        .catalog
        .list_jobs(JobFilter {
            asset_id,
            state: job_state,
            limit: q.limit,
        })
        .await?;
    Ok(Json(jobs.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "job id (job_…)")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = path_id(IdKind::Job, &id)?;
    Ok(Json(state.catalog.get_job(&id).await?.into()))
}

/// Cancels a pending or running job; its partial work is discarded and the
/// asset's active version is untouched.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "job id (job_…)")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the job already finished")))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    principal.require(Role::Operator)?;
    let id = path_id(IdKind::Job, &id)?;
    Ok(Json(state.sync.cancel(&id).await?.into()))
}

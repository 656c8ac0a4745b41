//! `/api/v1/keys`: API keys. The secret is returned once, at creation, and
//! only its hash is stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use vega_core::{IdKind, Role};

use super::path_id;
use super::views::{ApiKeyView, ErrorBody};
use crate::auth::{generate_secret, hash_secret, Principal};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// admin, operator, writer or reader.
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The secret; shown only in this response.
    pub secret: String,
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    principal.require(Role::Admin)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role must be admin, operator, writer or reader, not '{}'",
            body.role
        ))
        .with_details(json!({ "field": "role" }))
    })?;
    if body.name.trim().is_empty() || body.name.len() > 128 {
        return Err(ApiError::bad_request("name must be 1 to 128 characters")
            .with_details(json!({ "field": "name" })));
    }
    let secret = generate_secret();
    let key = state
        .catalog
        .create_api_key(&body.name, role, &hash_secret(&secret), state.clock.now())
        .await?;
    tracing::info!(key_id = %key.id, role = role.as_str(), "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.into(),
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", responses((status = 200, body = Vec<ApiKeyView>)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    principal.require(Role::Admin)?;
    Ok(Json(
        state
            .catalog
            .list_api_keys()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id (key_…)")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(IdKind::ApiKey, &id)?;
    state.catalog.delete_api_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

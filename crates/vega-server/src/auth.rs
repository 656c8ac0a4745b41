//! API keys: `Authorization: Bearer <key>`, checked against the hashes in the
//! catalog. Roles are ordered (reader < writer < operator < admin).
//!
//! While the catalog holds no key at all, the API runs in development mode:
//! every caller is treated as an admin. That is only allowed on a loopback
//! address (see `startup`), and a warning is logged at start.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};
use vega_core::{Id, Role};

use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of every key Vega issues, so leaked keys are easy to find.
pub const KEY_PREFIX: &str = "vega_";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` in development mode (no keys exist).
    pub key_id: Option<Id>,
    pub role: Role,
}

impl Principal {
    /// Refuses the call unless the caller's role allows `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this operation needs the {} role; the key has {}",
                required.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// The user id shown in logs.
    pub fn user_id(&self) -> String {
        self.key_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| "dev".to_string())
    }
}

/// The stored form of a secret: lower-case hex sha256. Keys are 160 random
/// bits, so a fast hash is enough (no dictionary to guess from).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random key secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The key in an Authorization header: `Bearer <key>`, `Token <key>` (as
/// InfluxDB 2 clients send it) or HTTP Basic with the key as the password
/// (InfluxDB 1.x clients and Telegraf; the user name is ignored).
fn credential(value: &str) -> Option<String> {
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(rest.to_string()),
        "basic" => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (_, password) = text.split_once(':')?;
            Some(password.to_string())
        }
        _ => None,
    }
}

/// Resolves the caller and stores a [`Principal`] in the request.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned));
    let principal = match header {
        Some(Ok(value)) => {
            let secret = credential(&value).ok_or_else(|| {
                ApiError::unauthenticated(
                    "the Authorization header must be 'Bearer <key>' (or 'Token <key>', or Basic with the key as password)",
                )
            })?;
            let secret = secret.as_str();
            match state
                .catalog
                .find_api_key_by_hash(&hash_secret(secret))
                .await?
            {
                Some(key) => Principal {
                    key_id: Some(key.id),
                    role: key.role,
                },
                None => return Err(ApiError::unauthenticated("unknown API key")),
            }
        }
        Some(Err(_)) => {
            return Err(ApiError::unauthenticated(
                "the Authorization header is not valid text",
            ))
        }
        None => {
            if state.catalog.list_api_keys().await?.is_empty() {
                Principal {
                    key_id: None,
                    role: Role::Admin,
                }
            } else {
                return Err(ApiError::unauthenticated(
                    "an API key is required: send 'Authorization: Bearer <key>'",
                ));
            }
        }
    };
    tracing::Span::current().record("user_id", principal.user_id().as_str());
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 40);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_stable_hex_and_hides_the_secret() {
        let h = hash_secret("vega_abc");
        assert_eq!(h, hash_secret("vega_abc"));
        assert_eq!(h.len(), 64);
        assert!(!h.contains("abc"));
    }

    #[test]
    fn roles_gate_operations() {
        let reader = Principal {
            key_id: None,
            role: Role::Reader,
        };
        assert!(reader.require(Role::Reader).is_ok());
        let err = reader.require(Role::Admin).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::FORBIDDEN);
    }
}

//! [`TrinoClient`]: runs one statement the way Trino's client protocol
//! says — POST the SQL to `/v1/statement`, then GET each `nextUri` until an
//! answer has none — and gathers the pages into a [`TrinoResult`].
//!
//! Failures and bounds:
//! - A `nextUri` GET answered 502, 503, 504 or 429, or whose connection
//!   failed or dropped mid-answer, is retried after a short backoff (the
//!   protocol allows it: the same `nextUri` answers the same page), a
//!   bounded number of times. The POST is never retried here: it may have
//!   started the statement, and only the caller knows whether running it
//!   twice is harmless ([`TrinoError::Unavailable::submitted`] says whether
//!   it may have reached Trino).
//! - Each request is bounded by `request_timeout`, the statement by
//!   `query_timeout`; the caller's cancellation token stops it at any point.
//! - When reading stops before Trino finished (cancellation, a deadline, an
//!   error, the row limit), the query is cancelled on the coordinator with
//!   a best-effort `DELETE` of the pending `nextUri`. A statement stopped
//!   before its POST was answered cannot be cancelled there: its id is not
//!   known yet.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio_util::sync::CancellationToken;

use crate::config::{TrinoAuth, TrinoConfig};
use crate::error::{TimeoutKind, TrinoError};
use crate::protocol::{self, QueryResults};
use crate::result::{SessionChanges, TrinoResult};

/// Retries of one `nextUri` GET after a 502/503/504/429 or a lost
/// connection: enough to ride out a load balancer moving a connection or a
/// coordinator's short pause, few enough that a dead coordinator is
/// reported within seconds.
pub const MAX_FETCH_RETRIES: u32 = 5;

/// The first wait before retrying a `nextUri`: the protocol asks for
/// 50–100 ms.
pub const RETRY_BACKOFF_INITIAL: Duration = Duration::from_millis(50);

/// The longest wait between retries; the wait doubles up to it, so five
/// retries wait about 1.5 s in all.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(800);

/// The longest `Retry-After` honoured on a 429: a longer one would hold the
/// statement past any interactive deadline, so the wait is capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long the best-effort `DELETE` that cancels an abandoned query may
/// take; it runs after the statement already failed, so it must not hold
/// the caller long.
pub const CANCEL_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest answer body read. Trino's pages aim at a few megabytes (its
/// largest target is 128 MB); a bigger body is not a page, and reading it
/// whole could exhaust memory.
pub const MAX_PAGE_BYTES: usize = 256 * 1024 * 1024;

/// Characters of an error response's body quoted in an error.
const SNIPPET_CHARS: usize = 200;

/// A client of one coordinator; cheap to share (`&self` everywhere), and
/// connections are pooled.
pub struct TrinoClient {
    http: reqwest::Client,
    config: TrinoConfig,
    base: Url,
    statement_url: Url,
    /// Sent with every request: user, user agent, credentials.
    common_headers: HeaderMap,
    /// Sent with the POST only: source, catalog, schema, session, tags.
    statement_headers: HeaderMap,
}

impl fmt::Debug for TrinoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrinoClient")
            .field("coordinator", &self.base.as_str())
            .field("user", &self.config.user)
            .finish_non_exhaustive()
    }
}

/// One answer with the session changes its headers carried.
struct Page {
    results: QueryResults,
    session: SessionChanges,
}

/// A failed request, and whether (and after how long) repeating it may help.
struct Failure {
    error: TrinoError,
    /// `None`: do not repeat; `Some(None)`: repeat after the backoff;
    /// `Some(Some(wait))`: repeat after the wait the server asked for.
    retry: Option<Option<Duration>>,
}

impl Failure {
    fn fatal(error: TrinoError) -> Self {
        Failure { error, retry: None }
    }

    fn retryable(error: TrinoError, after: Option<Duration>) -> Self {
        Failure {
            error,
            retry: Some(after),
        }
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, TrinoError> {
    HeaderValue::from_str(value).map_err(|_| {
        TrinoError::Config(format!(
            "the value for {name} has characters a header cannot carry"
        ))
    })
}

fn insert(map: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), TrinoError> {
    map.append(name, header_value(name, value)?);
    Ok(())
}

/// The CA certificates of a PEM file, to trust for `https` coordinators
/// (the client's `ca_file`; also for anything else that talks to them,
/// such as health checks).
pub fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, TrinoError> {
    let no_certificate = |detail: String| {
        TrinoError::Config(format!(
            "the CA file {} holds no PEM certificate{detail}",
            path.display()
        ))
    };
    let pem = std::fs::read(path)
        .map_err(|e| TrinoError::Config(format!("reading the CA file {}: {e}", path.display())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| no_certificate(format!(": {e}")))?;
    if certificates.is_empty() {
        return Err(no_certificate(String::new()));
    }
    Ok(certificates)
}

impl TrinoClient {
    /// Checks the configuration and builds the HTTP client.
    pub fn new(config: TrinoConfig) -> Result<Self, TrinoError> {
        let mut base = Url::parse(&config.coordinator).map_err(|e| {
            TrinoError::Config(format!("coordinator '{}': {e}", config.coordinator))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(TrinoError::Config(format!(
                "coordinator '{}' is not an http(s) URL with a host",
                config.coordinator
            )));
        }
        if config.user.trim().is_empty() {
            return Err(TrinoError::Config("the user is empty".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let statement_url = base
            .join(protocol::STATEMENT_PATH.trim_start_matches('/'))
            .map_err(|e| TrinoError::Config(format!("statement URL: {e}")))?;

        let mut common_headers = HeaderMap::new();
        insert(&mut common_headers, protocol::HEADER_USER, &config.user)?;
        common_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("vega-trino/", env!("CARGO_PKG_VERSION"))),
        );
        let authorization = match &config.auth {
            TrinoAuth::None => None,
            TrinoAuth::Basic { user, password } => Some(format!(
                "Basic {}",
                crate::base64::encode(format!("{user}:{}", password.expose()).as_bytes())
            )),
            TrinoAuth::Bearer { token } => Some(format!("Bearer {}", token.expose())),
        };
        if let Some(authorization) = authorization {
            let mut value = HeaderValue::from_str(&authorization).map_err(|_| {
                TrinoError::Config("the credentials have characters a header cannot carry".into())
            })?;
            value.set_sensitive(true);
            common_headers.insert(AUTHORIZATION, value);
        }

        let mut statement_headers = HeaderMap::new();
        insert(
            &mut statement_headers,
            protocol::HEADER_SOURCE,
            &config.source,
        )?;
        if let Some(catalog) = &config.catalog {
            insert(&mut statement_headers, protocol::HEADER_CATALOG, catalog)?;
        }
        if let Some(schema) = &config.schema {
            insert(&mut statement_headers, protocol::HEADER_SCHEMA, schema)?;
        }
        for (name, value) in &config.session_properties {
            if name.is_empty() || name.contains(['=', ',']) {
                return Err(TrinoError::Config(format!(
                    "session property name '{name}' is empty or has '=' or ','"
                )));
            }
            insert(
                &mut statement_headers,
                protocol::HEADER_SESSION,
                &protocol::encode_session_property(name, value),
            )?;
        }
        if !config.client_tags.is_empty() {
            if config.client_tags.iter().any(|t| t.contains(',')) {
                return Err(TrinoError::Config("a client tag has a ','".into()));
            }
            insert(
                &mut statement_headers,
                protocol::HEADER_CLIENT_TAGS,
                &config.client_tags.join(","),
            )?;
        }
        if let Some(info) = &config.client_info {
            insert(&mut statement_headers, protocol::HEADER_CLIENT_INFO, info)?;
        }

        let mut builder = reqwest::Client::builder().connect_timeout(config.connect_timeout);
        if let Some(path) = &config.ca_file {
            for certificate in load_ca_file(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| TrinoError::Config(format!("building the HTTP client: {e}")))?;
        Ok(TrinoClient {
            http,
            config,
            base,
            statement_url,
            common_headers,
            statement_headers,
        })
    }

    pub fn config(&self) -> &TrinoConfig {
        &self.config
    }

    /// Runs `sql` to the end (or to the row limit) and returns its rows.
    pub async fn execute(
        &self,
        sql: &str,
        cancel: CancellationToken,
    ) -> Result<TrinoResult, TrinoError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.query_timeout;
        // The `nextUri` not yet followed: the handle to cancel the query by.
        let mut pending: Option<Url> = None;
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TrinoError::Cancelled),
            _ = tokio::time::sleep_until(deadline) => Err(TrinoError::Timeout {
                kind: TimeoutKind::Query,
                timeout_ms: millis(self.config.query_timeout),
            }),
            outcome = self.drive(sql, &mut pending) => outcome,
        };
        if let Some(uri) = pending {
            self.cancel_remote(&uri).await;
        }
        let mut result = outcome?;
        if result.stats.elapsed.is_zero() {
            result.stats.elapsed = started.elapsed();
        }
        Ok(result)
    }

    /// Submits and pages; leaves in `pending` the `nextUri` it would follow
    /// next (none once Trino finished).
    async fn drive(&self, sql: &str, pending: &mut Option<Url>) -> Result<TrinoResult, TrinoError> {
        let mut result = TrinoResult::default();
        let mut page = self.submit(sql).await?;
        loop {
            let Page { results, session } = page;
            result.session.merge(session);
            *pending = match &results.next_uri {
                Some(next) => Some(self.base.join(next).map_err(|e| {
                    TrinoError::Protocol(format!("nextUri '{next}' is not a URL: {e}"))
                })?),
                None => None,
            };
            if let Some(error) = results.error {
                return Err(TrinoError::Query {
                    error_name: error.error_name,
                    error_type: error.error_type,
                    error_code: error.error_code,
                    message: error.message,
                });
            }
            let over_limit = result.absorb(results, self.config.max_rows)?;
            if over_limit {
                tracing::debug!(
                    query_id = %result.query_id,
                    max_rows = self.config.max_rows,
                    "row limit reached; cancelling the rest of the query"
                );
                return Ok(result);
            }
            let Some(next) = pending.clone() else {
                return Ok(result);
            };
            page = self.fetch(&next).await?;
        }
    }

    /// The POST that starts the statement; never repeated.
    async fn submit(&self, sql: &str) -> Result<Page, TrinoError> {
        let request = self
            .http
            .post(self.statement_url.clone())
            .headers(self.statement_headers.clone())
            .body(sql.to_string());
        self.send(request, Method::POST).await.map_err(|f| f.error)
    }

    /// A GET of `uri`, repeated on failures the protocol calls transient.
    async fn fetch(&self, uri: &Url) -> Result<Page, TrinoError> {
        let mut backoff = RETRY_BACKOFF_INITIAL;
        let mut attempt = 0;
        loop {
            match self.send(self.http.get(uri.clone()), Method::GET).await {
                Ok(page) => return Ok(page),
                Err(Failure {
                    error,
                    retry: Some(after),
                }) if attempt < MAX_FETCH_RETRIES => {
                    attempt += 1;
                    let wait = after.unwrap_or(backoff).min(MAX_RETRY_AFTER);
                    tracing::debug!(
                        uri = %uri.path(),
                        attempt,
                        wait_ms = millis(wait),
                        error = %error,
                        "retrying a Trino page"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Sends one request and reads its answer.
    async fn send(&self, request: RequestBuilder, method: Method) -> Result<Page, Failure> {
        let is_post = method == Method::POST;
        let response = request
            .headers(self.common_headers.clone())
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| self.transport_failure(e, is_post))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_failure(response, is_post).await);
        }
        let session = session_changes(response.headers());
        let body = self.read_body(response, is_post).await?;
        let results = serde_json::from_slice::<QueryResults>(&body).map_err(|e| {
            Failure::fatal(TrinoError::Protocol(format!(
                "the answer is not a statement result: {e}"
            )))
        })?;
        Ok(Page { results, session })
    }

    /// Reads the body, at most [`MAX_PAGE_BYTES`].
    async fn read_body(&self, mut response: Response, is_post: bool) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_failure(e, is_post))?
        {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(Failure::fatal(TrinoError::Protocol(format!(
                    "an answer is larger than {MAX_PAGE_BYTES} bytes"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A request that failed below HTTP: no connection, a deadline, a
    /// connection lost mid-answer.
    fn transport_failure(&self, e: reqwest::Error, is_post: bool) -> Failure {
        if e.is_timeout() {
            let (kind, limit) = if e.is_connect() {
                (TimeoutKind::Connect, self.config.connect_timeout)
            } else {
                (TimeoutKind::Request, self.config.request_timeout)
            };
            return Failure::fatal(TrinoError::Timeout {
                kind,
                timeout_ms: millis(limit),
            });
        }
        let (message, submitted) = if e.is_connect() {
            (
                format!("cannot connect to the coordinator: {}", source_chain(&e)),
                false,
            )
        } else {
            (format!("the connection failed: {}", source_chain(&e)), true)
        };
        let error = TrinoError::Unavailable { message, submitted };
        if is_post {
            Failure::fatal(error)
        } else {
            Failure::retryable(error, None)
        }
    }

    /// A status other than 200.
    async fn status_failure(&self, response: Response, is_post: bool) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let snippet = snippet(response).await;
        let message = if snippet.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {snippet}")
        };
        match status {
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS => {
                // A 503 or 429 means the request was turned away; after a
                // 502 or 504 a POST may already have reached Trino.
                let turned_away = matches!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
                );
                let error = TrinoError::Unavailable {
                    message,
                    submitted: !(is_post && turned_away),
                };
                if is_post {
                    Failure::fatal(error)
                } else {
                    let after = (status == StatusCode::TOO_MANY_REQUESTS)
                        .then_some(retry_after)
                        .flatten();
                    Failure::retryable(error, after)
                }
            }
            StatusCode::UNAUTHORIZED => Failure::fatal(TrinoError::Unauthenticated(message)),
            StatusCode::FORBIDDEN => Failure::fatal(TrinoError::Forbidden(message)),
            _ => Failure::fatal(TrinoError::Protocol(message)),
        }
    }

    /// Asks the coordinator to stop the query behind `uri`; failures are
    /// only logged, as the statement has already ended for the caller.
    async fn cancel_remote(&self, uri: &Url) {
        let outcome = self
            .http
            .delete(uri.clone())
            .headers(self.common_headers.clone())
            .timeout(CANCEL_REQUEST_TIMEOUT)
            .send()
            .await;
        match outcome {
            Ok(response) => {
                tracing::debug!(uri = %uri.path(), status = %response.status(), "cancelled a Trino query")
            }
            Err(e) => {
                tracing::debug!(uri = %uri.path(), error = %source_chain(&e), "cancelling a Trino query failed")
            }
        }
    }
}

/// The session changes in an answer's headers.
fn session_changes(headers: &HeaderMap) -> SessionChanges {
    let values = |name: &'static str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut changes = SessionChanges::default();
    for header in values(protocol::HEADER_SET_SESSION) {
        if let Some((name, value)) = protocol::decode_session_property(&header) {
            changes.set.insert(name, value);
        }
    }
    changes.cleared = values(protocol::HEADER_CLEAR_SESSION).into_iter().collect();
    changes.catalog = values(protocol::HEADER_SET_CATALOG).into_iter().next();
    changes.schema = values(protocol::HEADER_SET_SCHEMA).into_iter().next();
    changes
}

/// The start of an error response's body, on one line.
async fn snippet(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(SNIPPET_CHARS).collect();
    if line.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// An error with its causes, which say what actually failed ("connection
/// reset by peer") where reqwest's own message does not.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Secret;

    #[test]
    fn rejects_bad_configuration() {
        for coordinator in ["not a url", "ftp://trino:21", "file:///tmp"] {
            let err =
                TrinoClient::new(TrinoConfig::new(coordinator, "alice")).expect_err(coordinator);
            assert!(matches!(err, TrinoError::Config(_)), "{coordinator}: {err}");
        }
        let err = TrinoClient::new(TrinoConfig::new("http://trino:8080", " ")).expect_err("user");
        assert!(matches!(err, TrinoError::Config(_)));
        let mut config = TrinoConfig::new("http://trino:8080", "alice");
        config.session_properties = BTreeMap::from([("a=b".into(), "1".into())]);
        assert!(TrinoClient::new(config).is_err());
        let mut config = TrinoConfig::new("http://trino:8080", "alice");
        config.catalog = Some("bad\ncatalog".into());
        assert!(TrinoClient::new(config).is_err());
    }

    #[test]
    fn builds_headers_and_keeps_credentials_out_of_debug() {
        let mut config = TrinoConfig::new("http://trino:8080/gateway", "alice");
        config.auth = TrinoAuth::Basic {
            user: "alice".into(),
            password: Secret::new("s3cret"),
        };
        config.catalog = Some("tpch".into());
        config.session_properties = BTreeMap::from([
            ("query_max_run_time".into(), "10m".into()),
            (
                "hive.insert_existing_partitions_behavior".into(),
                "OVERWRITE".into(),
            ),
        ]);
        config.client_tags = vec!["vega".into(), "adhoc".into()];
        let client = TrinoClient::new(config).expect("client");
        assert_eq!(
            client.statement_url.as_str(),
            "http://trino:8080/gateway/v1/statement"
        );
        let auth = client.common_headers.get(AUTHORIZATION).expect("auth");
        assert_eq!(auth.to_str().ok(), Some("Basic YWxpY2U6czNjcmV0"));
        assert!(auth.is_sensitive());
        let sessions: Vec<_> = client
            .statement_headers
            .get_all("x-trino-session")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            sessions,
            vec![
                "hive.insert_existing_partitions_behavior=OVERWRITE",
                "query_max_run_time=10m"
            ]
        );
        assert_eq!(
            client
                .statement_headers
                .get("x-trino-client-tags")
                .and_then(|v| v.to_str().ok()),
            Some("vega,adhoc")
        );
        let printed = format!("{client:?}");
        assert!(
            !printed.contains("s3cret") && !printed.contains("YWxpY2U6"),
            "{printed}"
        );
    }

    #[test]
    fn reads_session_changes_from_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-trino-set-session", HeaderValue::from_static("a=1%2C2"));
        headers.append("x-trino-set-session", HeaderValue::from_static("b=x"));
        headers.append("x-trino-clear-session", HeaderValue::from_static("c"));
        headers.append("x-trino-set-schema", HeaderValue::from_static("sf1"));
        let changes = session_changes(&headers);
        assert_eq!(changes.set.get("a").map(String::as_str), Some("1,2"));
        assert_eq!(changes.set.get("b").map(String::as_str), Some("x"));
        assert!(changes.cleared.contains("c"));
        assert_eq!(changes.schema.as_deref(), Some("sf1"));
        assert_eq!(changes.catalog, None);
    }
}

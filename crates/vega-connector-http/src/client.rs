//! Requests: a blocking client built from connection parameters, one GET
//! per page with the body read up to `max_response_bytes`, and the mapping
//! of failures to [`ConnectorError`]s.
//!
//! Secret header values are resolved when the client is built, marked
//! sensitive, and scrubbed from any response text quoted in an error.
//! Errors name the URL without its query string. Redirects are followed
//! only within the base URL's origin, so headers never reach another host.

use std::io::Read;

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use vega_connectors::ConnectorError;

use crate::config::{HeaderSpec, HttpConnectionParams};

/// Redirects followed at most per request.
const MAX_REDIRECTS: usize = 10;
/// Characters of a response body quoted in an error.
const SNIPPET_CHARS: usize = 200;

/// One response read whole.
#[derive(Debug)]
pub struct Page {
    /// The URL that answered (after redirects).
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A client for one connection.
pub struct HttpClient {
    client: Client,
    base: Url,
    max_response_bytes: u64,
    timeout_ms: u128,
    /// Resolved secret values, to scrub from quoted response text.
    secrets: Vec<String>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Resolves the secret headers and builds the client.
    pub fn new(params: &HttpConnectionParams) -> Result<Self, ConnectorError> {
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, spec) in &params.headers {
            let value = match spec {
                HeaderSpec::Plain(v) => v.clone(),
                HeaderSpec::Secret(reference) => {
                    let secret = reference.resolve()?;
                    let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                        ConnectorError::SecretRef {
                            reference: reference.to_string(),
                            message: format!(
                                "the secret is not a valid value for header '{name}' (control characters or non-ASCII text)"
                            ),
                        }
                    })?;
                    value.set_sensitive(true);
                    if !secret.expose().is_empty() {
                        secrets.push(secret.expose().to_string());
                    }
                    value
                }
            };
            headers.insert(name.clone(), value);
        }
        let origin = params.base_url.origin();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().origin() != origin || attempt.previous().len() >= MAX_REDIRECTS {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let mut builder = Client::builder();
        if let Some(path) = &params.ca_file {
            let pem = std::fs::read(path).map_err(|e| ConnectorError::InvalidParams {
                field: "ca_file".into(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConnectorError::InvalidParams {
                    field: "ca_file".into(),
                    message: format!("{} holds no PEM certificate: {e}", path.display()),
                }
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .default_headers(headers)
            .timeout(params.timeout)
            .connect_timeout(params.connect_timeout)
            .redirect(policy)
            .user_agent(concat!("vega/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Internal {
                message: format!("cannot build the HTTP client: {}", chain(&e)),
            })?;
        Ok(Self {
            client,
            base: params.base_url.clone(),
            max_response_bytes: params.max_response_bytes,
            timeout_ms: params.timeout.as_millis(),
            secrets,
        })
    }

    /// Whether `url` has the base URL's scheme, host and port: the only
    /// place headers are sent.
    pub fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// GETs `url` and reads the whole body; non-success statuses become
    /// errors.
    pub fn get(&self, url: &Url) -> Result<Page, ConnectorError> {
        let what = describe(url);
        let response = self
            .client
            .get(url.clone())
            .send()
            .map_err(|e| self.transport_error(&what, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(&what, response));
        }
        let final_url = response.url().clone();
        let headers = response.headers().clone();
        let body = self.read_body(&what, response)?;
        Ok(Page {
            url: final_url,
            headers,
            body,
        })
    }

    fn read_body(&self, what: &str, response: Response) -> Result<Vec<u8>, ConnectorError> {
        let limit = self.max_response_bytes;
        let too_large = |size: String| {
            ConnectorError::Remote {
            what: what.to_string(),
            message: format!(
                "the response is {size} bytes; at most {limit} are accepted (raise the connection's max_response_bytes, or page the source)"
            ),
            permanent: true,
        }
        };
        if let Some(length) = response.content_length() {
            if length > limit {
                return Err(too_large(length.to_string()));
            }
        }
        let capacity = response
            .content_length()
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(0);
        let mut body = Vec::with_capacity(capacity);
        response
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| {
                let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                    || chain(&e).to_ascii_lowercase().contains("timed out");
                ConnectorError::Unreachable {
                    what: what.to_string(),
                    message: if timed_out {
                        format!(
                            "reading the response timed out after {} ms",
                            self.timeout_ms
                        )
                    } else {
                        format!(
                            "the connection was lost while reading the response: {}",
                            chain(&e)
                        )
                    },
                }
            })?;
        if body.len() as u64 > limit {
            return Err(too_large(format!("more than {limit}")));
        }
        Ok(body)
    }

    fn transport_error(&self, what: &str, error: &reqwest::Error) -> ConnectorError {
        let cause = chain(error);
        if error.is_timeout() {
            return ConnectorError::Unreachable {
                what: what.to_string(),
                message: format!("no answer within {} ms ({cause})", self.timeout_ms),
            };
        }
        if error.is_redirect() {
            return ConnectorError::Remote {
                what: what.to_string(),
                message: format!("too many redirects ({cause})"),
                permanent: true,
            };
        }
        if error.is_builder() {
            return ConnectorError::Internal {
                message: format!("cannot build a request to {what}: {cause}"),
            };
        }
        ConnectorError::Unreachable {
            what: what.to_string(),
            message: cause,
        }
    }

    fn status_error(&self, what: &str, response: Response) -> ConnectorError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("; Retry-After: {}", v.chars().take(40).collect::<String>()));
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| {
                let target = self.base.join(v.to_str().ok()?).ok()?;
                Some(describe(&target))
            });
        let snippet = self.snippet(response);
        let mut message = format!("HTTP {status}");
        if let Some(r) = &retry_after {
            message.push_str(r);
        }
        if !snippet.is_empty() {
            message.push_str(": ");
            message.push_str(&snippet);
        }
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Auth {
                what: what.to_string(),
                message,
            },
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => ConnectorError::Remote {
                what: what.to_string(),
                message,
                permanent: false,
            },
            s if s.is_server_error() => ConnectorError::Remote {
                what: what.to_string(),
                message,
                permanent: false,
            },
            s if s.is_redirection() => ConnectorError::Remote {
                what: what.to_string(),
                message: format!(
                    "HTTP {status}: a redirect to {} was not followed; only redirects within the base URL's origin are",
                    location.unwrap_or_else(|| "an unreadable location".into())
                ),
                permanent: true,
            },
            _ => ConnectorError::Remote {
                what: what.to_string(),
                message,
                permanent: true,
            },
        }
    }

    /// The start of an error body as one line, secrets scrubbed.
    fn snippet(&self, response: Response) -> String {
        let mut bytes = Vec::new();
        // Read a little more than quoted so a secret straddling the cut is
        // still found and scrubbed.
        let budget =
            (SNIPPET_CHARS * 4 + self.secrets.iter().map(String::len).max().unwrap_or(0)) as u64;
        if response.take(budget).read_to_end(&mut bytes).is_err() {
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        text = self.scrub(&text);
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let trimmed = one_line.trim();
        let mut out: String = trimmed.chars().take(SNIPPET_CHARS).collect();
        if trimmed.chars().count() > SNIPPET_CHARS {
            out.push('…');
        }
        out
    }

    /// `text` with every resolved secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

/// A URL as named in errors: scheme, host, port and path, no query string
/// (which may carry tokens), no credentials.
pub fn describe(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// An error and its sources, joined with ": ", without URLs that reqwest
/// would include.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = match e.downcast_ref::<reqwest::Error>() {
            Some(r) => strip_reqwest_url(r),
            None => e.to_string(),
        };
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// reqwest's message for `error` without the " for url (…)" it appends.
fn strip_reqwest_url(error: &reqwest::Error) -> String {
    let text = error.to_string();
    match error.url() {
        Some(url) => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>"),
        None => text,
    }
}

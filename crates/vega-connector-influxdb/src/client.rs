//! A small blocking client for the InfluxDB 1.x HTTP API: `/ping`, small
//! `SHOW` queries read whole, and chunked `SELECT`s read one chunk at a
//! time. Maps every failure to a [`ConnectorError`]: connection refused or
//! timed out → `Unreachable`, 401/403 → `Auth`, an InfluxQL error →
//! permanent `Remote`, a 5xx → retryable `Remote`. Credentials travel in a
//! Basic `Authorization` header, never in a URL, so no error message holds
//! them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use vega_connectors::secret::SecretValue;
use vega_connectors::ConnectorError;

use crate::config::InfluxdbConnection;

/// The most bytes of an error answer that are read.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// The most bytes of one answer to a `SHOW` query (read whole).
const MAX_SMALL_BODY: u64 = 64 * 1024 * 1024;

/// One series of a query answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Series {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StatementResult {
    #[serde(default)]
    statement_id: u64,
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    partial: bool,
}

/// A client for one connection.
pub struct Client {
    http: HttpClient,
    base: Url,
    database: String,
    credentials: Option<(String, SecretValue)>,
    what: String,
}

impl Client {
    /// Builds a client; resolves the password reference now.
    pub fn new(connection: &InfluxdbConnection) -> Result<Self, ConnectorError> {
        let credentials = match (&connection.username, &connection.password) {
            (Some(user), Some(reference)) => Some((user.clone(), reference.resolve()?)),
            _ => None,
        };
        let http = HttpClient::builder()
            .timeout(connection.timeout)
            .connect_timeout(connection.timeout)
            .build()
            .map_err(|e| ConnectorError::Internal {
                message: format!("building the HTTP client: {}", error_chain(&e)),
            })?;
        let host = connection.url.host_str().unwrap_or_default();
        let what = match connection.url.port_or_known_default() {
            Some(port) => format!("InfluxDB at {host}:{port}"),
            None => format!("InfluxDB at {host}"),
        };
        Ok(Client {
            http,
            base: connection.url.clone(),
            database: connection.database.clone(),
            credentials,
            what,
        })
    }

    /// Names the server in errors, e.g. `InfluxDB at 127.0.0.1:8086`.
    pub fn what(&self) -> &str {
        &self.what
    }

    fn endpoint(&self, path: &str) -> Result<Url, ConnectorError> {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        Ok(url)
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, ConnectorError> {
        let response = self
            .authorize(request)
            .send()
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut body = String::new();
        let _ = response.take(MAX_ERROR_BODY).read_to_string(&mut body);
        let detail = serde_json::from_str::<Answer>(&body)
            .ok()
            .and_then(|a| a.error)
            .unwrap_or_else(|| body.trim().chars().take(500).collect());
        let message = if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        };
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Auth {
                what: self.what.clone(),
                message,
            },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                ConnectorError::Remote {
                    what: self.what.clone(),
                    message,
                    permanent: false,
                }
            }
            _ => ConnectorError::Remote {
                what: self.what.clone(),
                message,
                permanent: true,
            },
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> ConnectorError {
        ConnectorError::Unreachable {
            what: self.what.clone(),
            message: error_chain(e),
        }
    }

    /// `GET /ping`: is the server there?
    pub fn ping(&self) -> Result<(), ConnectorError> {
        let url = self.endpoint("ping")?;
        self.send(self.http.get(url)).map(|_| ())
    }

    /// Runs a small statement (a `SHOW …`) and returns its series.
    pub fn query_small(&self, q: &str) -> Result<Vec<Series>, ConnectorError> {
        let url = self.endpoint("query")?;
        let request =
            self.http
                .get(url)
                .query(&[("db", self.database.as_str()), ("q", q), ("epoch", "ns")]);
        let response = self.send(request)?;
        let mut body = String::new();
        response
            .take(MAX_SMALL_BODY)
            .read_to_string(&mut body)
            .map_err(|e| ConnectorError::Unreachable {
                what: self.what.clone(),
                message: format!("reading the answer: {e}"),
            })?;
        let answer: Answer = serde_json::from_str(&body).map_err(|e| ConnectorError::Remote {
            what: self.what.clone(),
            message: format!("answer to {q:?} is not the expected JSON: {e}"),
            permanent: false,
        })?;
        let mut series = Vec::new();
        for result in self.check(answer)? {
            series.extend(result.series);
        }
        Ok(series)
    }

    /// Starts a chunked query; read it with [`Chunks::next_chunk`].
    pub fn query_chunked(&self, q: &str, chunk_size: usize) -> Result<Chunks, ConnectorError> {
        let url = self.endpoint("query")?;
        let chunk_size = chunk_size.to_string();
        let request = self.http.get(url).query(&[
            ("db", self.database.as_str()),
            ("q", q),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", chunk_size.as_str()),
        ]);
        let response = self.send(request)?;
        Ok(Chunks {
            reader: Some(BufReader::new(response)),
            what: self.what.clone(),
            partial: true,
            line: String::new(),
        })
    }

    /// Turns errors inside an answer into [`ConnectorError`]s; InfluxQL
    /// errors (a bad statement, a missing database) are permanent.
    fn check(&self, answer: Answer) -> Result<Vec<StatementResult>, ConnectorError> {
        check_answer(&self.what, answer)
    }
}

fn check_answer(what: &str, answer: Answer) -> Result<Vec<StatementResult>, ConnectorError> {
    if let Some(error) = answer.error {
        return Err(remote_error(what, error));
    }
    for result in &answer.results {
        if let Some(error) = &result.error {
            return Err(remote_error(what, error.clone()));
        }
        if result.statement_id != 0 {
            return Err(ConnectorError::Remote {
                what: what.to_string(),
                message: "the answer holds more than one statement's results".into(),
                permanent: true,
            });
        }
    }
    Ok(answer.results)
}

fn remote_error(what: &str, error: String) -> ConnectorError {
    let lower = error.to_ascii_lowercase();
    if lower.contains("authorization failed") || lower.contains("not authorized") {
        return ConnectorError::Auth {
            what: what.to_string(),
            message: error,
        };
    }
    ConnectorError::Remote {
        what: what.to_string(),
        message: error,
        permanent: true,
    }
}

/// The answer of a chunked query: one JSON document per line, each with at
/// most `chunk_size` rows per series.
pub struct Chunks {
    reader: Option<BufReader<Response>>,
    what: String,
    /// Whether more chunks were announced (the last one read was partial).
    partial: bool,
    line: String,
}

impl Chunks {
    /// The series of the next chunk, or `None` after the last. An answer
    /// that ends while more chunks were announced is an error, never a
    /// silently short read.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Series>>, ConnectorError> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            self.line.clear();
            let read = reader.read_line(&mut self.line);
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.reader = None;
                    return Err(ConnectorError::Unreachable {
                        what: self.what.clone(),
                        message: format!("lost the answer while reading it: {e}"),
                    });
                }
            };
            if n == 0 {
                self.reader = None;
                if self.partial {
                    return Err(ConnectorError::Remote {
                        what: self.what.clone(),
                        message: "the answer ended before its last chunk".into(),
                        permanent: false,
                    });
                }
                return Ok(None);
            }
            if self.line.trim().is_empty() {
                continue;
            }
            let answer: Answer = match serde_json::from_str(&self.line) {
                Ok(a) => a,
                Err(e) => {
                    self.reader = None;
                    return Err(ConnectorError::Remote {
                        what: self.what.clone(),
                        message: format!("a chunk of the answer is not the expected JSON: {e}"),
                        permanent: false,
                    });
                }
            };
            let results = match check_answer(&self.what, answer) {
                Ok(r) => r,
                Err(e) => {
                    self.reader = None;
                    return Err(e);
                }
            };
            self.partial = results.iter().any(|r| r.partial);
            let series = results.into_iter().flat_map(|r| r.series).collect();
            return Ok(Some(series));
        }
    }
}

/// An error and its causes, without the request URL.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut timeout = e.is_timeout();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains("timed out") {
            timeout = true;
        }
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    let message = parts.join(": ");
    if timeout && !message.contains("timed out") {
        format!("timed out: {message}")
    } else {
        message
    }
}

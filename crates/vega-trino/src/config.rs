//! [`TrinoConfig`]: where the coordinator is, who the queries run as, the
//! session they run in, how the client authenticates, and the time and size
//! bounds of one statement. Every default is a named constant below.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The `X-Trino-Source` sent when none is configured: Trino's query history
/// and resource groups then show which application ran a query.
pub const DEFAULT_SOURCE: &str = "vega";

/// How long opening a TCP connection to the coordinator may take. A
/// coordinator on the same network accepts in milliseconds; one that takes
/// longer is down or unreachable, and a caller (or its circuit breaker)
/// learns that sooner than from a long wait.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one HTTP request (the statement's POST or one `nextUri` GET,
/// body included) may take. Trino answers a `nextUri` GET within about a
/// second (it waits at most that long for data before answering an empty
/// page), so a request that takes this long means a stuck coordinator or
/// network rather than a slow query.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a whole statement may take, queueing included. Federated queries
/// run longer than local ones, but a gateway should not hold a slot and a
/// connection for longer than a user waits; callers with a tighter deadline
/// set their own.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Rows kept from one statement before the client stops reading, cancels
/// the query and reports the result as truncated. All rows are held in
/// memory as JSON values, so an unbounded result could exhaust the process;
/// a million rows is far beyond what an interactive answer needs.
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;

/// What every secret prints instead of its value.
pub const REDACTED: &str = "***";

/// A password or token. `Debug` and `Display` print [`REDACTED`]; only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: call this only where it is sent, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// How the client authenticates to the coordinator (the `Authorization`
/// header of every request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrinoAuth {
    /// No `Authorization` header: a coordinator without authentication,
    /// which trusts `X-Trino-User`.
    #[default]
    None,
    /// HTTP Basic (Trino's password authenticators: file, LDAP).
    Basic { user: String, password: Secret },
    /// `Authorization: Bearer` (Trino's JWT and OAuth 2.0 authenticators).
    Bearer { token: Secret },
}

/// Connection and session parameters of a [`crate::TrinoClient`].
#[derive(Clone, Debug)]
pub struct TrinoConfig {
    /// The coordinator's base URL, `http(s)://host:port`.
    pub coordinator: String,
    /// `X-Trino-User`: the user queries run as.
    pub user: String,
    /// `X-Trino-Source`.
    pub source: String,
    /// `X-Trino-Catalog`: the catalog of unqualified names.
    pub catalog: Option<String>,
    /// `X-Trino-Schema`: the schema of unqualified names.
    pub schema: Option<String>,
    /// `X-Trino-Session`: session properties (`query_max_run_time`,
    /// `<catalog>.<property>`), one header per property.
    pub session_properties: BTreeMap<String, String>,
    /// `X-Trino-Client-Tags`, for Trino's resource group selectors.
    pub client_tags: Vec<String>,
    /// `X-Trino-Client-Info`: free text shown in Trino's query history.
    pub client_info: Option<String>,
    pub auth: TrinoAuth,
    pub connect_timeout: Duration,
    /// The bound of each HTTP request, body included.
    pub request_timeout: Duration,
    /// The bound of a whole statement; past it the query is cancelled.
    pub query_timeout: Duration,
    /// Rows kept before the query is cancelled and the result truncated.
    pub max_rows: usize,
    /// A PEM file of CA certificates trusted for `https` coordinators, on
    /// top of the public roots (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl TrinoConfig {
    /// A configuration with every default, for `coordinator` and `user`.
    pub fn new(coordinator: impl Into<String>, user: impl Into<String>) -> Self {
        TrinoConfig {
            coordinator: coordinator.into(),
            user: user.into(),
            source: DEFAULT_SOURCE.to_string(),
            catalog: None,
            schema: None,
            session_properties: BTreeMap::new(),
            client_tags: Vec::new(),
            client_info: None,
            auth: TrinoAuth::None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            max_rows: DEFAULT_MAX_ROWS,
            ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let config = TrinoConfig {
            auth: TrinoAuth::Basic {
                user: "alice".into(),
                password: Secret::new("hunter2"),
            },
            ..TrinoConfig::new("http://trino:8080", "alice")
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains(REDACTED));
        let bearer = TrinoAuth::Bearer {
            token: Secret::new("eyJ.secret"),
        };
        assert!(!format!("{bearer:?}").contains("eyJ"));
        assert_eq!(Secret::new("x").to_string(), REDACTED);
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let c = TrinoConfig::new("http://trino:8080", "alice");
        assert_eq!(c.source, DEFAULT_SOURCE);
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(c.query_timeout, DEFAULT_QUERY_TIMEOUT);
        assert_eq!(c.max_rows, DEFAULT_MAX_ROWS);
        assert_eq!(c.auth, TrinoAuth::None);
    }
}

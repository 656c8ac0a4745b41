//! Which engine answers a query (`query.engine`) and the Trino cluster
//! that large queries can be sent to (`query.trino`): its coordinators as
//! a health-checked pool, the session every query runs in, credentials and
//! timeouts.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::balance::{
    Algorithm, HealthCheckConfig, DEFAULT_HEALTHY_THRESHOLD, DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_UNHEALTHY_THRESHOLD,
};
use crate::bytesize::ByteSize;
use crate::duration::HumanDuration;
use crate::keypath::{render, Key, PathBuild};
use crate::net::parse_http_url;
use crate::secret::Secret;
use crate::validate::Findings;

/// DuckDB answers every query unless a rule sends it to Trino, so a node
/// without `query.trino` behaves exactly as before and one with it uses
/// Trino only where it pays off.
pub const DEFAULT_ENGINE: Engine = Engine::Auto;

/// Trino queries take from seconds to many minutes, so the coordinator
/// with the fewest of this node's queries in flight is the best next one.
pub const DEFAULT_TRINO_LOAD_BALANCE: Algorithm = Algorithm::LeastConnections;

/// Trino's server-information endpoint: every coordinator answers it with
/// 200 once its HTTP server is up, and it costs the coordinator nothing.
pub const DEFAULT_TRINO_HEALTH_CHECK_PATH: &str = "/v1/info";

/// Trino needs a user on every request (`X-Trino-User`); with this one,
/// Vega's queries show up as Vega's in Trino's UI and resource groups.
pub const DEFAULT_TRINO_USER: &str = "vega";

/// `X-Trino-Source`, by which resource groups and query logs tell Vega's
/// queries from other clients'.
pub const DEFAULT_TRINO_SOURCE: &str = "vega";

/// Connecting to a coordinator on a local network takes milliseconds; one
/// that has not accepted within this is treated as failed and the next
/// coordinator is tried.
pub const DEFAULT_TRINO_CONNECT_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);

/// One HTTP exchange with the coordinator (submitting a statement, fetching
/// one page of results). A coordinator answers each within about a second
/// (it waits at most that long for new results before answering), so this
/// leaves room for a busy one without hanging on a dead one.
pub const DEFAULT_TRINO_REQUEST_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

/// Queries sent to Trino are the large ones; this matches the default of
/// `query.max_timeout`, the longest a client may ask a query to run.
pub const DEFAULT_TRINO_QUERY_TIMEOUT: HumanDuration = HumanDuration::from_mins(10);

/// DuckDB scans a few GiB of Parquet on one node in seconds; beyond about
/// ten the single node's CPU and spilling dominate, and a Trino cluster's
/// parallelism pays for its overhead of a few hundred milliseconds per
/// query.
pub const DEFAULT_TRINO_SIZE_THRESHOLD: ByteSize = ByteSize::gib(10);

/// Which engine answers queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// DuckDB, except queries that `query.trino` takes: those reading more
    /// than `query.trino.size_threshold`. Without `query.trino`, DuckDB
    /// answers everything. The default.
    #[default]
    Auto,
    /// DuckDB answers every query; `query.trino` is not used.
    Duckdb,
    /// Trino answers every query; needs `query.trino`.
    Trino,
}

impl Engine {
    /// The name used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::Duckdb => "duckdb",
            Engine::Trino => "trino",
        }
    }
}

/// The Trino cluster (`query.trino`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrinoConfig {
    /// The coordinators' URLs, e.g. `http://trino-1:8080`: a pool of at
    /// least one, health-checked, calls spread by `load_balance`.
    pub coordinators: Vec<String>,
    /// How queries are spread over the healthy coordinators:
    /// `least_connections` (default), `round_robin` or `ip_hash`.
    pub load_balance: Algorithm,
    /// The active health check of every coordinator.
    pub health_check: TrinoHealthCheckConfig,
    /// The Trino user queries run as (`X-Trino-User`).
    pub user: String,
    /// The catalog of unqualified table names. Unset: none (names must be
    /// qualified).
    pub catalog: Option<String>,
    /// The schema of unqualified table names; needs `catalog`.
    pub schema: Option<String>,
    /// The client name Trino records (`X-Trino-Source`).
    pub source: String,
    /// Session properties set on every query, e.g. `query_max_run_time: 10m`
    /// or `hive.parquet_use_column_names: true`.
    #[serde(deserialize_with = "scalar_map")]
    pub session_properties: BTreeMap<String, String>,
    /// Credentials: `none` (default), `{basic: {user, password}}` or
    /// `{bearer: TOKEN}`. Never printed.
    pub auth: TrinoAuth,
    /// How long connecting to a coordinator may take.
    pub connect_timeout: HumanDuration,
    /// How long one HTTP exchange with a coordinator may take.
    pub request_timeout: HumanDuration,
    /// How long a query sent to Trino may run before it is cancelled.
    pub query_timeout: HumanDuration,
    /// With `query.engine: auto`, queries that read more than this go to
    /// Trino.
    pub size_threshold: ByteSize,
    /// With `query.engine: auto`, queries that read any of these assets
    /// (`namespace.name`) go to Trino whatever their size: the per-asset
    /// setting.
    pub assets: Vec<String>,
    /// A PEM file of CA certificates trusted for `https` coordinators, on
    /// top of the public roots (a private CA). Read at start.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for TrinoConfig {
    fn default() -> Self {
        TrinoConfig {
            coordinators: Vec::new(),
            load_balance: DEFAULT_TRINO_LOAD_BALANCE,
            health_check: TrinoHealthCheckConfig::default(),
            user: DEFAULT_TRINO_USER.to_string(),
            catalog: None,
            schema: None,
            source: DEFAULT_TRINO_SOURCE.to_string(),
            session_properties: BTreeMap::new(),
            auth: TrinoAuth::default(),
            connect_timeout: DEFAULT_TRINO_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_TRINO_REQUEST_TIMEOUT,
            query_timeout: DEFAULT_TRINO_QUERY_TIMEOUT,
            size_threshold: DEFAULT_TRINO_SIZE_THRESHOLD,
            assets: Vec::new(),
            ca_file: None,
        }
    }
}

/// The active health check of Trino's coordinators: the keys of
/// `load_balancer.health_check`, with Trino's endpoint as the default path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrinoHealthCheckConfig {
    /// URL path requested with `GET`; a coordinator passes with status 200.
    pub path: String,
    /// Time between two checks of one coordinator.
    pub interval: HumanDuration,
    /// How long a check waits for the answer; shorter than `interval`.
    pub timeout: HumanDuration,
    /// Passing checks in a row that bring a coordinator (back) into the pool.
    pub healthy_threshold: u32,
    /// Failing checks in a row that take a coordinator out of the pool.
    pub unhealthy_threshold: u32,
}

impl Default for TrinoHealthCheckConfig {
    fn default() -> Self {
        TrinoHealthCheckConfig {
            path: DEFAULT_TRINO_HEALTH_CHECK_PATH.to_string(),
            interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

impl TrinoHealthCheckConfig {
    /// The same check in the load balancer's type, which health-checked
    /// pools share.
    pub fn as_health_check(&self) -> HealthCheckConfig {
        HealthCheckConfig {
            path: self.path.clone(),
            interval: self.interval,
            timeout: self.timeout,
            healthy_threshold: self.healthy_threshold,
            unhealthy_threshold: self.unhealthy_threshold,
        }
    }
}

/// Credentials for Trino: none, a user and password (HTTP basic), or a
/// bearer token (JWT, OAuth 2). Written `none`, `{basic: {user, password}}`
/// or `{bearer: TOKEN}`; secrets are never printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrinoAuth {
    pub basic: Option<BasicAuth>,
    pub bearer: Option<Secret>,
}

/// A user and password for HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    /// Never printed.
    pub password: Secret,
}

impl TrinoAuth {
    /// Whether credentials are sent at all.
    pub fn is_none(&self) -> bool {
        self.basic.is_none() && self.bearer.is_none()
    }
}

/// The name of the no-credentials form.
const AUTH_NONE: &str = "none";

impl Serialize for TrinoAuth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_none() {
            return serializer.serialize_str(AUTH_NONE);
        }
        let mut map = serializer.serialize_map(None)?;
        if let Some(basic) = &self.basic {
            map.serialize_entry("basic", basic)?;
        }
        if let Some(bearer) = &self.bearer {
            map.serialize_entry("bearer", bearer)?;
        }
        map.end()
    }
}

/// The mapping form of [`TrinoAuth`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFields {
    #[serde(default)]
    basic: Option<BasicAuth>,
    #[serde(default)]
    bearer: Option<Secret>,
}

impl<'de> Deserialize<'de> for TrinoAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = TrinoAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("none, {basic: {user, password}} or {bearer: TOKEN}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TrinoAuth, E> {
                if v == AUTH_NONE {
                    Ok(TrinoAuth::default())
                } else {
                    Err(E::custom(format!(
                        "unknown authentication \"{v}\"; write none, {{basic: {{user, password}}}} or {{bearer: TOKEN}}"
                    )))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<TrinoAuth, E> {
                Ok(TrinoAuth::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TrinoAuth, A::Error> {
                let fields = AuthFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TrinoAuth {
                    basic: fields.basic,
                    bearer: fields.bearer,
                })
            }
        }
        deserializer.deserialize_any(AuthVisitor)
    }
}

/// A map of names to text, where a value may also be written as a number
/// or a boolean (`true`, `10`), as session properties usually are.
fn scalar_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct ScalarText(String);
    impl<'de> Deserialize<'de> for ScalarText {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ScalarVisitor;
            impl Visitor<'_> for ScalarVisitor {
                type Value = ScalarText;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("text, a number or a boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                    Ok(ScalarText(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                    Ok(ScalarText(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                    Ok(ScalarText(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                    Ok(ScalarText(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                    Ok(ScalarText(v.to_string()))
                }
            }
            deserializer.deserialize_any(ScalarVisitor)
        }
    }
    let map = BTreeMap::<String, ScalarText>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// Whether `name` is a Trino session property name: `name` or
/// `catalog.name`, lower-case letters, digits and underscores.
fn is_session_property_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    match name.split_once('.') {
        Some((catalog, property)) => part(catalog) && part(property),
        None => part(name),
    }
}

impl TrinoConfig {
    /// Adds every broken rule of the block at `at` to `f`.
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        if self.coordinators.is_empty() {
            f.at(
                at.key("coordinators"),
                "must list at least one coordinator URL, e.g. http://trino-1:8080",
            );
        }
        f.http_urls_at(&at.key("coordinators"), &self.coordinators);
        self.health_check
            .as_health_check()
            .check(&at.key("health_check"), f);
        f.not_blank_at(at.key("user"), &self.user);
        f.not_blank_at(at.key("source"), &self.source);
        if let Some(catalog) = &self.catalog {
            f.not_blank_at(at.key("catalog"), catalog);
        }
        if let Some(schema) = &self.schema {
            f.not_blank_at(at.key("schema"), schema);
            if self.catalog.is_none() {
                f.at(
                    at.key("schema"),
                    format!(
                        "needs {}: Trino looks a schema up in a catalog",
                        render(&at.key("catalog"))
                    ),
                );
            }
        }
        for name in self.session_properties.keys() {
            if !is_session_property_name(name) {
                f.at(
                    at.key("session_properties").key(name),
                    format!(
                        "\"{}\" is not a session property name: write name or catalog.name \
                         in lower-case letters, digits and underscores",
                        name.escape_debug()
                    ),
                );
            }
        }
        self.check_auth(&at.key("auth"), f);
        f.not_zero_at(
            at.key("connect_timeout"),
            self.connect_timeout.is_zero(),
            "no coordinator could ever be reached",
        );
        f.not_zero_at(
            at.key("request_timeout"),
            self.request_timeout.is_zero(),
            "every request would fail",
        );
        f.not_zero_at(
            at.key("query_timeout"),
            self.query_timeout.is_zero(),
            "every query would be cancelled at once",
        );
        if self.request_timeout > self.query_timeout {
            f.at_related(
                at.key("request_timeout"),
                at.key("query_timeout"),
                format!(
                    "{} exceeds {} ({}); one request must not outlast the whole query",
                    self.request_timeout,
                    render(&at.key("query_timeout")),
                    self.query_timeout
                ),
            );
        }
        f.not_zero_at(
            at.key("size_threshold"),
            self.size_threshold.is_zero(),
            "to send every query to Trino, set query.engine: trino",
        );
        for (i, name) in self.assets.iter().enumerate() {
            let parts: Vec<&str> = name.split('.').collect();
            let valid = parts.len() == 2
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid {
                f.at(
                    at.key("assets").index(i),
                    format!("must name an asset as namespace.name, not {name:?}"),
                );
            }
        }
    }

    fn check_auth(&self, at: &[Key], f: &mut Findings) {
        let auth = &self.auth;
        if auth.basic.is_some() && auth.bearer.is_some() {
            f.at(at.to_vec(), "set one of basic or bearer, not both");
        }
        if let Some(basic) = &auth.basic {
            f.not_blank_at(at.key("basic").key("user"), &basic.user);
            f.real_secret_at(at.key("basic").key("password"), &basic.password);
        }
        if let Some(bearer) = &auth.bearer {
            f.real_secret_at(at.key("bearer"), bearer);
        }
        if !auth.is_none() {
            let plain = self
                .coordinators
                .iter()
                .position(|url| parse_http_url(url).is_ok_and(|u| !u.https));
            if let Some(index) = plain {
                let block = &at[..at.len().saturating_sub(1)];
                let coordinator = block.key("coordinators").index(index);
                f.at_related(
                    at.to_vec(),
                    coordinator.clone(),
                    format!(
                        "credentials would cross the network in clear text: {} is http://; \
                         use https:// (Trino itself refuses passwords over plain HTTP)",
                        render(&coordinator)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_property_names_are_plain_or_catalog_qualified() {
        for ok in ["query_max_run_time", "hive.parquet_use_column_names", "a1"] {
            assert!(is_session_property_name(ok), "{ok}");
        }
        for bad in ["", "Query", "a.b.c", "1abc", "a-b", ".x", "x."] {
            assert!(!is_session_property_name(bad), "{bad}");
        }
    }

    #[test]
    fn auth_reads_none_basic_and_bearer_and_prints_no_secret() {
        let none: TrinoAuth = serde_yaml::from_str("none").unwrap();
        assert!(none.is_none());
        assert_eq!(serde_yaml::to_string(&none).unwrap(), "none\n");
        let basic: TrinoAuth =
            serde_yaml::from_str("basic: {user: vega, password: hunter2}").unwrap();
        assert_eq!(basic.basic.as_ref().unwrap().password.expose(), "hunter2");
        let printed = serde_yaml::to_string(&basic).unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        let bearer: TrinoAuth = serde_yaml::from_str("bearer: eyJ.token").unwrap();
        assert_eq!(bearer.bearer.unwrap().expose(), "eyJ.token");
        let err = serde_yaml::from_str::<TrinoAuth>("kerberos").unwrap_err();
        assert!(err.to_string().contains("unknown authentication"), "{err}");
        let err = serde_yaml::from_str::<TrinoAuth>("oauth: x").unwrap_err();
        assert!(err.to_string().contains("unknown field `oauth`"), "{err}");
    }
}

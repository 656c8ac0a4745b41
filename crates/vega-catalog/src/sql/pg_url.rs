//! The PostgreSQL catalog URL: libpq's multi-host syntax plus Vega's own
//! query parameters, parsed here because sqlx's driver takes one host only.
//!
//! ```text
//! postgres://user:pw@h1:p1,h2:p2,h3/db?target_session_attrs=read-write
//!     &replicas=h4:p4,h5&max_replica_lag=5s&failover_timeout=30s&sslmode=…
//! ```
//!
//! The authority lists the hosts the write pool may find the primary on,
//! tried in order; a host without a port uses 5432. Vega's parameters
//! (`replicas`, `max_replica_lag`, `failover_timeout`) and
//! `target_session_attrs` are consumed here and never reach sqlx; every
//! other parameter (`sslmode`, `application_name`, …) is copied to each
//! single-host URL handed to sqlx. A bad value is a
//! [`CatalogError::InvalidUrl`] naming the parameter.

use std::fmt;
use std::time::Duration;

use crate::{CatalogError, Result};

/// The port of a host given without one (libpq's and PostgreSQL's default).
pub const DEFAULT_PORT: u16 = 5432;
/// Default bound on a replica's replication lag: a few heartbeats of
/// staleness is harmless for listings and lookups, and a healthy streaming
/// replica stays well below it.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(5);
/// Default bound on one search for a new primary: an HA manager (Patroni,
/// repmgr, a cloud service) typically promotes a standby within 10–30 s.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The query parameter listing read replicas.
const PARAM_REPLICAS: &str = "replicas";
/// The query parameter bounding a usable replica's lag.
const PARAM_MAX_LAG: &str = "max_replica_lag";
/// The query parameter bounding one search for a new primary.
const PARAM_FAILOVER_TIMEOUT: &str = "failover_timeout";
/// libpq's parameter; consumed here (sqlx does not know it).
const PARAM_TARGET_SESSION_ATTRS: &str = "target_session_attrs";

/// One server: a host name or address (IPv6 without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the write pool asks of a host (libpq's `target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// `read-write` (the default; `any` means the same here, since the
    /// write pool needs a writable server): not in recovery and
    /// `transaction_read_only` off.
    ReadWrite,
    /// `primary`: not in recovery.
    Primary,
}

/// Where the write pool looks for the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryHosts {
    /// The hosts of the authority, in the order they are tried.
    List(Vec<HostPort>),
    /// No host in the authority but libpq's `host=` parameter (e.g. a unix
    /// socket directory): the URL, without Vega's parameters, is the one
    /// server. The string is the `host=` value, for logs.
    FromQuery(String),
}

/// A parsed PostgreSQL catalog URL. Its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    scheme: String,
    /// `user[:password]` as written (percent-encoded), without the `@`.
    userinfo: Option<String>,
    primary: PrimaryHosts,
    /// `/database` as written, or empty.
    path: String,
    /// The query parameters passed on to sqlx, as written (`key=value`).
    passthrough: Vec<String>,
    replicas: Vec<HostPort>,
    max_replica_lag: Duration,
    failover_timeout: Duration,
    target_session_attrs: TargetSessionAttrs,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("user", &self.user())
            .field("primary", &self.primary)
            .field("path", &self.path)
            .field("passthrough", &self.passthrough)
            .field("replicas", &self.replicas)
            .field("max_replica_lag", &self.max_replica_lag)
            .field("failover_timeout", &self.failover_timeout)
            .field("target_session_attrs", &self.target_session_attrs)
            .finish()
    }
}

fn invalid(parameter: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::InvalidUrl {
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

impl PostgresUrl {
    /// Parses `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("scheme", "expected postgres://… or postgresql://…"))?;
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(invalid(
                "scheme",
                format!("'{scheme}' is not postgres or postgresql"),
            ));
        }
        if rest.contains('#') {
            return Err(invalid(
                "URL",
                "a '#' must be percent-encoded (%23); URLs have no fragment here",
            ));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (userinfo, host_list) = match authority.rfind('@') {
            Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
            None => (None, authority),
        };

        let mut passthrough = Vec::new();
        let mut replicas = None;
        let mut max_replica_lag = None;
        let mut failover_timeout = None;
        let mut target_session_attrs = None;
        let mut query_host = None;
        let mut query_names_server = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(raw_key, "URL")?;
            let value = percent_decode(raw_value, &key)?;
            let slot = match key.as_str() {
                PARAM_REPLICAS => &mut replicas,
                PARAM_MAX_LAG => &mut max_replica_lag,
                PARAM_FAILOVER_TIMEOUT => &mut failover_timeout,
                PARAM_TARGET_SESSION_ATTRS => &mut target_session_attrs,
                other => {
                    if other == "host" {
                        query_host = Some(value);
                    }
                    if matches!(other, "host" | "hostaddr" | "port") {
                        query_names_server = Some(other.to_string());
                    }
                    passthrough.push(pair.to_string());
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(&key, "given more than once"));
            }
        }

        let target_session_attrs = match target_session_attrs.as_deref() {
            // The write pool always needs the writable primary, so `any`
            // means the same here.
            None | Some("read-write") | Some("any") => TargetSessionAttrs::ReadWrite,
            Some("primary") => TargetSessionAttrs::Primary,
            Some(other) => {
                return Err(invalid(
                    PARAM_TARGET_SESSION_ATTRS,
                    format!(
                        "'{other}' is not supported: the catalog's hosts are searched for the \
                             writable primary (read-write); list read replicas with replicas=h:p,…"
                    ),
                ))
            }
        };

        let primary = if host_list.is_empty() {
            match query_host {
                Some(host) if replicas.is_none() => PrimaryHosts::FromQuery(host),
                Some(_) => {
                    return Err(invalid(
                        "host",
                        "replicas= needs the primary's hosts in the URL's host list \
                         (postgres://user@h1:p1,h2:p2/db), not in host=",
                    ))
                }
                None => return Err(invalid(
                    "host",
                    "no host given: list one or more as postgres://user@host[:port],host[:port]/db",
                )),
            }
        } else {
            if let Some(name) = query_names_server {
                return Err(invalid(
                    &name,
                    "the URL already lists its hosts; give host and port only in the host list",
                ));
            }
            PrimaryHosts::List(parse_host_list(host_list, "host")?)
        };

        let replicas = match replicas {
            Some(list) => parse_host_list(&list, PARAM_REPLICAS)?,
            None => Vec::new(),
        };
        let max_replica_lag = match max_replica_lag {
            Some(text) => parse_duration(&text, PARAM_MAX_LAG)?,
            None => DEFAULT_MAX_REPLICA_LAG,
        };
        let failover_timeout = match failover_timeout {
            Some(text) => parse_duration(&text, PARAM_FAILOVER_TIMEOUT)?,
            None => DEFAULT_FAILOVER_TIMEOUT,
        };
        if failover_timeout.is_zero() {
            return Err(invalid(
                PARAM_FAILOVER_TIMEOUT,
                "must be more than zero (writers wait this long for a new primary)",
            ));
        }

        Ok(PostgresUrl {
            scheme: scheme.to_string(),
            userinfo,
            primary,
            path: path.to_string(),
            passthrough,
            replicas,
            max_replica_lag,
            failover_timeout,
            target_session_attrs,
        })
    }

    /// What a host must be to serve the write pool.
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }

    /// Where the write pool looks for the primary.
    pub fn primary_hosts(&self) -> &PrimaryHosts {
        &self.primary
    }

    /// The read replicas (`replicas=`), in the order given.
    pub fn replicas(&self) -> &[HostPort] {
        &self.replicas
    }

    /// A replica lagging more than this is not read from
    /// (`max_replica_lag=`, default [`DEFAULT_MAX_REPLICA_LAG`]).
    pub fn max_replica_lag(&self) -> Duration {
        self.max_replica_lag
    }

    /// How long one search for a new primary may take
    /// (`failover_timeout=`, default [`DEFAULT_FAILOVER_TIMEOUT`]).
    pub fn failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    /// The user name as written (percent-encoded), if any.
    pub fn user(&self) -> Option<&str> {
        self.userinfo
            .as_deref()
            .map(|u| u.split_once(':').map_or(u, |(user, _)| user))
    }

    /// The single-host URL sqlx gets for `server`: the same user, password,
    /// database and pass-through parameters. It holds the password: never
    /// log it.
    pub(crate) fn server_url(&self, server: &HostPort) -> String {
        self.build(&server.to_string())
    }

    /// The URL sqlx gets for a primary named by `host=`: everything but
    /// Vega's parameters.
    pub(crate) fn query_host_url(&self) -> String {
        self.build("")
    }

    fn build(&self, host: &str) -> String {
        let mut url = format!("{}://", self.scheme);
        if let Some(userinfo) = &self.userinfo {
            url.push_str(userinfo);
            url.push('@');
        }
        url.push_str(host);
        url.push_str(&self.path);
        if !self.passthrough.is_empty() {
            url.push('?');
            url.push_str(&self.passthrough.join("&"));
        }
        url
    }
}

/// `h1:p1,h2,[::1]:p3` → hosts with ports (5432 when missing).
fn parse_host_list(list: &str, parameter: &str) -> Result<Vec<HostPort>> {
    if list.is_empty() {
        return Err(invalid(parameter, "the host list is empty"));
    }
    list.split(',')
        .map(|item| parse_host(item, list, parameter))
        .collect()
}

fn parse_host(item: &str, list: &str, parameter: &str) -> Result<HostPort> {
    let (host, port) = if let Some(bracketed) = item.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid(parameter, format!("'{item}' opens '[' without closing it")))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(invalid(
                        parameter,
                        format!("'{item}': expected ':port' after ']'"),
                    ))
                }
            },
        }
    } else {
        match item.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(
            parameter,
            format!("empty host in the host list '{list}'"),
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                let name = if parameter == "host" {
                    "port"
                } else {
                    parameter
                };
                return Err(invalid(
                    name,
                    format!("'{text}' (host '{host}') is not a port number from 1 to 65535"),
                ));
            }
        },
    };
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// `500` (milliseconds), `500ms`, `5s` or `2m`.
pub(crate) fn parse_duration(text: &str, parameter: &str) -> Result<Duration> {
    let bad = || {
        invalid(
            parameter,
            format!(
                "'{text}' is not a duration: give milliseconds (500) or a whole number \
                 with ms, s or m (500ms, 5s, 2m)"
            ),
        )
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// Decodes `%XX` escapes (and `+` as a space, as in a query string).
fn percent_decode(text: &str, parameter: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(parameter, format!("bad percent-escape in '{text}'")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid(parameter, format!("'{text}' is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.to_string(),
            port,
        }
    }

    #[track_caller]
    fn assert_invalid(url: &str, parameter: &str, needle: &str) {
        match PostgresUrl::parse(url) {
            Err(CatalogError::InvalidUrl {
                parameter: p,
                message,
            }) => {
                assert_eq!(p, parameter, "parameter for {url} ({message})");
                assert!(
                    message.contains(needle),
                    "message '{message}' should contain '{needle}'"
                );
                let shown = CatalogError::InvalidUrl {
                    parameter: p,
                    message,
                }
                .to_string();
                assert!(shown.contains(parameter), "{shown}");
            }
            other => panic!("expected InvalidUrl({parameter}) for {url}, got {other:?}"),
        }
    }

    #[test]
    fn multi_host_urls_list_hosts_in_order_with_default_ports() {
        let url = PostgresUrl::parse(
            "postgres://vega:secret@h1:6001,h2:6002,h3/catalog?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            url.primary_hosts(),
            &PrimaryHosts::List(vec![hp("h1", 6001), hp("h2", 6002), hp("h3", 5432)])
        );
        assert_eq!(url.replicas(), &[]);
        assert_eq!(url.max_replica_lag(), DEFAULT_MAX_REPLICA_LAG);
        assert_eq!(url.failover_timeout(), DEFAULT_FAILOVER_TIMEOUT);
        assert_eq!(
            url.server_url(&hp("h3", 5432)),
            "postgres://vega:secret@h3:5432/catalog"
        );
        assert_eq!(url.user(), Some("vega"));
    }

    #[test]
    fn a_single_host_url_is_one_host() {
        let url = PostgresUrl::parse("postgresql://u@db.example.com/cat").unwrap();
        assert_eq!(
            url.primary_hosts(),
            &PrimaryHosts::List(vec![hp("db.example.com", 5432)])
        );
        assert_eq!(
            url.server_url(&hp("db.example.com", 5432)),
            "postgresql://u@db.example.com:5432/cat"
        );
        let bare = PostgresUrl::parse("postgres://h:7000").unwrap();
        assert_eq!(bare.server_url(&hp("h", 7000)), "postgres://h:7000");
        assert_eq!(bare.user(), None);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let url = PostgresUrl::parse("postgres://u@[::1]:6000,[fe80::2]/db").unwrap();
        assert_eq!(
            url.primary_hosts(),
            &PrimaryHosts::List(vec![hp("::1", 6000), hp("fe80::2", 5432)])
        );
        assert_eq!(
            url.server_url(&hp("::1", 6000)),
            "postgres://u@[::1]:6000/db"
        );
    }

    #[test]
    fn replicas_and_lag_are_read_and_stripped_other_params_pass_through() {
        let url = PostgresUrl::parse(
            "postgres://u:p@h1:1,h2:2/db?sslmode=disable&replicas=r1:11,r2&max_replica_lag=750ms\
             &application_name=vega&failover_timeout=2m&target_session_attrs=primary",
        )
        .unwrap();
        assert_eq!(url.replicas(), &[hp("r1", 11), hp("r2", 5432)]);
        assert_eq!(url.max_replica_lag(), Duration::from_millis(750));
        assert_eq!(url.failover_timeout(), Duration::from_secs(120));
        assert_eq!(
            url.server_url(&hp("r1", 11)),
            "postgres://u:p@r1:11/db?sslmode=disable&application_name=vega"
        );
    }

    #[test]
    fn target_session_attrs_choose_the_primary_check() {
        for (text, attrs) in [
            ("", TargetSessionAttrs::ReadWrite),
            (
                "?target_session_attrs=read-write",
                TargetSessionAttrs::ReadWrite,
            ),
            ("?target_session_attrs=any", TargetSessionAttrs::ReadWrite),
            ("?target_session_attrs=primary", TargetSessionAttrs::Primary),
        ] {
            let url = PostgresUrl::parse(&format!("postgres://h/db{text}")).unwrap();
            assert_eq!(url.target_session_attrs(), attrs, "{text}");
            assert_eq!(url.server_url(&hp("h", 1)), "postgres://h:1/db");
        }
    }

    #[test]
    fn lag_takes_milliseconds_or_a_unit() {
        for (text, ms) in [("0", 0), ("250", 250), ("5s", 5_000), ("2m", 120_000)] {
            let url =
                PostgresUrl::parse(&format!("postgres://h/db?max_replica_lag={text}")).unwrap();
            assert_eq!(url.max_replica_lag(), Duration::from_millis(ms), "{text}");
        }
    }

    #[test]
    fn percent_encoded_replica_lists_are_decoded() {
        let url = PostgresUrl::parse("postgres://h/db?replicas=r1%3A9%2Cr2").unwrap();
        assert_eq!(url.replicas(), &[hp("r1", 9), hp("r2", 5432)]);
    }

    #[test]
    fn a_host_parameter_alone_names_the_one_server() {
        let url = PostgresUrl::parse("postgres://u@/db?host=/var/run/postgresql&sslmode=disable")
            .unwrap();
        assert_eq!(
            url.primary_hosts(),
            &PrimaryHosts::FromQuery("/var/run/postgresql".into())
        );
        assert_eq!(
            url.query_host_url(),
            "postgres://u@/db?host=/var/run/postgresql&sslmode=disable"
        );
    }

    #[test]
    fn bad_urls_name_the_parameter() {
        assert_invalid("postgres://u@/db", "host", "no host given");
        assert_invalid("postgres://u@h1,,h2/db", "host", "empty host");
        assert_invalid("postgres://u@h1,/db", "host", "empty host");
        assert_invalid("postgres://u@:5432/db", "host", "empty host");
        assert_invalid("postgres://u@h1:abc/db", "port", "'abc'");
        assert_invalid("postgres://u@h1:70000/db", "port", "'70000'");
        assert_invalid("postgres://u@h1:0/db", "port", "'0'");
        assert_invalid("postgres://u@[::1/db", "host", "without closing");
        assert_invalid("postgres://h/db?replicas=", "replicas", "empty");
        assert_invalid("postgres://h/db?replicas=r1,", "replicas", "empty host");
        assert_invalid("postgres://h/db?replicas=r1:x", "replicas", "'x'");
        assert_invalid(
            "postgres://h/db?max_replica_lag=soon",
            "max_replica_lag",
            "'soon'",
        );
        assert_invalid(
            "postgres://h/db?max_replica_lag=5h",
            "max_replica_lag",
            "'5h'",
        );
        assert_invalid(
            "postgres://h/db?max_replica_lag=-1s",
            "max_replica_lag",
            "'-1s'",
        );
        assert_invalid("postgres://h/db?max_replica_lag=", "max_replica_lag", "''");
        assert_invalid(
            "postgres://h/db?max_replica_lag=1s&max_replica_lag=2s",
            "max_replica_lag",
            "more than once",
        );
        assert_invalid(
            "postgres://h/db?failover_timeout=0",
            "failover_timeout",
            "zero",
        );
        assert_invalid(
            "postgres://h/db?target_session_attrs=standby",
            "target_session_attrs",
            "'standby'",
        );
        assert_invalid("postgres://h1,h2/db?port=5", "port", "host list");
        assert_invalid("postgres://h1/db?host=h9", "host", "host list");
        assert_invalid("postgres:///db?host=/tmp&replicas=r", "host", "replicas=");
        assert_invalid("mysql://h/db", "scheme", "'mysql'");
        assert_invalid("postgres:h/db", "scheme", "postgres://");
        assert_invalid("postgres://u:p#w@h/db", "URL", "%23");
    }

    #[test]
    fn debug_hides_the_password() {
        let url = PostgresUrl::parse("postgres://vega:hunter2@h/db").unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("vega"), "{shown}");
    }
}

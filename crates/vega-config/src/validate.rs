//! Rules that a well-typed configuration must also follow: ranges, rules
//! between keys, absolute paths, filter syntax. Every broken rule is
//! collected; none stops the others from being checked.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

use crate::config::{
    Config, MAX_INGEST_WAL_FSYNC_INTERVAL, MAX_NODE_NAME_LEN, MIN_BOOTSTRAP_ADMIN_KEY_LEN,
    QUERY_MAX_CONCURRENCY_RANGE, QUERY_POOL_SIZE_RANGE, QUERY_THREADS_RANGE,
    SYNC_MAX_ATTEMPTS_RANGE, SYNC_MAX_CONCURRENT_JOBS_RANGE,
};
use crate::error::KeyProblem;
use crate::keypath::{dotted, render, Key, KeyPath, PathBuild};
use crate::net::parse_http_url;
use crate::secret::{Secret, REDACTED};
use crate::trino::Engine;

/// Levels accepted in `log.level`, as the `tracing` crate names them.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A broken rule found by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The key the problem is reported at.
    pub path: KeyPath,
    /// Other keys the rule involves: if `path` was not set explicitly, the
    /// first of these that was is named as the source.
    pub related: Vec<KeyPath>,
    /// What is wrong.
    pub message: String,
}

/// The broken rules found so far. Section modules add theirs with key
/// paths built below their section's path.
#[derive(Default)]
pub(crate) struct Findings(pub(crate) Vec<Finding>);

impl Findings {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.at(dotted(path), message);
    }

    fn add_related(&mut self, path: &str, related: &str, message: impl Into<String>) {
        self.at_related(dotted(path), dotted(related), message);
    }

    /// A broken rule at `path`.
    pub(crate) fn at(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(Finding {
            path,
            related: Vec::new(),
            message: message.into(),
        });
    }

    /// A broken rule at `path` that also involves `related`.
    pub(crate) fn at_related(
        &mut self,
        path: KeyPath,
        related: KeyPath,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            path,
            related: vec![related],
            message: message.into(),
        });
    }

    fn in_range<T: PartialOrd + Display>(
        &mut self,
        path: &str,
        value: T,
        range: RangeInclusive<T>,
    ) {
        self.in_range_at(dotted(path), value, range);
    }

    /// `value` must lie in `range`.
    pub(crate) fn in_range_at<T: PartialOrd + Display>(
        &mut self,
        path: KeyPath,
        value: T,
        range: RangeInclusive<T>,
    ) {
        if !range.contains(&value) {
            self.at(
                path,
                format!(
                    "must be between {} and {}, is {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    fn at_least_one(&mut self, path: &str, value: u64) {
        self.at_least_one_at(dotted(path), value);
    }

    /// `value` must be at least 1.
    pub(crate) fn at_least_one_at(&mut self, path: KeyPath, value: u64) {
        if value == 0 {
            self.at(path, "must be at least 1, is 0");
        }
    }

    fn not_zero(&mut self, path: &str, is_zero: bool, what: &str) {
        self.not_zero_at(dotted(path), is_zero, what);
    }

    /// A duration or size that must not be zero; `what` says why.
    pub(crate) fn not_zero_at(&mut self, path: KeyPath, is_zero: bool, what: &str) {
        if is_zero {
            self.at(path, format!("must be greater than zero ({what})"));
        }
    }

    /// Text that must hold something other than blanks.
    pub(crate) fn not_blank_at(&mut self, path: KeyPath, text: &str) {
        if text.trim().is_empty() {
            self.at(path, "must not be empty");
        }
    }

    /// A secret that must be set to a real value: not empty, not the
    /// `***` that printed configuration shows instead of secrets.
    pub(crate) fn real_secret_at(&mut self, path: KeyPath, secret: &Secret) {
        let value = secret.expose();
        if value.trim().is_empty() {
            self.at(path, "must not be empty");
        } else if value == REDACTED {
            self.at(
                path,
                "is the redacted placeholder \"***\" from printed configuration; set the real value",
            );
        }
    }

    /// Each of `urls` (the list at `at`) must be an http(s) URL, each
    /// listed once.
    pub(crate) fn http_urls_at(&mut self, at: &[Key], urls: &[String]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, url) in urls.iter().enumerate() {
            match parse_http_url(url) {
                Ok(parsed) => {
                    let key = format!(
                        "{}://{}:{}{}",
                        if parsed.https { "https" } else { "http" },
                        parsed.host.to_string().to_ascii_lowercase(),
                        parsed.port,
                        parsed.path.trim_end_matches('/')
                    );
                    if let Some(first) = seen.get(&key) {
                        self.at(
                            at.index(index),
                            format!("{url} is already [{first}]; list each one once"),
                        );
                    } else {
                        seen.insert(key, index);
                    }
                }
                Err(message) => self.at(at.index(index), message),
            }
        }
    }

    /// The findings as problems with rendered paths, for a block checked
    /// on its own.
    pub(crate) fn into_key_problems(self) -> Vec<KeyProblem> {
        self.0
            .into_iter()
            .map(|f| KeyProblem::new(render(&f.path), f.message))
            .collect()
    }
}

/// Checks every rule and returns every broken one, in a fixed order.
pub(crate) fn validate(config: &Config) -> Vec<Finding> {
    let mut f = Findings::default();

    if config
        .storage
        .shared_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        f.add(
            "storage.shared_dir",
            "must not be empty (leave it unset for one node)",
        );
    }
    if let Some(o) = &config.storage.object_store {
        if let Err(message) = o.bucket_and_prefix() {
            f.add("storage.object_store.url", message);
        }
        if o.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://") && !o.allow_http)
        {
            f.add(
                "storage.object_store.endpoint",
                "is plain http: set storage.object_store.allow_http: true for a local server",
            );
        }
    }
    if config.data_dir.as_os_str().is_empty() {
        f.add("data_dir", "must not be empty");
    }
    if config
        .backup
        .dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        f.add(
            "backup.dir",
            "must not be empty (leave it unset for <data_dir>/backups)",
        );
    }
    let mut names = std::collections::HashSet::new();
    for (i, schedule) in config.backup.schedules.iter().enumerate() {
        let at = |key: &str| format!("backup.schedules[{i}].{key}");
        if schedule.name.trim().is_empty() {
            f.add(&at("name"), "must not be empty");
        } else if !names.insert(schedule.name.as_str()) {
            f.add(
                &at("name"),
                format!("'{}' names two schedules", schedule.name),
            );
        }
        if !matches!(schedule.scope.as_str(), "full" | "catalog") {
            f.add(
                &at("scope"),
                format!("must be full or catalog, not '{}'", schedule.scope),
            );
        }
        if schedule.schedule.trim().is_empty() {
            f.add(&at("schedule"), "must not be empty");
        }
        if schedule.keep_last == Some(0) {
            f.add(
                &at("keep_last"),
                "must be at least 1 (the newest backup is always kept)",
            );
        }
        if schedule.max_age.is_some_and(|a| a.is_zero()) {
            f.add(&at("max_age"), "must be greater than zero");
        }
    }
    if let Some(o) = &config.backup.object_store {
        if let Err(message) = o.bucket_and_prefix() {
            f.add("backup.object_store.url", message);
        }
        if o.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://") && !o.allow_http)
        {
            f.add(
                "backup.object_store.endpoint",
                "is plain http: set backup.object_store.allow_http: true for a local server",
            );
        }
    }

    if let Some(name) = &config.node.name {
        if name.trim().is_empty() {
            f.add(
                "node.name",
                "must not be empty; leave it unset to use \"vega\"",
            );
        } else if name.chars().any(char::is_control) {
            f.add("node.name", "must not contain control characters");
        } else if name.chars().count() > MAX_NODE_NAME_LEN {
            f.add(
                "node.name",
                format!("must be at most {MAX_NODE_NAME_LEN} characters long"),
            );
        }
    }

    f.not_zero(
        "api.max_body_bytes",
        config.api.max_body_bytes.is_zero(),
        "a zero limit would refuse every request with a body",
    );
    f.not_zero(
        "api.request_timeout",
        config.api.request_timeout.is_zero(),
        "a zero timeout would fail every request",
    );
    if ports_clash(config.api.listen, config.ops.listen) {
        f.add_related(
            "ops.listen",
            "api.listen",
            format!(
                "{} clashes with api.listen ({}); the two servers need different ports",
                config.ops.listen, config.api.listen
            ),
        );
    }

    let c = &config.cluster;
    f.not_zero(
        "cluster.heartbeat_interval",
        c.heartbeat_interval.is_zero(),
        "the node would beat without pause",
    );
    if c.lease_ttl <= c.heartbeat_interval {
        f.add_related(
            "cluster.lease_ttl",
            "cluster.heartbeat_interval",
            format!(
                "{} must be longer than cluster.heartbeat_interval ({}), or leases expire between renewals",
                c.lease_ttl, c.heartbeat_interval
            ),
        );
    }
    if let Some(url) = &config.catalog.url {
        let url = url.expose();
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if !matches!(scheme, "postgres" | "postgresql") {
            f.add(
                "catalog.url",
                "must be a PostgreSQL URL, postgres://user:password@host:port/database \
                 (leave it unset for the embedded SQLite catalog in data_dir)",
            );
        }
    }
    if let Some(key) = &config.auth.bootstrap_admin_key {
        let key = key.expose();
        if key == REDACTED {
            f.add(
                "auth.bootstrap_admin_key",
                "is the redacted placeholder \"***\" from printed configuration; set the real key",
            );
        } else if key.chars().count() < MIN_BOOTSTRAP_ADMIN_KEY_LEN {
            f.add(
                "auth.bootstrap_admin_key",
                format!(
                    "must be at least {MIN_BOOTSTRAP_ADMIN_KEY_LEN} characters long, is {}",
                    key.chars().count()
                ),
            );
        } else if key.trim() != key {
            f.add(
                "auth.bootstrap_admin_key",
                "must not start or end with whitespace",
            );
        }
    }

    let c = &config.cache;
    if c.enabled {
        f.not_zero(
            "cache.max_bytes",
            c.max_bytes.is_zero(),
            "an empty cache holds nothing; set cache.enabled: false instead",
        );
        f.not_zero(
            "cache.ttl",
            c.ttl.is_zero(),
            "answers would expire at once; set cache.enabled: false instead",
        );
        if c.max_entry_bytes > c.max_bytes {
            f.add_related(
                "cache.max_entry_bytes",
                "cache.max_bytes",
                format!(
                    "{} exceeds cache.max_bytes ({}); it must not be larger",
                    c.max_entry_bytes, c.max_bytes
                ),
            );
        }
    }

    let q = &config.query;
    f.in_range("query.pool_size", q.pool_size, QUERY_POOL_SIZE_RANGE);
    f.in_range(
        "query.max_concurrency",
        q.max_concurrency,
        QUERY_MAX_CONCURRENCY_RANGE,
    );
    f.not_zero(
        "query.default_timeout",
        q.default_timeout.is_zero(),
        "a zero timeout would fail every query",
    );
    f.not_zero(
        "query.max_timeout",
        q.max_timeout.is_zero(),
        "a zero timeout would fail every query",
    );
    if q.default_timeout > q.max_timeout {
        f.add_related(
            "query.default_timeout",
            "query.max_timeout",
            format!(
                "{} exceeds query.max_timeout ({}); it must not be longer",
                q.default_timeout, q.max_timeout
            ),
        );
    }
    f.at_least_one("query.default_max_rows", q.default_max_rows);
    f.at_least_one("query.max_rows_limit", q.max_rows_limit);
    if q.default_max_rows > q.max_rows_limit {
        f.add_related(
            "query.default_max_rows",
            "query.max_rows_limit",
            format!(
                "{} exceeds query.max_rows_limit ({}); it must not be larger",
                q.default_max_rows, q.max_rows_limit
            ),
        );
    }
    f.in_range("query.threads", q.threads, QUERY_THREADS_RANGE);
    f.not_zero(
        "query.memory_limit",
        q.memory_limit.is_zero(),
        "DuckDB cannot run without memory",
    );
    if q.engine == Engine::Trino && q.trino.is_none() {
        f.add_related(
            "query.engine",
            "query.trino",
            "is trino, but query.trino is not set: list the coordinators there \
             (query.trino.coordinators), or use engine auto or duckdb",
        );
    }
    if let Some(trino) = &q.trino {
        trino.check(&dotted("query.trino"), &mut f);
    }

    let s = &config.sync;
    f.in_range(
        "sync.max_concurrent_jobs",
        s.max_concurrent_jobs,
        SYNC_MAX_CONCURRENT_JOBS_RANGE,
    );
    f.at_least_one("sync.rows_per_segment", s.rows_per_segment);
    f.not_zero(
        "sync.job_timeout",
        s.job_timeout.is_zero(),
        "a zero timeout would fail every job",
    );
    f.in_range("sync.max_attempts", s.max_attempts, SYNC_MAX_ATTEMPTS_RANGE);
    f.not_zero(
        "sync.scheduler_tick",
        s.scheduler_tick.is_zero(),
        "the scheduler would spin",
    );
    f.not_zero(
        "sync.retention_interval",
        s.retention_interval.is_zero(),
        "retention would run without pause",
    );
    if s.retry_initial_backoff > s.retry_max_backoff {
        f.add_related(
            "sync.retry_initial_backoff",
            "sync.retry_max_backoff",
            format!(
                "must not exceed sync.retry_max_backoff ({})",
                s.retry_max_backoff
            ),
        );
    }

    let i = &config.ingest;
    if i.wal_fsync_interval > MAX_INGEST_WAL_FSYNC_INTERVAL {
        f.add(
            "ingest.wal_fsync_interval",
            format!(
                "{} is too long: writes wait for it before they are acknowledged (at most {})",
                i.wal_fsync_interval, MAX_INGEST_WAL_FSYNC_INTERVAL
            ),
        );
    }
    f.at_least_one("ingest.buffer_max_rows", i.buffer_max_rows);
    f.not_zero(
        "ingest.buffer_max_bytes",
        i.buffer_max_bytes.is_zero(),
        "no write could ever be buffered",
    );
    f.at_least_one("ingest.flush_rows", i.flush_rows);
    f.not_zero(
        "ingest.flush_bytes",
        i.flush_bytes.is_zero(),
        "every write would be flushed on its own",
    );
    f.not_zero(
        "ingest.flush_age",
        i.flush_age.is_zero(),
        "every write would be flushed on its own",
    );
    f.not_zero(
        "ingest.max_body_bytes",
        i.max_body_bytes.is_zero(),
        "no write could be accepted",
    );
    if i.flush_rows > i.buffer_max_rows {
        f.add_related(
            "ingest.flush_rows",
            "ingest.buffer_max_rows",
            format!(
                "{} exceeds ingest.buffer_max_rows ({}): the buffer would fill before a flush",
                i.flush_rows, i.buffer_max_rows
            ),
        );
    }

    for (index, root) in config.connectors.file.allowed_roots.iter().enumerate() {
        let mut path = dotted("connectors.file.allowed_roots");
        path.push(Key::Index(index));
        let message = if root.as_os_str().is_empty() {
            Some("must not be empty".to_string())
        } else if !root.is_absolute() {
            Some(format!(
                "must be an absolute path, is \"{}\" (relative paths are resolved \
                 against the configuration file's directory or the working directory, \
                 which is unknown here)",
                root.display()
            ))
        } else {
            None
        };
        if let Some(message) = message {
            f.0.push(Finding {
                path,
                related: Vec::new(),
                message,
            });
        }
    }

    if let Err(message) = check_log_filter(&config.log.level) {
        f.add("log.level", message);
    }

    if let Some(balancer) = &config.load_balancer {
        balancer.check(&dotted("load_balancer"), &mut f);
    }
    if let Some(discovery) = &config.service_discovery {
        discovery.check(&dotted("service_discovery"), &mut f);
    }
    config
        .circuit_breaker
        .check(&dotted("circuit_breaker"), &mut f);
    config.resilience.check(&dotted("resilience"), &mut f);

    f.0
}

/// Whether two listeners would try to bind the same port.
fn ports_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Checks a `tracing` filter such as `info,vega_query=debug`.
///
/// Stricter than `tracing` in one way: a directive without `=` must be a
/// level. `tracing` would read a bare word such as `inf` as a target name and
/// silently enable everything for it, which is nearly always a typo; write
/// `target=trace` for that meaning.
fn check_log_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!(
            "must not be empty; use a level ({}) or directives like \"info,vega_query=debug\"",
            LOG_LEVELS.join(", ")
        ));
    }
    for directive in filter.split(',') {
        let directive = directive.trim();
        if directive.is_empty() {
            return Err(format!("\"{filter}\" has an empty directive (two commas)"));
        }
        let (target, level) = match split_directive(directive) {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        if !is_level(level) {
            let hint = if target.is_none() {
                " or target=level"
            } else {
                ""
            };
            return Err(format!(
                "unknown level \"{level}\" in \"{directive}\" (use {}{hint})",
                LOG_LEVELS.join(", ")
            ));
        }
        if let Some(target) = target {
            check_target(directive, target)?;
        }
    }
    Ok(())
}

/// Splits `target[span{field=value}]=level` at the `=` that is outside
/// brackets and braces; `None` when there is none.
fn split_directive(directive: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut split = None;
    for (i, c) in directive.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            '=' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| (&directive[..i], &directive[i + 1..]))
}

fn check_target(directive: &str, target: &str) -> Result<(), String> {
    if target.trim().is_empty() {
        return Err(format!("\"{directive}\" has no target before \"=\""));
    }
    if target.chars().any(char::is_whitespace) {
        return Err(format!("\"{directive}\": a target must not contain spaces"));
    }
    let mut depth = 0i32;
    for c in target.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 {
        return Err(format!("\"{directive}\": unbalanced brackets"));
    }
    Ok(())
}

fn is_level(level: &str) -> bool {
    let level = level.trim();
    LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
        || matches!(level, "0" | "1" | "2" | "3" | "4" | "5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_breaks_no_rule() {
        assert_eq!(validate(&Config::default()), Vec::new());
    }

    #[test]
    fn log_filter_accepts_levels_and_target_directives() {
        for ok in [
            "info",
            "WARN",
            "info,vega_query=debug",
            "vega_server::http=trace, warn",
            "vega[request{id=1}]=debug",
            "off",
        ] {
            assert_eq!(check_log_filter(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn log_filter_rejects_misspelt_level() {
        let err = check_log_filter("inf").unwrap_err();
        assert!(err.contains("unknown level \"inf\""), "{err}");
    }

    #[test]
    fn log_filter_rejects_misspelt_target_level() {
        let err = check_log_filter("info,vega_query=loud").unwrap_err();
        assert!(err.contains("unknown level \"loud\""), "{err}");
    }

    #[test]
    fn log_filter_rejects_empty_and_empty_directive() {
        assert!(check_log_filter(" ").is_err());
        assert!(check_log_filter("info,,debug").is_err());
        assert!(check_log_filter("=debug").is_err());
    }

    #[test]
    fn ports_clash_on_same_port_and_wildcard() {
        let a: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let b: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let d: SocketAddr = "10.0.0.1:8000".parse().unwrap();
        assert!(ports_clash(a, a));
        assert!(ports_clash(a, b));
        assert!(!ports_clash(a, c));
        assert!(!ports_clash(a, d));
    }

    #[test]
    fn port_zero_never_clashes() {
        let a: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(!ports_clash(a, a));
    }
}

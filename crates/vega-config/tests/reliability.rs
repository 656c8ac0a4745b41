//! The reliability keys of the configuration — `load_balancer`,
//! `service_discovery`, `circuit_breaker` (seed
//! `operations-and-reliability.md` §17.2–17.4), `query.engine` and
//! `query.trino`, `resilience` — loaded from real files, as parts of a
//! whole configuration.

use std::path::Path;

use tempfile::TempDir;
use vega_config::breaker::{
    DEFAULT_FAILURE_RATE_THRESHOLD, DEFAULT_MINIMUM_CALLS, DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN,
    DEFAULT_SLIDING_WINDOW_SIZE, DEFAULT_SLOW_CALL_DURATION, DEFAULT_SLOW_CALL_RATE_THRESHOLD,
    DEFAULT_WAIT_DURATION_IN_OPEN,
};
use vega_config::{
    load, Algorithm, Backend, ByteSize, Config, ConfigErrors, DiscoveryProvider, Engine, Fallback,
    HumanDuration, Percent, ProblemSource,
};

/// A working directory that no test writes to; only joined, never read.
const WORKDIR: &str = "/srv/vega";

/// Seed §17.2, verbatim.
const SEED_LOAD_BALANCER: &str = include_str!("seed/load_balancer.yaml");

/// Seed §17.3, verbatim.
const SEED_SERVICE_DISCOVERY: &str = include_str!("seed/service_discovery.yaml");

/// Seed §17.4, verbatim.
const SEED_CIRCUIT_BREAKER: &str = include_str!("seed/circuit_breaker.yaml");

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads `text` as a config file with the given environment.
fn load_text(text: &str, vars: &[(&str, &str)]) -> (TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vega.yaml");
    std::fs::write(&path, text).expect("write config file");
    let result = load(Some(&path), env(vars), Path::new(WORKDIR));
    (dir, result)
}

fn loaded(text: &str) -> Config {
    match load_text(text, &[]).1 {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn errors(text: &str) -> ConfigErrors {
    match load_text(text, &[]).1 {
        Ok(config) => panic!("expected problems, loaded {config:?}"),
        Err(errors) => errors,
    }
}

fn paths(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|p| p.path.as_str()).collect()
}

/// The message of the one problem at `path`, after asserting that it is
/// the only problem.
fn only_problem(text: &str, path: &str) -> String {
    let errors = errors(text);
    assert_eq!(paths(&errors), [path], "{errors}");
    errors.0[0].message.clone()
}

// ---------------------------------------------------------------------------
// The seed's blocks

#[test]
fn the_three_seed_blocks_load_as_written_into_one_configuration() {
    let text = format!("{SEED_LOAD_BALANCER}{SEED_SERVICE_DISCOVERY}{SEED_CIRCUIT_BREAKER}");
    let config = loaded(&text);

    let lb = config.load_balancer.as_ref().expect("load_balancer is set");
    assert_eq!(lb.algorithm, Algorithm::LeastConnections);
    assert_eq!(lb.health_check.path, "/health");
    assert_eq!(lb.health_check.interval, HumanDuration::from_secs(5));
    assert_eq!(lb.health_check.timeout, HumanDuration::from_secs(2));
    assert_eq!(
        (
            lb.health_check.healthy_threshold,
            lb.health_check.unhealthy_threshold
        ),
        (2, 3)
    );
    assert!(!lb.sticky_session.enabled);
    assert_eq!(
        lb.backends,
        ["gateway-1:8080", "gateway-2:8080", "gateway-3:8080"].map(Backend::new)
    );

    let sd = config
        .service_discovery
        .as_ref()
        .expect("service_discovery");
    assert_eq!(sd.provider, DiscoveryProvider::Consul);
    let registration = sd.registration.as_ref().expect("registration");
    assert_eq!(registration.service_name, "vega-gateway");
    let check = registration.health_check.as_ref().expect("health_check");
    assert_eq!(check.http, "http://localhost:8080/health");
    assert_eq!(check.interval, HumanDuration::from_secs(10));
    assert_eq!(check.timeout, None);
    assert_eq!(registration.tags, ["api", "v2"]);
    let services: Vec<(&str, Algorithm)> = sd
        .discovery
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.load_balance))
        .collect();
    assert_eq!(
        services,
        [
            ("vega-worker", Algorithm::RoundRobin),
            ("embedding-service", Algorithm::LeastConnections)
        ]
    );
    assert_eq!(sd.consul.address, "http://127.0.0.1:8500");

    let cb = &config.circuit_breaker;
    assert_eq!(cb.default, vega_config::BreakerSettings::default());
    let embedding = cb.effective("embedding_service");
    assert_eq!(embedding.fallback, Fallback::SkipEmbedding);
    assert_eq!(
        embedding.settings.failure_rate_threshold,
        Percent::new(30.0)
    );
    assert_eq!(embedding.settings.sliding_window_size, 100);
    let trino = cb.effective("trino");
    assert_eq!(trino.fallback, Fallback::RouteToDuckdb);
    assert_eq!(trino.settings.failure_rate_threshold, Percent::new(40.0));
    assert_eq!(
        trino.settings.wait_duration_in_open,
        HumanDuration::from_secs(30)
    );
}

#[test]
fn each_seed_block_also_loads_on_its_own() {
    for block in [
        SEED_LOAD_BALANCER,
        SEED_SERVICE_DISCOVERY,
        SEED_CIRCUIT_BREAKER,
    ] {
        loaded(block);
    }
}

#[test]
fn the_seed_blocks_print_and_load_back_unchanged() {
    let text = format!("{SEED_LOAD_BALANCER}{SEED_SERVICE_DISCOVERY}{SEED_CIRCUIT_BREAKER}query:\n  engine: auto\n  trino:\n    coordinators: [http://trino-1:8080]\n    session_properties: {{query_max_run_time: 10m, hive.parquet_use_column_names: true}}\n    size_threshold: 1GiB\n");
    let first = loaded(&text);
    let printed = first.to_yaml();
    assert_eq!(loaded(&printed), first, "{printed}");
}

// ---------------------------------------------------------------------------
// Defaults

#[test]
fn without_the_keys_the_defaults_are_the_documented_ones() {
    let config = loaded("");
    assert_eq!(config.load_balancer, None);
    assert_eq!(config.service_discovery, None);
    assert_eq!(config.query.engine, Engine::Auto);
    assert_eq!(config.query.trino, None);

    let d = &config.circuit_breaker.default;
    assert_eq!(d.failure_rate_threshold, Percent::new(50.0));
    assert_eq!(d.slow_call_rate_threshold, Percent::new(80.0));
    assert_eq!(d.slow_call_duration, HumanDuration::from_secs(5));
    assert_eq!(d.minimum_calls, 10);
    assert_eq!(d.sliding_window_size, 100);
    assert_eq!(d.wait_duration_in_open, HumanDuration::from_secs(30));
    assert_eq!(d.permitted_calls_in_half_open, 5);
    assert_eq!(
        (
            DEFAULT_FAILURE_RATE_THRESHOLD,
            DEFAULT_SLOW_CALL_RATE_THRESHOLD,
            DEFAULT_SLOW_CALL_DURATION,
            DEFAULT_MINIMUM_CALLS,
            DEFAULT_SLIDING_WINDOW_SIZE,
            DEFAULT_WAIT_DURATION_IN_OPEN,
            DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN,
        ),
        (
            d.failure_rate_threshold,
            d.slow_call_rate_threshold,
            d.slow_call_duration,
            d.minimum_calls,
            d.sliding_window_size,
            d.wait_duration_in_open,
            d.permitted_calls_in_half_open,
        )
    );
    assert!(config.circuit_breaker.services.is_empty());
    assert_eq!(
        config.circuit_breaker.effective("trino").fallback,
        Fallback::FailFast
    );

    let r = &config.resilience.retry;
    assert_eq!(r.max_attempts, 3);
    assert_eq!(r.base_delay, HumanDuration::from_millis(100));
    assert_eq!(r.max_delay, HumanDuration::from_secs(2));
    assert_eq!(r.budget_percent, Percent::new(20.0));
    assert_eq!(r.min_retries_per_second, 10);
    let b = &config.resilience.bulkhead;
    assert_eq!((b.per_connection, b.per_pool), (4, 25));
    assert_eq!(b.max_wait, HumanDuration::ZERO);
}

#[test]
fn a_trino_block_with_only_coordinators_takes_the_documented_defaults() {
    let config =
        loaded("query:\n  trino:\n    coordinators: [http://trino-1:8080, https://trino-2]\n");
    let t = config.query.trino.expect("trino");
    assert_eq!(t.load_balance, Algorithm::LeastConnections);
    assert_eq!(t.health_check.path, "/v1/info");
    assert_eq!(t.health_check.interval, HumanDuration::from_secs(5));
    assert_eq!(t.health_check.timeout, HumanDuration::from_secs(2));
    assert_eq!(
        (
            t.health_check.healthy_threshold,
            t.health_check.unhealthy_threshold
        ),
        (2, 3)
    );
    assert_eq!((t.user.as_str(), t.source.as_str()), ("vega", "vega"));
    assert_eq!((t.catalog, t.schema), (None, None));
    assert!(t.session_properties.is_empty());
    assert!(t.auth.is_none());
    assert_eq!(t.connect_timeout, HumanDuration::from_secs(5));
    assert_eq!(t.request_timeout, HumanDuration::from_secs(30));
    assert_eq!(t.query_timeout, HumanDuration::from_mins(10));
    assert_eq!(t.size_threshold, ByteSize::gib(10));
}

#[test]
fn provider_settings_have_the_documented_defaults() {
    let config = loaded(
        "service_discovery:\n  provider: etcd\n  etcd:\n    endpoints: [http://10.0.0.5:2379]\n",
    );
    let sd = config.service_discovery.expect("service_discovery");
    assert_eq!(sd.etcd.prefix, "/vega/services/");
    assert_eq!(sd.etcd.lease_ttl, HumanDuration::from_secs(10));
    assert_eq!(sd.consul.address, "http://127.0.0.1:8500");
    assert_eq!(sd.registration, None);
    let config = loaded(
        "service_discovery:\n  static:\n    services: {vega-worker: ['10.0.0.5:50013']}\n  discovery:\n    services: [{name: vega-worker}]\n",
    );
    let sd = config.service_discovery.expect("service_discovery");
    assert_eq!(sd.provider, DiscoveryProvider::Static);
    assert_eq!(
        sd.discovery.services[0].load_balance,
        Algorithm::LeastConnections
    );
}

#[test]
fn empty_sub_sections_inside_optional_sections_mean_their_defaults() {
    let config = loaded(
        "load_balancer:\n  health_check:\n  sticky_session:\n  backends: [{address: 'a:1'}]\n\
         query:\n  trino:\n    health_check:\n    auth:\n    coordinators: [http://t:8080]\n",
    );
    let lb = config.load_balancer.expect("load_balancer");
    assert_eq!(lb.health_check.path, "/health/ready");
    let t = config.query.trino.expect("trino");
    assert_eq!(t.health_check.path, "/v1/info");
    assert!(t.auth.is_none());
}

// ---------------------------------------------------------------------------
// circuit_breaker

#[test]
fn rates_accept_integers_and_decimals() {
    let config = loaded(
        "circuit_breaker:\n  default: {failure_rate_threshold: 12.5, slow_call_rate_threshold: 100}\n",
    );
    assert_eq!(
        config.circuit_breaker.default.failure_rate_threshold,
        Percent::new(12.5)
    );
}

#[test]
fn a_zero_threshold_is_refused_with_its_key_path() {
    let message = only_problem(
        "circuit_breaker:\n  default:\n    failure_rate_threshold: 0\n",
        "circuit_breaker.default.failure_rate_threshold",
    );
    assert_eq!(
        message,
        "must be a percentage greater than 0 and at most 100, is 0"
    );
}

#[test]
fn a_threshold_above_100_is_refused_at_the_service() {
    let message = only_problem(
        "circuit_breaker:\n  services:\n    trino:\n      slow_call_rate_threshold: 101\n",
        "circuit_breaker.services.trino.slow_call_rate_threshold",
    );
    assert!(message.contains("at most 100, is 101"), "{message}");
}

#[test]
fn a_rate_written_as_text_is_refused_with_a_hint() {
    let message = only_problem(
        "circuit_breaker:\n  default:\n    failure_rate_threshold: \"50%\"\n",
        "circuit_breaker.default.failure_rate_threshold",
    );
    assert!(message.contains("without quotes or %"), "{message}");
}

#[test]
fn a_zero_window_is_refused_and_so_is_a_huge_one() {
    let message = only_problem(
        "circuit_breaker:\n  default:\n    sliding_window_size: 0\n    minimum_calls: 1\n",
        "circuit_breaker.default.sliding_window_size",
    );
    assert_eq!(message, "must be at least 1, is 0");
    let message = only_problem(
        "circuit_breaker:\n  services:\n    embedding_service: {sliding_window_size: 10001}\n",
        "circuit_breaker.services.embedding_service.sliding_window_size",
    );
    assert!(message.contains("at most 10000, is 10001"), "{message}");
}

#[test]
fn counts_and_durations_must_be_positive() {
    let errors = errors(
        "circuit_breaker:\n  default:\n    minimum_calls: 0\n    permitted_calls_in_half_open: 0\n    slow_call_duration: 0s\n    wait_duration_in_open: 0s\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "circuit_breaker.default.slow_call_duration",
            "circuit_breaker.default.minimum_calls",
            "circuit_breaker.default.wait_duration_in_open",
            "circuit_breaker.default.permitted_calls_in_half_open",
        ],
        "{errors}"
    );
}

#[test]
fn minimum_calls_beyond_the_window_is_refused_where_it_was_set() {
    let message = only_problem(
        "circuit_breaker:\n  services:\n    trino: {sliding_window_size: 5}\n",
        "circuit_breaker.services.trino.sliding_window_size",
    );
    assert_eq!(
        message,
        "5 is less than circuit_breaker.default.minimum_calls (10): the window never holds \
         that many calls, so the breaker could never open"
    );
    let message = only_problem(
        "circuit_breaker:\n  services:\n    trino: {minimum_calls: 500}\n",
        "circuit_breaker.services.trino.minimum_calls",
    );
    assert!(
        message.starts_with("500 exceeds circuit_breaker.default.sliding_window_size (100)"),
        "{message}"
    );
    only_problem(
        "circuit_breaker:\n  default: {minimum_calls: 20, sliding_window_size: 10}\n",
        "circuit_breaker.default.minimum_calls",
    );
}

#[test]
fn an_unknown_fallback_is_named_with_the_known_ones() {
    let message = only_problem(
        "circuit_breaker:\n  services:\n    embedding_service:\n      fallback: use_cache\n",
        "circuit_breaker.services.embedding_service.fallback",
    );
    assert_eq!(
        message,
        "unknown fallback \"use_cache\"; known fallbacks: route_to_duckdb (service trino only), \
         skip_embedding, fail_fast"
    );
}

#[test]
fn route_to_duckdb_is_only_for_trino() {
    let message = only_problem(
        "circuit_breaker:\n  services:\n    embedding_service:\n      fallback: route_to_duckdb\n",
        "circuit_breaker.services.embedding_service.fallback",
    );
    assert!(
        message.contains("route_to_duckdb is only for the service trino"),
        "{message}"
    );
    loaded("circuit_breaker:\n  services:\n    trino: {fallback: route_to_duckdb}\n    search: {fallback: fail_fast}\n");
}

#[test]
fn every_breaker_problem_is_reported_at_once() {
    let errors = errors(
        "circuit_breaker:\n  default:\n    failure_rate_threshold: 0\n  services:\n    a: {fallback: nope}\n    b: {fallback: route_to_duckdb, slow_call_rate_threshold: 200}\n",
    );
    let mut found = paths(&errors);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "circuit_breaker.default.failure_rate_threshold",
            "circuit_breaker.services.a.fallback",
            "circuit_breaker.services.b.fallback",
            "circuit_breaker.services.b.slow_call_rate_threshold",
        ],
        "{errors}"
    );
}

#[test]
fn unknown_breaker_keys_are_refused() {
    only_problem(
        "circuit_breaker:\n  services:\n    trino: {failure_rate: 40}\n",
        "circuit_breaker.services.trino.failure_rate",
    );
}

// ---------------------------------------------------------------------------
// load_balancer, as part of the configuration

#[test]
fn a_load_balancer_without_backends_is_refused() {
    let message = only_problem(
        "load_balancer:\n  algorithm: ip_hash\n",
        "load_balancer.backends",
    );
    assert!(message.contains("at least one backend"), "{message}");
}

#[test]
fn load_balancer_problems_keep_their_key_paths() {
    let errors = errors(
        "load_balancer:\n  health_check: {interval: 1s, timeout: 1s}\n  backends: [{address: 'a:1', weight: 0}, {address: 'b'}]\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "load_balancer.health_check.timeout",
            "load_balancer.backends[0].weight",
            "load_balancer.backends[1].address",
        ],
        "{errors}"
    );
    assert!(
        errors.0[0]
            .message
            .contains("shorter than load_balancer.health_check.interval (1s)"),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------
// service_discovery

#[test]
fn an_unknown_provider_is_refused_listing_the_known_ones() {
    let message = only_problem(
        "service_discovery:\n  provider: zookeeper\n  static: {services: {a: ['a:1']}}\n",
        "service_discovery.provider",
    );
    assert!(message.contains("unknown variant `zookeeper`"), "{message}");
    assert!(
        message.contains("`static`, `dns`, `etcd`, `consul`, `kubernetes`"),
        "{message}"
    );
}

#[test]
fn kubernetes_is_parsed_but_not_supported_by_this_build() {
    let message = only_problem(
        "service_discovery:\n  provider: kubernetes\n",
        "service_discovery.provider",
    );
    assert!(
        message.starts_with("kubernetes is not supported by this build"),
        "{message}"
    );
    assert!(message.contains("provider: dns"), "{message}");
}

#[test]
fn missing_settings_of_the_chosen_provider_are_reported() {
    let message = only_problem(
        "service_discovery:\n  provider: etcd\n",
        "service_discovery.etcd.endpoints",
    );
    assert!(message.contains("provider is etcd"), "{message}");
    only_problem(
        "service_discovery:\n  provider: static\n",
        "service_discovery.static.services",
    );
    only_problem(
        "service_discovery:\n  provider: dns\n",
        "service_discovery.dns.services",
    );
    // Consul's settings all have defaults.
    loaded("service_discovery:\n  provider: consul\n");
}

#[test]
fn a_looked_up_service_must_be_listed_by_a_static_or_dns_provider() {
    let message = only_problem(
        "service_discovery:\n  static: {services: {vega-worker: ['10.0.0.5:50013']}}\n  discovery:\n    services: [{name: vega-worker}, {name: search}]\n",
        "service_discovery.discovery.services[1].name",
    );
    assert!(
        message.contains("\"search\" is not in service_discovery.static.services"),
        "{message}"
    );
    loaded("service_discovery:\n  provider: dns\n  dns:\n    services:\n      search: _http._tcp.search.example.com\n      worker: worker.example.com:50013\n    resolver: 10.0.0.2:53\n  discovery:\n    services: [{name: search}, {name: worker, load_balance: ip_hash}]\n");
}

#[test]
fn looked_up_services_need_a_name_each_listed_once() {
    let errors = errors(
        "service_discovery:\n  provider: consul\n  discovery:\n    services:\n      - {name: a}\n      - {load_balance: round_robin}\n      - {name: ''}\n      - {name: a}\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "service_discovery.discovery.services[1]",
            "service_discovery.discovery.services[2].name",
            "service_discovery.discovery.services[3].name",
        ],
        "{errors}"
    );
    assert!(
        errors.0[0].message.contains("missing field `name`"),
        "{errors}"
    );
    assert!(
        errors.0[2].message.contains("already services[0]"),
        "{errors}"
    );
}

#[test]
fn empty_endpoint_lists_and_bad_addresses_are_refused() {
    let errors = errors(
        "service_discovery:\n  static:\n    services:\n      a: []\n      b: ['10.0.0.1', '10.0.0.2:1', '10.0.0.2:1']\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "service_discovery.static.services.a",
            "service_discovery.static.services.b[0]",
            "service_discovery.static.services.b[2]",
        ],
        "{errors}"
    );
}

#[test]
fn bad_urls_are_refused_with_their_key_paths() {
    let errors = errors(
        "service_discovery:\n  provider: etcd\n  etcd:\n    endpoints: ['10.0.0.5:2379', 'http://10.0.0.6:2379']\n    prefix: vega\n    lease_ttl: 1500ms\n  consul:\n    address: consul:8500\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "service_discovery.etcd.endpoints[0]",
            "service_discovery.etcd.prefix",
            "service_discovery.etcd.lease_ttl",
            "service_discovery.consul.address",
        ],
        "{errors}"
    );
    assert!(
        errors.0[0].message.contains("is not an http(s) URL"),
        "{errors}"
    );
    let message = only_problem(
        "service_discovery:\n  provider: consul\n  registration:\n    health_check: {http: 'localhost:8080/health'}\n",
        "service_discovery.registration.health_check.http",
    );
    assert!(message.contains("is not an http(s) URL"), "{message}");
}

#[test]
fn registration_must_suit_the_provider() {
    let message = only_problem(
        "service_discovery:\n  static: {services: {a: ['a:1']}}\n  registration: {service_name: vega}\n",
        "service_discovery.registration",
    );
    assert!(message.contains("cannot register this node"), "{message}");
    let message = only_problem(
        "service_discovery:\n  provider: consul\n  registration: {service_name: vega}\n",
        "service_discovery.registration",
    );
    assert!(message.contains("set health_check or ttl"), "{message}");
    loaded("service_discovery:\n  provider: consul\n  registration: {ttl: 15s}\n");
    let errors = errors(
        "service_discovery:\n  provider: etcd\n  etcd: {endpoints: ['http://e:2379']}\n  registration:\n    health_check: {http: 'http://n:1/health'}\n    ttl: 5s\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "service_discovery.registration.health_check",
            "service_discovery.registration.ttl",
        ],
        "{errors}"
    );
}

#[test]
fn consul_token_is_never_printed() {
    let config = loaded(
        "service_discovery:\n  provider: consul\n  consul:\n    token: 5e1f-secret-token\n    datacenter: dc1\n",
    );
    let printed = config.to_yaml();
    assert!(!printed.contains("5e1f-secret-token"), "{printed}");
    assert!(!format!("{config:?}").contains("5e1f-secret-token"));
    let message = only_problem(
        "service_discovery:\n  provider: consul\n  consul:\n    token: '***'\n",
        "service_discovery.consul.token",
    );
    assert!(message.contains("placeholder"), "{message}");
}

// ---------------------------------------------------------------------------
// query.engine and query.trino

#[test]
fn engine_trino_without_a_trino_block_is_refused() {
    let message = only_problem("query:\n  engine: trino\n", "query.engine");
    assert!(message.contains("query.trino is not set"), "{message}");
    loaded("query:\n  engine: duckdb\n");
    loaded("query:\n  engine: trino\n  trino:\n    coordinators: [http://trino:8080]\n");
}

#[test]
fn an_unknown_engine_is_refused() {
    let message = only_problem("query:\n  engine: spark\n", "query.engine");
    assert!(message.contains("`auto`, `duckdb`, `trino`"), "{message}");
}

#[test]
fn a_trino_pool_needs_coordinators_with_good_urls() {
    let message = only_problem(
        "query:\n  trino:\n    user: analyst\n",
        "query.trino.coordinators",
    );
    assert!(message.contains("at least one coordinator"), "{message}");
    let errors = errors(
        "query:\n  trino:\n    coordinators: ['trino-1:8080', 'http://trino-2:8080', 'HTTP://Trino-2:8080/']\n",
    );
    assert_eq!(
        paths(&errors),
        ["query.trino.coordinators[0]", "query.trino.coordinators[2]"],
        "{errors}"
    );
}

#[test]
fn trino_settings_are_checked_with_their_key_paths() {
    let errors = errors(
        "query:\n  trino:\n    coordinators: [http://t:8080]\n    health_check: {path: v1/info, timeout: 10s}\n    user: ''\n    schema: sales\n    session_properties: {Bad-Name: 1}\n    request_timeout: 20m\n    size_threshold: 0\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "query.trino.health_check.path",
            "query.trino.health_check.timeout",
            "query.trino.user",
            "query.trino.schema",
            "query.trino.session_properties.Bad-Name",
            "query.trino.request_timeout",
            "query.trino.size_threshold",
        ],
        "{errors}"
    );
    assert!(
        errors.0[1]
            .message
            .contains("shorter than query.trino.health_check.interval"),
        "{errors}"
    );
}

#[test]
fn trino_assets_must_be_namespace_dot_name() {
    let errors = errors(
        "query:\n  trino:\n    coordinators: [http://t:8080]\n    assets: [sales.orders, orders, a.b.c]\n",
    );
    assert_eq!(
        paths(&errors),
        ["query.trino.assets[1]", "query.trino.assets[2]"],
        "{errors}"
    );
    assert!(errors.0[0].message.contains("namespace.name"), "{errors}");
}

#[test]
fn trino_credentials_need_https_and_are_never_printed() {
    let message = only_problem(
        "query:\n  trino:\n    coordinators: [http://t:8080]\n    auth: {basic: {user: vega, password: pa55-word}}\n",
        "query.trino.auth",
    );
    assert!(
        message.contains("query.trino.coordinators[0] is http://"),
        "{message}"
    );
    let config = loaded(
        "query:\n  trino:\n    coordinators: [https://t]\n    auth: {basic: {user: vega, password: pa55-word}}\n",
    );
    let auth = &config.query.trino.as_ref().unwrap().auth;
    assert_eq!(auth.basic.as_ref().unwrap().password.expose(), "pa55-word");
    assert!(!config.to_yaml().contains("pa55-word"));
    assert!(!format!("{config:?}").contains("pa55-word"));
    let message = only_problem(
        "query:\n  trino:\n    coordinators: [https://t]\n    auth: {basic: {user: vega, password: x}, bearer: y}\n",
        "query.trino.auth",
    );
    assert_eq!(message, "set one of basic or bearer, not both");
}

// ---------------------------------------------------------------------------
// resilience

#[test]
fn retry_and_bulkhead_settings_are_checked() {
    let errors = errors(
        "resilience:\n  retry:\n    max_attempts: 0\n    base_delay: 5s\n    max_delay: 1s\n    budget_percent: 150\n  bulkhead:\n    per_connection: 0\n    per_pool: 0\n    max_wait: 2m\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "resilience.retry.max_attempts",
            "resilience.retry.base_delay",
            "resilience.retry.budget_percent",
            "resilience.bulkhead.per_connection",
            "resilience.bulkhead.per_pool",
            "resilience.bulkhead.max_wait",
        ],
        "{errors}"
    );
    let config = loaded(
        "resilience:\n  retry: {max_attempts: 1, budget_percent: 0, min_retries_per_second: 0}\n  bulkhead: {per_pool: 100, max_wait: 250ms}\n",
    );
    assert_eq!(config.resilience.retry.max_attempts, 1);
    assert_eq!(
        config.resilience.bulkhead.max_wait,
        HumanDuration::from_millis(250)
    );
}

// ---------------------------------------------------------------------------
// Environment variables below optional sections

#[test]
fn env_vars_set_keys_below_optional_sections() {
    let (_dir, result) = load_text(
        "query:\n  engine: trino\n",
        &[
            ("VEGA_QUERY__TRINO__COORDINATORS", "https://t-1,https://t-2"),
            ("VEGA_QUERY__TRINO__AUTH__BEARER", "12345"),
            ("VEGA_SERVICE_DISCOVERY__PROVIDER", "consul"),
            ("VEGA_SERVICE_DISCOVERY__CONSUL__TOKEN", "0042"),
            ("VEGA_STORAGE__OBJECT_STORE__URL", "s3://bucket/segments"),
            (
                "VEGA_CIRCUIT_BREAKER__DEFAULT__FAILURE_RATE_THRESHOLD",
                "25",
            ),
        ],
    );
    let config = result.unwrap_or_else(|errors| panic!("{errors}"));
    let trino = config.query.trino.as_ref().expect("trino");
    assert_eq!(trino.coordinators, ["https://t-1", "https://t-2"]);
    assert_eq!(trino.auth.bearer.as_ref().unwrap().expose(), "12345");
    let sd = config
        .service_discovery
        .as_ref()
        .expect("service_discovery");
    assert_eq!(sd.consul.token.as_ref().unwrap().expose(), "0042");
    assert_eq!(
        config.storage.object_store.as_ref().unwrap().url,
        "s3://bucket/segments"
    );
    assert_eq!(
        config.circuit_breaker.default.failure_rate_threshold,
        Percent::new(25.0)
    );
}

#[test]
fn a_problem_from_an_env_var_names_the_variable() {
    let (_dir, result) = load_text(
        "",
        &[("VEGA_CIRCUIT_BREAKER__DEFAULT__SLIDING_WINDOW_SIZE", "0")],
    );
    let errors = result.expect_err("window 0");
    assert_eq!(
        paths(&errors),
        ["circuit_breaker.default.sliding_window_size",],
        "{errors}"
    );
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_CIRCUIT_BREAKER__DEFAULT__SLIDING_WINDOW_SIZE".into())
    );
}

//! Loading configuration from real files in temporary directories, with
//! environment overrides passed explicitly.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use vega_config::{
    load, ByteSize, Config, ConfigErrors, HumanDuration, LogFormat, ProblemSource, Secret,
};

/// A working directory that no test writes to; only joined, never read.
const WORKDIR: &str = "/srv/vega";

fn write_config(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("vega.yaml");
    std::fs::write(&path, text).expect("write config file");
    path
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads `text` as a config file with the given environment.
fn load_text(text: &str, vars: &[(&str, &str)]) -> (TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(&dir, text);
    let result = load(Some(&path), env(vars), Path::new(WORKDIR));
    (dir, result)
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    load(None, env(vars), Path::new(WORKDIR))
}

fn expect_errors(result: Result<Config, ConfigErrors>) -> ConfigErrors {
    match result {
        Ok(config) => panic!("expected problems, loaded {config:?}"),
        Err(errors) => errors,
    }
}

fn expect_config(result: Result<Config, ConfigErrors>) -> Config {
    match result {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn paths(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn no_file_and_no_env_gives_defaults() {
    let config = expect_config(load_env(&[]));
    assert_eq!(config, Config::default());
    assert_eq!(config.data_dir, PathBuf::from("./vega-data"));
    assert_eq!(config.api.listen.to_string(), "127.0.0.1:50013");
    assert_eq!(config.ops.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(config.api.max_body_bytes, ByteSize::mib(10));
    assert_eq!(config.query.max_timeout, HumanDuration::from_mins(10));
    assert_eq!(config.node.display_name(), "vega");
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn empty_file_gives_defaults() {
    let (_dir, result) = load_text("# nothing here\n", &[]);
    assert_eq!(expect_config(result), Config::default());
}

#[test]
fn section_without_keys_gives_its_defaults() {
    let (_dir, result) = load_text("api:\nquery:\n", &[]);
    assert_eq!(expect_config(result), Config::default());
}

#[test]
fn full_valid_file_sets_every_key() {
    let (dir, result) = load_text(
        r#"
data_dir: /var/lib/vega
node:
  name: edge-1
api:
  listen: 0.0.0.0:8080
  max_body_bytes: 512KB
  request_timeout: 90s
ops:
  listen: 0.0.0.0:9191
auth:
  bootstrap_admin_key: "0123456789abcdef01234567"
query:
  pool_size: 8
  max_concurrency: 16
  queue_timeout: 250ms
  default_timeout: 20s
  max_timeout: 1h
  default_max_rows: 500
  max_rows_limit: 5000
  threads: 4
  memory_limit: 1GB
sync:
  max_concurrent_jobs: 3
  rows_per_segment: 5000
  job_timeout: 1d
connectors:
  file:
    allowed_roots: [/data/in, /data/archive]
shutdown:
  grace_period: 0s
log:
  format: pretty
  level: info,vega_query=debug
"#,
        &[],
    );
    let config = expect_config(result);
    drop(dir);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/vega"));
    assert_eq!(config.node.display_name(), "edge-1");
    assert_eq!(config.api.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.api.max_body_bytes, ByteSize::b(512_000));
    assert_eq!(config.api.request_timeout, HumanDuration::from_secs(90));
    assert_eq!(config.ops.listen.to_string(), "0.0.0.0:9191");
    assert_eq!(
        config.auth.bootstrap_admin_key,
        Some(Secret::new("0123456789abcdef01234567"))
    );
    let q = &config.query;
    assert_eq!(q.pool_size, 8);
    assert_eq!(q.max_concurrency, 16);
    assert_eq!(q.queue_timeout, HumanDuration::from_millis(250));
    assert_eq!(q.default_timeout, HumanDuration::from_secs(20));
    assert_eq!(q.max_timeout, HumanDuration::from_hours(1));
    assert_eq!(q.default_max_rows, 500);
    assert_eq!(q.max_rows_limit, 5000);
    assert_eq!(q.threads, 4);
    assert_eq!(q.memory_limit, ByteSize::b(1_000_000_000));
    assert_eq!(config.sync.max_concurrent_jobs, 3);
    assert_eq!(config.sync.rows_per_segment, 5000);
    assert_eq!(config.sync.job_timeout, HumanDuration::from_hours(24));
    assert_eq!(
        config.connectors.file.allowed_roots,
        vec![PathBuf::from("/data/in"), PathBuf::from("/data/archive")]
    );
    assert_eq!(config.shutdown.grace_period, HumanDuration::ZERO);
    assert_eq!(config.log.format, LogFormat::Pretty);
    assert_eq!(config.log.level, "info,vega_query=debug");
}

#[test]
fn malformed_yaml_is_one_problem_with_file_line_and_column() {
    let (dir, result) = load_text("api:\n  listen: 1\n   x: [\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(errors.0.len(), 1, "{errors}");
    let problem = &errors.0[0];
    assert_eq!(problem.path, "");
    assert_eq!(
        problem.source,
        ProblemSource::File(dir.path().join("vega.yaml"))
    );
    assert!(
        problem
            .message
            .starts_with("invalid YAML at line 3, column 5"),
        "{}",
        problem.message
    );
    assert!(errors.to_string().contains("vega.yaml"), "{errors}");
}

#[test]
fn missing_file_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.yaml");
    let errors = expect_errors(load(Some(&path), env(&[]), Path::new(WORKDIR)));
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0].message.contains("cannot read"),
        "{}",
        errors.0[0].message
    );
}

#[test]
fn top_level_list_is_rejected() {
    let (_dir, result) = load_text("- a\n- b\n", &[]);
    let errors = expect_errors(result);
    assert!(
        errors.0[0].message.contains("must be a mapping"),
        "{errors}"
    );
}

#[test]
fn relative_config_path_is_resolved_against_working_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(&dir, "query:\n  pool_size: 7\n");
    let config = expect_config(load(Some(Path::new("vega.yaml")), env(&[]), dir.path()));
    assert_eq!(config.query.pool_size, 7);
}

#[test]
fn unknown_top_level_and_nested_keys_are_reported_together() {
    let (_dir, result) = load_text("colour: blue\napi:\n  lisen: 0.0.0.0:1\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["colour", "api.lisen"], "{errors}");
}

#[test]
fn unknown_key_message_lists_expected_keys() {
    let (_dir, result) = load_text("api:\n  lisen: 0.0.0.0:1\n", &[]);
    let errors = expect_errors(result);
    let message = &errors.0[0].message;
    assert!(message.contains("unknown field `lisen`"), "{message}");
    assert!(
        message.contains("`listen`, `max_body_bytes`, `request_timeout`"),
        "{message}"
    );
}

#[test]
fn wrong_type_is_reported_with_its_path() {
    let (_dir, result) = load_text("query:\n  pool_size: lots\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.pool_size"]);
    assert!(errors.0[0].message.contains("invalid type"), "{errors}");
}

#[test]
fn wrong_type_for_a_whole_section_is_reported() {
    let (_dir, result) = load_text("query: 5\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query"]);
}

#[test]
fn several_problems_are_reported_at_once() {
    let (_dir, result) = load_text(
        "query:\n  pool_size: lots\n  threads: 0\nsync:\n  colour: blue\n",
        &[],
    );
    let errors = expect_errors(result);
    let mut found = paths(&errors);
    found.sort_unstable();
    assert_eq!(
        found,
        vec!["query.pool_size", "query.threads", "sync.colour"],
        "{errors}"
    );
}

#[test]
fn errors_display_one_line_per_problem_with_source() {
    let (dir, result) = load_text("query:\n  threads: 0\n", &[]);
    let errors = expect_errors(result);
    let file = dir.path().join("vega.yaml");
    assert_eq!(
        errors.to_string(),
        format!(
            "query.threads: must be between 1 and 256, is 0 (from {})",
            file.display()
        )
    );
}

#[test]
fn bad_duration_message_names_the_unit() {
    let (_dir, result) = load_text("sync:\n  job_timeout: 5 parsecs\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["sync.job_timeout"]);
    assert_eq!(
        errors.0[0].message,
        "invalid duration \"5 parsecs\": unknown unit \"parsecs\" (use ms, s, m, h, d)"
    );
}

#[test]
fn bad_byte_size_is_reported_with_path() {
    let (_dir, result) = load_text("query:\n  memory_limit: -2GiB\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.memory_limit"]);
    assert!(errors.0[0].message.contains("negative"), "{errors}");
}

#[test]
fn bad_socket_address_is_reported_with_path() {
    let (_dir, result) = load_text("api:\n  listen: localhost\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["api.listen"]);
}

#[test]
fn unknown_log_format_is_reported() {
    let (_dir, result) = load_text("log:\n  format: xml\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["log.format"]);
    assert!(errors.0[0].message.contains("`json`"), "{errors}");
}

#[test]
fn misspelt_log_level_is_reported() {
    let (_dir, result) = load_text("log:\n  level: inf\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["log.level"]);
}

#[test]
fn invalid_list_elements_keep_their_original_indices() {
    let (_dir, result) = load_text(
        "connectors:\n  file:\n    allowed_roots: [/a, {x: 1}, /b, [1], '', /c]\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(
        paths(&errors),
        vec![
            "connectors.file.allowed_roots[1]",
            "connectors.file.allowed_roots[3]",
            "connectors.file.allowed_roots[4]",
        ],
        "{errors}"
    );
}

#[test]
fn default_timeout_above_max_timeout_is_rejected() {
    let (_dir, result) = load_text("query:\n  default_timeout: 2m\n  max_timeout: 1m\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.default_timeout"]);
    assert!(errors.0[0].message.contains("max_timeout"), "{errors}");
}

#[test]
fn rule_between_keys_names_the_key_that_was_set() {
    let errors = expect_errors(load_env(&[("VEGA_QUERY__MAX_TIMEOUT", "10s")]));
    assert_eq!(paths(&errors), vec!["query.default_timeout"]);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_QUERY__MAX_TIMEOUT".into())
    );
}

#[test]
fn rule_between_keys_prefers_env_over_file_section() {
    let (_dir, result) = load_text(
        "query:\n  pool_size: 8\n",
        &[("VEGA_QUERY__MAX_TIMEOUT", "10s")],
    );
    let errors = expect_errors(result);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_QUERY__MAX_TIMEOUT".into())
    );
}

#[test]
fn secret_of_wrong_type_is_not_echoed() {
    let (_dir, result) = load_text("auth:\n  bootstrap_admin_key: 918273645546372819\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["auth.bootstrap_admin_key"]);
    assert!(
        !errors.to_string().contains("918273645546372819"),
        "{errors}"
    );
}

#[test]
fn default_max_rows_above_limit_is_rejected() {
    let (_dir, result) = load_text("query:\n  max_rows_limit: 100\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.default_max_rows"]);
}

#[test]
fn rule_over_an_unreadable_value_is_not_reported_twice() {
    let (_dir, result) = load_text("query:\n  default_timeout: soon\n  max_timeout: 1s\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.default_timeout"], "{errors}");
}

#[test]
fn zero_timeout_is_rejected_but_zero_queue_wait_is_allowed() {
    let (_dir, result) = load_text(
        "api:\n  request_timeout: 0s\nquery:\n  queue_timeout: 0s\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["api.request_timeout"]);
}

#[test]
fn zero_byte_limit_is_rejected() {
    let (_dir, result) = load_text("api:\n  max_body_bytes: 0\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["api.max_body_bytes"]);
}

#[test]
fn api_and_ops_on_the_same_port_are_rejected() {
    let (_dir, result) = load_text(
        "api:\n  listen: 0.0.0.0:8000\nops:\n  listen: 127.0.0.1:8000\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["ops.listen"]);
}

#[test]
fn ranges_are_enforced_at_both_ends() {
    let (_dir, result) = load_text(
        "query:\n  pool_size: 257\n  max_concurrency: 0\nsync:\n  max_concurrent_jobs: 65\n  rows_per_segment: 0\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(
        paths(&errors),
        vec![
            "query.pool_size",
            "query.max_concurrency",
            "sync.max_concurrent_jobs",
            "sync.rows_per_segment",
        ]
    );
}

#[test]
fn negative_count_is_reported() {
    let (_dir, result) = load_text("query:\n  threads: -1\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.threads"]);
}

#[test]
fn env_override_wins_over_file() {
    let (_dir, result) = load_text(
        "query:\n  pool_size: 8\n  threads: 3\n",
        &[("VEGA_QUERY__POOL_SIZE", "12")],
    );
    let config = expect_config(result);
    assert_eq!(config.query.pool_size, 12);
    assert_eq!(config.query.threads, 3);
}

#[test]
fn env_sets_top_level_and_nested_keys() {
    let config = expect_config(load_env(&[
        ("VEGA_DATA_DIR", "/data/vega"),
        ("VEGA_API__LISTEN", "0.0.0.0:50013"),
        ("VEGA_QUERY__DEFAULT_TIMEOUT", "45"),
        ("VEGA_QUERY__MEMORY_LIMIT", "512MiB"),
        ("VEGA_LOG__FORMAT", "pretty"),
    ]));
    assert_eq!(config.data_dir, PathBuf::from("/data/vega"));
    assert_eq!(config.api.listen.to_string(), "0.0.0.0:50013");
    assert_eq!(config.query.default_timeout, HumanDuration::from_secs(45));
    assert_eq!(config.query.memory_limit, ByteSize::mib(512));
    assert_eq!(config.log.format, LogFormat::Pretty);
}

#[test]
fn env_text_values_are_not_reinterpreted_as_yaml() {
    let config = expect_config(load_env(&[
        ("VEGA_NODE__NAME", "true"),
        ("VEGA_AUTH__BOOTSTRAP_ADMIN_KEY", "123456789012345678901234"),
    ]));
    assert_eq!(config.node.name.as_deref(), Some("true"));
    let key = config.auth.bootstrap_admin_key.expect("key set");
    assert_eq!(key.expose(), "123456789012345678901234");
}

#[test]
fn env_var_names_are_case_insensitive_after_the_prefix() {
    let config = expect_config(load_env(&[("VEGA_Query__Pool_Size", "9")]));
    assert_eq!(config.query.pool_size, 9);
}

#[test]
fn env_var_for_unknown_key_is_rejected_naming_the_variable() {
    let errors = expect_errors(load_env(&[("VEGA_QUERY__POOL", "8")]));
    assert_eq!(paths(&errors), vec!["query.pool"]);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_QUERY__POOL".into())
    );
    assert!(errors.to_string().contains("VEGA_QUERY__POOL"), "{errors}");
}

#[test]
fn env_var_for_unknown_section_is_rejected_naming_the_variable() {
    let errors = expect_errors(load_env(&[("VEGA_TURBO__SIZE", "1GiB")]));
    assert_eq!(paths(&errors), vec!["turbo"]);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_TURBO__SIZE".into())
    );
}

#[test]
fn env_var_below_a_plain_value_is_rejected() {
    let errors = expect_errors(load_env(&[("VEGA_API__LISTEN__PORT", "80")]));
    assert_eq!(paths(&errors), vec!["api.listen.port"]);
    assert!(errors.0[0].message.contains("not a section"), "{errors}");
}

#[test]
fn env_var_with_malformed_name_is_rejected() {
    let errors = expect_errors(load_env(&[("VEGA_API____LISTEN", "x")]));
    assert_eq!(errors.0.len(), 1);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_API____LISTEN".into())
    );
}

#[test]
fn env_wrong_type_names_the_variable() {
    let (dir, result) = load_text(
        "query:\n  pool_size: 8\n",
        &[("VEGA_QUERY__POOL_SIZE", "many")],
    );
    let errors = expect_errors(result);
    drop(dir);
    assert_eq!(paths(&errors), vec!["query.pool_size"]);
    assert_eq!(
        errors.0[0].source,
        ProblemSource::Env("VEGA_QUERY__POOL_SIZE".into())
    );
}

#[test]
fn env_list_is_comma_separated() {
    let config = expect_config(load_env(&[(
        "VEGA_CONNECTORS__FILE__ALLOWED_ROOTS",
        "/data/a, /data/b",
    )]));
    assert_eq!(
        config.connectors.file.allowed_roots,
        vec![PathBuf::from("/data/a"), PathBuf::from("/data/b")]
    );
}

#[test]
fn env_list_accepts_a_flow_sequence() {
    let config = expect_config(load_env(&[(
        "VEGA_CONNECTORS__FILE__ALLOWED_ROOTS",
        "[/data/a, '/data/with,comma']",
    )]));
    assert_eq!(
        config.connectors.file.allowed_roots,
        vec![PathBuf::from("/data/a"), PathBuf::from("/data/with,comma")]
    );
}

#[test]
fn env_list_replaces_the_file_list() {
    let (_dir, result) = load_text(
        "connectors:\n  file:\n    allowed_roots: [/x, /y]\n",
        &[("VEGA_CONNECTORS__FILE__ALLOWED_ROOTS", "/z")],
    );
    assert_eq!(
        expect_config(result).connectors.file.allowed_roots,
        vec![PathBuf::from("/z")]
    );
}

#[test]
fn env_broken_flow_sequence_is_rejected() {
    let errors = expect_errors(load_env(&[(
        "VEGA_CONNECTORS__FILE__ALLOWED_ROOTS",
        "[/a, /b",
    )]));
    assert_eq!(paths(&errors), vec!["connectors.file.allowed_roots"]);
}

#[test]
fn ignored_vega_vars_are_not_config_keys() {
    let config = expect_config(load_env(&[
        ("VEGA_CONFIG", "/etc/vega/vega.yaml"),
        ("VEGA_LOG", "debug"),
        ("VEGA_FAILPOINT", "sync.write=panic"),
    ]));
    assert_eq!(config, Config::default());
}

#[test]
fn vars_without_the_prefix_are_ignored() {
    let config = expect_config(load_env(&[
        ("PATH", "/usr/bin"),
        ("VEGAS", "1"),
        ("vega_query__pool_size", "9"),
    ]));
    assert_eq!(config, Config::default());
}

#[test]
fn secret_is_hidden_in_debug_and_to_yaml() {
    let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t";
    let (_dir, result) = load_text(&format!("auth:\n  bootstrap_admin_key: {secret}\n"), &[]);
    let config = expect_config(result);
    assert_eq!(
        config.auth.bootstrap_admin_key.as_ref().map(Secret::expose),
        Some(secret)
    );
    let debug = format!("{config:?}");
    let yaml = config.to_yaml();
    assert!(!debug.contains(secret), "{debug}");
    assert!(!yaml.contains(secret), "{yaml}");
    assert!(yaml.contains("bootstrap_admin_key: '***'"), "{yaml}");
}

#[test]
fn short_secret_is_rejected_without_printing_it() {
    let errors = expect_errors(load_env(&[("VEGA_AUTH__BOOTSTRAP_ADMIN_KEY", "tooshort")]));
    assert_eq!(paths(&errors), vec!["auth.bootstrap_admin_key"]);
    assert!(!errors.to_string().contains("tooshort"), "{errors}");
}

#[test]
fn redacted_placeholder_is_rejected_as_a_key() {
    let errors = expect_errors(load_env(&[("VEGA_AUTH__BOOTSTRAP_ADMIN_KEY", "***")]));
    assert!(errors.0[0].message.contains("placeholder"), "{errors}");
}

#[test]
fn to_yaml_loads_back_to_the_same_config() {
    let (_dir, result) = load_text(
        "query:\n  pool_size: 6\n  queue_timeout: 1500ms\nconnectors:\n  file:\n    allowed_roots: [/srv]\n",
        &[],
    );
    let config = expect_config(result);
    let (_dir2, reloaded) = load_text(&config.to_yaml(), &[]);
    assert_eq!(expect_config(reloaded), config);
}

#[test]
fn relative_allowed_roots_resolve_against_the_config_file_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = dir.path().join("etc");
    std::fs::create_dir(&sub).expect("mkdir");
    let path = sub.join("vega.yaml");
    std::fs::write(
        &path,
        "connectors:\n  file:\n    allowed_roots: [data, ./in/, /abs]\n",
    )
    .expect("write");
    let config = expect_config(load(Some(&path), env(&[]), Path::new(WORKDIR)));
    assert_eq!(
        config.connectors.file.allowed_roots,
        vec![sub.join("data"), sub.join("in"), PathBuf::from("/abs")]
    );
}

#[test]
fn relative_allowed_roots_from_env_resolve_against_the_working_dir() {
    let (_dir, result) = load_text("", &[("VEGA_CONNECTORS__FILE__ALLOWED_ROOTS", "data")]);
    assert_eq!(
        expect_config(result).connectors.file.allowed_roots,
        vec![PathBuf::from(WORKDIR).join("data")]
    );
}

#[test]
fn relative_allowed_roots_without_working_dir_are_rejected() {
    let errors = expect_errors(load(
        None,
        env(&[("VEGA_CONNECTORS__FILE__ALLOWED_ROOTS", "data")]),
        Path::new(""),
    ));
    assert_eq!(paths(&errors), vec!["connectors.file.allowed_roots[0]"]);
    assert!(errors.0[0].message.contains("absolute"), "{errors}");
}

#[test]
fn yaml_merge_keys_are_applied() {
    let (_dir, result) = load_text(
        "api: &shared\n  request_timeout: 2m\nops:\n  listen: 127.0.0.1:9999\nquery:\n  <<: {pool_size: 5}\n",
        &[],
    );
    assert_eq!(expect_config(result).query.pool_size, 5);
}

#[test]
fn non_text_keys_are_reported_as_unknown() {
    let (_dir, result) = load_text("query:\n  1: x\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), vec!["query.1"]);
}

#[test]
fn config_errors_is_a_std_error() {
    let errors = expect_errors(load_env(&[("VEGA_NOPE", "1")]));
    let boxed: Box<dyn std::error::Error> = Box::new(errors);
    assert!(boxed.to_string().contains("VEGA_NOPE"));
}

#[test]
fn documented_example_is_valid() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/configuration.md");
    let example = doc
        .split("## Example\n")
        .nth(1)
        .and_then(|section| section.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml example in the documentation's Example section");
    let (dir, result) = load_text(example, &[]);
    let config = expect_config(result);
    assert_eq!(config.node.display_name(), "edge-1");
    assert_eq!(
        config.connectors.file.allowed_roots[1],
        dir.path().join("incoming")
    );
}

#[test]
fn every_yaml_block_of_the_documentation_is_a_valid_configuration() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/configuration.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() > 1, "the documentation has yaml examples");
    for block in blocks {
        let (_dir, result) = load_text(block, &[]);
        if let Err(errors) = result {
            panic!("documented example does not load:\n{block}\n{errors}");
        }
    }
}

#[test]
fn ingest_settings_load_from_file_and_env_and_bad_ones_name_their_key() {
    let (_dir, result) = load_text(
        "ingest:\n  wal_fsync_interval: 2ms\n  flush_age: 1s\n  buffer_max_bytes: 1GiB\n",
        &[("VEGA_INGEST__FLUSH_ROWS", "1000")],
    );
    let config = expect_config(result);
    assert_eq!(config.ingest.wal_fsync_interval.as_millis(), 2);
    assert_eq!(config.ingest.flush_age.as_millis(), 1000);
    assert_eq!(config.ingest.buffer_max_bytes.as_u64(), 1 << 30);
    assert_eq!(config.ingest.flush_rows, 1000);

    let (_dir, result) = load_text(
        "ingest:\n  wal_fsync_interval: 2s\n  flush_rows: 10\n  buffer_max_rows: 5\n  max_body_bytes: 0B\n",
        &[],
    );
    let errors = expect_errors(result);
    let mut found = paths(&errors);
    found.sort();
    assert_eq!(
        found,
        [
            "ingest.flush_rows",
            "ingest.max_body_bytes",
            "ingest.wal_fsync_interval"
        ],
        "{errors}"
    );
}

#[test]
fn the_catalog_url_must_be_postgres_and_is_never_printed() {
    let (_dir, result) = load_text(
        "catalog:\n  url: postgres://vega:s3cret@db:5432/vega\n",
        &[],
    );
    let config = expect_config(result);
    assert_eq!(
        config.catalog.url.as_ref().unwrap().expose(),
        "postgres://vega:s3cret@db:5432/vega"
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let (_dir, result) = load_text("", &[("VEGA_CATALOG__URL", "mysql://db/vega")]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), ["catalog.url"], "{errors}");
}

#[test]
fn the_shared_storage_directory_is_set_by_file_or_env_and_never_empty() {
    let (_dir, result) = load_text("storage:\n  shared_dir: /mnt/vega\n", &[]);
    let config = expect_config(result);
    assert_eq!(
        config.storage.shared_dir.as_deref(),
        Some(std::path::Path::new("/mnt/vega"))
    );
    let (_dir, result) = load_text("", &[("VEGA_STORAGE__SHARED_DIR", "/srv/shared")]);
    let config = expect_config(result);
    assert_eq!(
        config.storage.shared_dir.as_deref(),
        Some(std::path::Path::new("/srv/shared"))
    );
    let (_dir, result) = load_text("storage:\n  shared_dir: \"\"\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), ["storage.shared_dir"], "{errors}");
}

#[test]
fn an_object_store_needs_an_s3_url_and_allow_http_for_a_plain_endpoint() {
    let (_dir, result) = load_text(
        "storage:\n  object_store:\n    url: s3://bucket/segments\n    endpoint: https://s3.example\n    secret_access_key: hush-hush\n",
        &[],
    );
    let config = expect_config(result);
    let o = config.storage.object_store.as_ref().unwrap();
    assert_eq!(
        o.bucket_and_prefix().unwrap(),
        ("bucket".to_string(), "segments".to_string())
    );
    assert!(!format!("{config:?}").contains("hush-hush"));
    let (_dir, result) = load_text(
        "storage:\n  object_store:\n    url: bucket\n    endpoint: http://127.0.0.1:9000\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(
        paths(&errors),
        ["storage.object_store.url", "storage.object_store.endpoint"],
        "{errors}"
    );
}

#[test]
fn cache_settings_load_and_are_checked() {
    let config = load_env(&[
        ("VEGA_CACHE__MAX_BYTES", "64MiB"),
        ("VEGA_CACHE__TTL", "5s"),
    ])
    .unwrap();
    assert_eq!(config.cache.max_bytes.as_u64(), 64 << 20);
    assert!(config.cache.enabled);
    let errors = expect_errors(load_env(&[
        ("VEGA_CACHE__MAX_BYTES", "1MiB"),
        ("VEGA_CACHE__MAX_ENTRY_BYTES", "2MiB"),
        ("VEGA_CACHE__TTL", "0s"),
    ]));
    assert_eq!(paths(&errors), vec!["cache.ttl", "cache.max_entry_bytes"]);
    // Disabled, the sizes are not checked.
    load_env(&[("VEGA_CACHE__ENABLED", "false"), ("VEGA_CACHE__TTL", "0s")]).unwrap();
}

#[test]
fn backup_section_defaults_to_the_data_dir_and_is_checked() {
    let config = expect_config(load_env(&[]));
    assert_eq!(config.backup, vega_config::BackupConfig::default());
    assert_eq!(
        config.backup.dir_in(&config.data_dir),
        PathBuf::from("./vega-data").join("backups")
    );
    let (_dir, result) = load_text(
        "backup:\n  dir: /srv/vega-backups\n  object_store:\n    url: s3://vault/vega\n    endpoint: http://127.0.0.1:9000\n    allow_http: true\n    secret_access_key: hush-hush\n",
        &[],
    );
    let config = expect_config(result);
    assert_eq!(
        config.backup.dir_in(&config.data_dir),
        PathBuf::from("/srv/vega-backups")
    );
    let o = config.backup.object_store.as_ref().unwrap();
    assert_eq!(
        o.bucket_and_prefix().unwrap(),
        ("vault".to_string(), "vega".to_string())
    );
    assert!(!format!("{config:?}").contains("hush-hush"));
    let (_dir, result) = load_text("backup:\n  retain: 7\n", &[]);
    let errors = expect_errors(result);
    assert_eq!(paths(&errors), ["backup.retain"], "{errors}");
    let (_dir, result) = load_text(
        "backup:\n  dir: \"\"\n  object_store:\n    url: vault\n    endpoint: http://127.0.0.1:9000\n",
        &[],
    );
    let errors = expect_errors(result);
    assert_eq!(
        paths(&errors),
        [
            "backup.dir",
            "backup.object_store.url",
            "backup.object_store.endpoint"
        ],
        "{errors}"
    );
}

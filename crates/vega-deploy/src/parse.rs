//! Reading the `load_balancer:` block out of a YAML document.
//!
//! The document may be a whole Vega configuration: only the top-level
//! `load_balancer` key is read, every other key is ignored. Type errors and
//! unknown keys inside the block are all reported, each with its key path:
//! the offending value is removed and the rest deserialized again, until it
//! succeeds (so one typo does not hide the next).

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

use crate::config::{LoadBalancerConfig, LOAD_BALANCER_KEY};
use crate::validate::Problem;

/// Deserialization rounds before giving up; each round reports one problem.
const MAX_ROUNDS: usize = 64;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Field(String),
    Index(usize),
}

/// Parses the `load_balancer` block of `text` and checks it
/// ([`LoadBalancerConfig::validate`]). Returns every problem found, type
/// errors first, then broken rules.
pub fn parse_load_balancer(text: &str) -> Result<LoadBalancerConfig, Vec<Problem>> {
    let block = block_of(text)?;
    let config = deserialize_block(block)?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// The value under the top-level `load_balancer` key.
fn block_of(text: &str) -> Result<Value, Vec<Problem>> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|err| {
        let message = match err.location() {
            Some(at) => {
                let repeated = format!(" at line {} column {}", at.line(), at.column());
                let detail = err.to_string().replacen(&repeated, "", 1);
                format!(
                    "invalid YAML at line {}, column {}: {detail}",
                    at.line(),
                    at.column()
                )
            }
            None => format!("invalid YAML: {err}"),
        };
        vec![Problem::new("", message)]
    })?;
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    doc.apply_merge().map_err(|err| {
        vec![Problem::new(
            "",
            format!("invalid YAML merge key (<<): {err}"),
        )]
    })?;
    let Value::Mapping(mut top) = doc else {
        return Err(vec![Problem::new(
            "",
            "the document must be a mapping with a top-level `load_balancer:` key",
        )]);
    };
    match top.shift_remove(LOAD_BALANCER_KEY) {
        None => Err(vec![Problem::new(
            LOAD_BALANCER_KEY,
            "missing: the document has no top-level `load_balancer:` block",
        )]),
        // `load_balancer:` with nothing under it: all defaults.
        Some(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Some(mut block) => {
            block.apply_merge().map_err(|err| {
                vec![Problem::new(
                    LOAD_BALANCER_KEY,
                    format!("invalid YAML merge key (<<): {err}"),
                )]
            })?;
            // Sections written with nothing under them mean their defaults.
            if let Value::Mapping(map) = &mut block {
                for section in ["health_check", "sticky_session"] {
                    if let Some(value @ Value::Null) = map.get_mut(section) {
                        *value = Value::Mapping(Mapping::new());
                    }
                }
            }
            Ok(block)
        }
    }
}

/// Deserializes the block, collecting one problem per offending value.
fn deserialize_block(mut tree: Value) -> Result<LoadBalancerConfig, Vec<Problem>> {
    let mut problems = Vec::new();
    // Per sequence (by its original path), the original indices removed so
    // far, so that later paths name the element the user wrote.
    let mut removed: HashMap<Vec<Key>, Vec<usize>> = HashMap::new();
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, LoadBalancerConfig>(&tree) {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => return Err(problems),
            Err(err) => err,
        };
        let current = to_keys(err.path());
        let original = current
            .as_deref()
            .map(|path| original_path(path, &removed))
            .unwrap_or_default();
        problems.push(Problem::new(render(&original), err.inner().to_string()));
        let removed_ok = current
            .as_deref()
            .is_some_and(|path| remove(&mut tree, path));
        if !removed_ok {
            // Cannot locate the value (or it is the whole block).
            return Err(problems);
        }
        if let Some((Key::Index(index), seq)) = original.split_last() {
            let list = removed.entry(seq.to_vec()).or_default();
            list.push(*index);
            list.sort_unstable();
        }
    }
    problems.push(Problem::new(
        LOAD_BALANCER_KEY,
        format!("too many problems; stopped after {MAX_ROUNDS}"),
    ));
    Err(problems)
}

fn to_keys(path: &serde_path_to_error::Path) -> Option<Vec<Key>> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(Key::Field(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Key::Field(variant.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Key::Index(*index)),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// Maps sequence indices of the current tree (after removals) back to
/// those the user wrote.
fn original_path(current: &[Key], removed: &HashMap<Vec<Key>, Vec<usize>>) -> Vec<Key> {
    let mut out: Vec<Key> = Vec::with_capacity(current.len());
    for key in current {
        match key {
            Key::Index(index) => {
                let mut original = *index;
                if let Some(gone) = removed.get(&out) {
                    for r in gone {
                        if *r <= original {
                            original += 1;
                        }
                    }
                }
                out.push(Key::Index(original));
            }
            Key::Field(_) => out.push(key.clone()),
        }
    }
    out
}

/// `load_balancer.a.b[1].c`.
fn render(path: &[Key]) -> String {
    let mut out = String::from(LOAD_BALANCER_KEY);
    for key in path {
        match key {
            Key::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Key::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Removes the value at `path` (not the root). Whether something was removed.
fn remove(root: &mut Value, path: &[Key]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for key in parents {
        let next = match (key, node) {
            (Key::Field(name), Value::Mapping(map)) => map.get_mut(name.as_str()),
            (Key::Index(index), Value::Sequence(seq)) => seq.get_mut(*index),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, node) {
        // `shift_remove` keeps the order of the remaining keys, so problems
        // come out in the order they are written.
        (Key::Field(name), Value::Mapping(map)) => map.shift_remove(name.as_str()).is_some(),
        (Key::Index(index), Value::Sequence(seq)) if *index < seq.len() => {
            seq.remove(*index);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Algorithm, Backend};
    use vega_config::HumanDuration;

    /// Seed `operations-and-reliability.md` §17.2, verbatim.
    const SEED_BLOCK: &str = include_str!("../../vega-config/tests/seed/load_balancer.yaml");

    fn problems(text: &str) -> Vec<String> {
        parse_load_balancer(text)
            .expect_err("expected problems")
            .iter()
            .map(Problem::to_string)
            .collect()
    }

    #[test]
    fn the_seed_block_parses_verbatim() {
        let config = parse_load_balancer(SEED_BLOCK).expect("the seed's block is valid");
        assert_eq!(config.algorithm, Algorithm::LeastConnections);
        assert_eq!(config.health_check.path, "/health");
        assert_eq!(config.health_check.interval, HumanDuration::from_secs(5));
        assert_eq!(config.health_check.timeout, HumanDuration::from_secs(2));
        assert_eq!(config.health_check.healthy_threshold, 2);
        assert_eq!(config.health_check.unhealthy_threshold, 3);
        assert!(!config.sticky_session.enabled);
        assert_eq!(
            config.backends,
            vec![
                Backend::new("gateway-1:8080"),
                Backend::new("gateway-2:8080"),
                Backend::new("gateway-3:8080"),
            ]
        );
    }

    #[test]
    fn other_top_level_keys_are_ignored() {
        let text = "data_dir: /var/lib/vega\napi: {listen: 0.0.0.0:50013, bogus: 1}\n\
                    load_balancer:\n  backends: [{address: 'a:1'}]\n";
        let config = parse_load_balancer(text).unwrap();
        assert_eq!(config.backends, vec![Backend::new("a:1")]);
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let config =
            parse_load_balancer("load_balancer:\n  health_check:\n  backends: [{address: 'a:1'}]")
                .unwrap();
        assert_eq!(
            config,
            LoadBalancerConfig {
                backends: vec![Backend::new("a:1")],
                ..LoadBalancerConfig::default()
            }
        );
        assert_eq!(config.health_check.path, "/health/ready");
        assert_eq!(config.algorithm, Algorithm::LeastConnections);
    }

    #[test]
    fn every_algorithm_name_parses() {
        for (name, algorithm) in [
            ("round_robin", Algorithm::RoundRobin),
            ("least_connections", Algorithm::LeastConnections),
            ("ip_hash", Algorithm::IpHash),
        ] {
            let text =
                format!("load_balancer: {{algorithm: {name}, backends: [{{address: 'a:1'}}]}}");
            assert_eq!(parse_load_balancer(&text).unwrap().algorithm, algorithm);
            assert_eq!(algorithm.as_str(), name);
        }
    }

    #[test]
    fn missing_block_is_reported() {
        assert_eq!(
            problems("api: {}\n"),
            ["load_balancer: missing: the document has no top-level `load_balancer:` block"]
        );
        assert_eq!(problems("").len(), 1);
    }

    #[test]
    fn empty_block_reports_missing_backends() {
        assert_eq!(
            problems("load_balancer:\n"),
            ["load_balancer.backends: must list at least one backend, e.g. `- address: 10.0.0.5:50013`"]
        );
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let found = problems("load_balancer:\n  backends: [\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("invalid YAML at line"), "{found:?}");
    }

    #[test]
    fn non_mapping_document_is_refused() {
        assert_eq!(
            problems("- a\n"),
            ["the document must be a mapping with a top-level `load_balancer:` key"]
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_all_reported_with_paths() {
        let text = r#"
load_balancer:
  algorithm: fastest
  health_check:
    pth: /health
    interval: 5 parsecs
    healthy_threshold: -1
  sticky_session:
    enabled: "maybe"
  backends:
    - address: "a:1"
      weight: heavy
    - address: "b:1"
      wieght: 1
"#;
        let found = problems(text);
        let paths: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "load_balancer.algorithm",
                "load_balancer.health_check.pth",
                "load_balancer.health_check.interval",
                "load_balancer.health_check.healthy_threshold",
                "load_balancer.sticky_session.enabled",
                "load_balancer.backends[0].weight",
                "load_balancer.backends[1].wieght",
            ],
            "{found:#?}"
        );
        assert!(
            found[0].contains("unknown variant `fastest`"),
            "{}",
            found[0]
        );
        assert!(
            found[2].contains("unknown unit \"parsecs\""),
            "{}",
            found[2]
        );
    }

    #[test]
    fn a_removed_backend_does_not_shift_later_paths() {
        let text = r#"
load_balancer:
  backends:
    - "a:1"
    - address: "b:1"
      weight: -5
    - 7
    - address: "d:1"
      weight: x
"#;
        let found = problems(text);
        let paths: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "load_balancer.backends[0]",
                "load_balancer.backends[1].weight",
                "load_balancer.backends[2]",
                "load_balancer.backends[3].weight",
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn type_errors_come_before_rule_checks_only_when_types_are_right() {
        // Types are fine, so the rules are checked and all reported.
        let found = problems(
            "load_balancer:\n  health_check: {interval: 1s, timeout: 1s}\n  backends: [{address: 'a:1', weight: 0}]\n",
        );
        assert_eq!(
            found,
            [
                "load_balancer.health_check.timeout: 1s must be shorter than load_balancer.health_check.interval (1s), so that a check ends before the next one is due",
                "load_balancer.backends[0].weight: must be 1..=256, is 0",
            ]
        );
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "defaults: &hc {interval: 10s, timeout: 3s}\n\
                    load_balancer:\n  health_check:\n    <<: *hc\n    path: /health/ready\n  backends: [{address: 'a:1'}]\n";
        let config = parse_load_balancer(text).unwrap();
        assert_eq!(config.health_check.interval, HumanDuration::from_secs(10));
    }
}

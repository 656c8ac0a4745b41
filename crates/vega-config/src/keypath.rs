//! Key paths into the configuration tree (`query.pool_size`,
//! `connectors.file.allowed_roots[1]`) and the operations on a
//! `serde_yaml::Value` tree that the loader needs.

use serde_yaml::{Mapping, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A named key of a mapping.
    Field(String),
    /// A position in a sequence.
    Index(usize),
}

/// A path from the root of the configuration to a value.
pub(crate) type KeyPath = Vec<Key>;

/// A path of named keys from a dotted string such as `"query.pool_size"`.
pub(crate) fn dotted(path: &str) -> KeyPath {
    path.split('.').map(|k| Key::Field(k.to_string())).collect()
}

/// Builds paths below a known one: `at.key("backends").index(1)`.
pub(crate) trait PathBuild {
    /// This path and then the named key (a field or a map key).
    fn key(&self, name: &str) -> KeyPath;
    /// This path and then a position in a sequence.
    fn index(&self, index: usize) -> KeyPath;
}

impl PathBuild for [Key] {
    fn key(&self, name: &str) -> KeyPath {
        let mut path = self.to_vec();
        path.push(Key::Field(name.to_string()));
        path
    }

    fn index(&self, index: usize) -> KeyPath {
        let mut path = self.to_vec();
        path.push(Key::Index(index));
        path
    }
}

/// The user-facing form of a path: `a.b[1].c`; empty for the root.
pub(crate) fn render(path: &[Key]) -> String {
    let mut out = String::new();
    for key in path {
        match key {
            Key::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Key::Index(index) => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// The value at `path`, if present.
pub(crate) fn get<'a>(root: &'a Value, path: &[Key]) -> Option<&'a Value> {
    let mut node = root;
    for key in path {
        node = match (key, node) {
            (Key::Field(name), Value::Mapping(map)) => map.get(name.as_str())?,
            (Key::Index(index), Value::Sequence(seq)) => seq.get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The value at `path`, if present, for changing it.
pub(crate) fn get_mut<'a>(root: &'a mut Value, path: &[Key]) -> Option<&'a mut Value> {
    let mut node = root;
    for key in path {
        node = match (key, node) {
            (Key::Field(name), Value::Mapping(map)) => map.get_mut(name.as_str())?,
            (Key::Index(index), Value::Sequence(seq)) => seq.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the value at `path`. Returns whether something was removed.
pub(crate) fn remove(root: &mut Value, path: &[Key]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for key in parent_path {
        node = match (key, node) {
            (Key::Field(name), Value::Mapping(map)) => match map.get_mut(name.as_str()) {
                Some(child) => child,
                None => return false,
            },
            (Key::Index(index), Value::Sequence(seq)) => match seq.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Key::Field(name), Value::Mapping(map)) => map.remove(name.as_str()).is_some(),
        (Key::Index(index), Value::Sequence(seq)) if *index < seq.len() => {
            seq.remove(*index);
            true
        }
        _ => false,
    }
}

/// What happened when setting a value with [`set`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetOutcome {
    /// The value was stored. `created` lists the mappings that did not
    /// exist before and were made to hold it (outermost first).
    Stored { created: Vec<KeyPath> },
    /// A value on the way is present but is not a mapping; nothing changed.
    Blocked { at: KeyPath },
}

/// Stores `value` at a path of named keys, creating mappings on the way
/// (a null on the way counts as an empty mapping).
pub(crate) fn set(root: &mut Value, path: &[String], value: Value) -> SetOutcome {
    let mut created = Vec::new();
    let mut node = root;
    for (depth, name) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return SetOutcome::Blocked {
                at: to_fields(&path[..depth]),
            };
        };
        if depth + 1 == path.len() {
            map.insert(Value::String(name.clone()), value);
            return SetOutcome::Stored { created };
        }
        let key = Value::String(name.clone());
        if !map.contains_key(&key) {
            created.push(to_fields(&path[..=depth]));
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    // An empty path replaces nothing; the loader never asks for it.
    SetOutcome::Blocked { at: Vec::new() }
}

fn to_fields(names: &[String]) -> KeyPath {
    names.iter().map(|n| Key::Field(n.clone())).collect()
}

/// Turns every mapping key that is not a string (`1:`, `true:`, `~:`) into
/// its YAML text, so that it is reported as an unknown key like any other.
pub(crate) fn stringify_keys(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            let needs_work = map.keys().any(|k| !k.is_string());
            if needs_work {
                let old = std::mem::take(map);
                for (k, v) in old {
                    let k = match k {
                        Value::String(s) => Value::String(s),
                        other => Value::String(scalar_text(&other)),
                    };
                    map.insert(k, v);
                }
            }
            for v in map.values_mut() {
                stringify_keys(v);
            }
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(stringify_keys),
        Value::Tagged(tagged) => stringify_keys(&mut tagged.value),
        _ => {}
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".to_string()),
    }
}

/// Replaces a null wherever `schema` has a mapping (a section), so that a
/// section written with nothing under it (`api:`) means "all defaults".
pub(crate) fn null_sections_to_empty(value: &mut Value, schema: &Value) {
    let (Value::Mapping(map), Value::Mapping(schema_map)) = (value, schema) else {
        return;
    };
    for (key, child_schema) in schema_map {
        if !child_schema.is_mapping() {
            continue;
        }
        if let Some(child) = map.get_mut(key) {
            if child.is_null() {
                *child = Value::Mapping(Mapping::new());
            }
            null_sections_to_empty(child, child_schema);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn renders_fields_and_indices() {
        let path = vec![
            Key::Field("a".into()),
            Key::Field("b".into()),
            Key::Index(1),
            Key::Field("c".into()),
        ];
        assert_eq!(render(&path), "a.b[1].c");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn removes_a_nested_field() {
        let mut v = yaml("a: {b: 1, c: 2}");
        assert!(remove(&mut v, &dotted("a.b")));
        assert_eq!(v, yaml("a: {c: 2}"));
    }

    #[test]
    fn removes_a_sequence_element() {
        let mut v = yaml("a: [x, y, z]");
        assert!(remove(&mut v, &[Key::Field("a".into()), Key::Index(1)]));
        assert_eq!(v, yaml("a: [x, z]"));
    }

    #[test]
    fn remove_of_missing_path_reports_false() {
        let mut v = yaml("a: 1");
        assert!(!remove(&mut v, &dotted("a.b")));
        assert!(!remove(&mut v, &[]));
    }

    #[test]
    fn set_creates_missing_sections() {
        let mut v = yaml("{}");
        let outcome = set(&mut v, &["a".into(), "b".into()], Value::from(1));
        assert_eq!(
            outcome,
            SetOutcome::Stored {
                created: vec![dotted("a")]
            }
        );
        assert_eq!(v, yaml("a: {b: 1}"));
    }

    #[test]
    fn set_is_blocked_by_a_scalar() {
        let mut v = yaml("a: 5");
        let outcome = set(&mut v, &["a".into(), "b".into()], Value::from(1));
        assert_eq!(outcome, SetOutcome::Blocked { at: dotted("a") });
    }

    #[test]
    fn stringifies_non_string_keys() {
        let mut v = yaml("1: x\ntrue: y\n");
        stringify_keys(&mut v);
        assert_eq!(v, yaml("'1': x\n'true': y\n"));
    }
}

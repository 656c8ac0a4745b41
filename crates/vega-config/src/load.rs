//! Loading a [`Config`]: read the optional YAML file, apply `VEGA_*`
//! environment overrides, deserialize while collecting every problem,
//! resolve relative paths, and check the rules of [`crate::validate`].
//!
//! To report all problems at once rather than the first, the file and the
//! overrides are merged into one `serde_yaml::Value`; deserialization is
//! repeated, and after each failure the offending key is recorded and
//! removed (so its default applies) until the rest deserializes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::config::Config;
use crate::error::{ConfigErrors, ConfigProblem, ProblemSource};
use crate::keypath::{self, dotted, Key, KeyPath, SetOutcome};
use crate::validate::validate;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "VEGA_";

/// Separates levels of the key path in a variable name:
/// `VEGA_QUERY__POOL_SIZE` sets `query.pool_size`.
pub const ENV_LEVEL_SEPARATOR: &str = "__";

/// Variables with the [`ENV_PREFIX`] that are not configuration keys and
/// are therefore ignored by the loader:
/// - `VEGA_CONFIG`: the path of the configuration file itself, read by the
///   command line before loading;
/// - `VEGA_LOG`: a log filter read by the logging setup, which takes
///   precedence over `log.level`;
/// - `VEGA_FAILPOINT`: a fault-injection hook used by tests;
/// - `VEGA_URL`, `VEGA_API_KEY`: the server address and key used by the
///   `vega sql` client.
pub const IGNORED_ENV_VARS: &[&str] = &[
    "VEGA_CONFIG",
    "VEGA_LOG",
    "VEGA_FAILPOINT",
    "VEGA_URL",
    "VEGA_API_KEY",
];

/// Upper bound on deserialization attempts; each attempt removes one bad
/// key, so this also bounds how many type problems are reported.
const MAX_DESERIALIZE_ROUNDS: usize = 256;

/// Loads the configuration from an optional YAML file and environment
/// variables, reporting every problem found.
///
/// `env` is the process environment (or any list of name/value pairs);
/// only names starting with [`ENV_PREFIX`] are read. `working_dir`
/// resolves a relative `file` path and relative paths given through the
/// environment (and those in the file when there is no file).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    working_dir: &Path,
) -> Result<Config, ConfigErrors> {
    Loader::new(file, working_dir).run(env)
}

/// [`load`] with the environment and working directory of this process.
///
/// Environment values that are not valid Unicode are read lossily. If the
/// working directory cannot be determined, relative paths stay relative and
/// are reported as problems.
pub fn load_from_process_env(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let env = std::env::vars_os().map(|(name, value)| {
        (
            name.to_string_lossy().into_owned(),
            value.to_string_lossy().into_owned(),
        )
    });
    let working_dir = std::env::current_dir().unwrap_or_default();
    load(file, env, &working_dir)
}

/// What the shape of the default configuration says about a key, used to
/// read an environment value as the right kind of YAML.
enum KeyKind {
    /// A text value, or an optional one: the variable's value is kept as is.
    Text,
    /// A number or boolean: the value is read as a YAML scalar.
    Scalar,
    /// A list: comma-separated, or a YAML flow sequence.
    List,
    /// A section: the value is read as YAML (e.g. a flow mapping).
    Section,
    /// Not a known key; it will be reported as unknown.
    Unknown,
}

struct Loader<'a> {
    file: Option<&'a Path>,
    working_dir: &'a Path,
    /// The default configuration as a tree: the schema of known keys.
    schema: Value,
    /// The same with every optional section present: the shape of keys
    /// that environment variables may set below optional sections.
    env_schema: Value,
    /// The file's contents as parsed, before any override.
    file_value: Value,
    /// Key paths set (or sections created) by each environment variable.
    env_paths: Vec<(KeyPath, String)>,
    /// For each sequence (by its original path), the original indices of
    /// elements removed because they were invalid, ascending.
    removed: HashMap<KeyPath, Vec<usize>>,
    /// Original paths of values that failed to deserialize (and were
    /// replaced by defaults).
    failed: Vec<KeyPath>,
    problems: Vec<ConfigProblem>,
}

impl<'a> Loader<'a> {
    fn new(file: Option<&'a Path>, working_dir: &'a Path) -> Self {
        Loader {
            file,
            working_dir,
            schema: serde_yaml::to_value(Config::default()).unwrap_or(Value::Null),
            env_schema: serde_yaml::to_value(Config::with_every_section()).unwrap_or(Value::Null),
            file_value: Value::Mapping(Mapping::new()),
            env_paths: Vec::new(),
            removed: HashMap::new(),
            failed: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn run(
        mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        if let Some(file) = self.file {
            match self.read_file(file) {
                Ok(value) => self.file_value = value,
                Err(problem) => return Err(ConfigErrors(vec![problem])),
            }
        }
        let mut tree = self.file_value.clone();
        self.apply_env(&mut tree, env);
        let Some(mut config) = self.deserialize(tree) else {
            return Err(ConfigErrors(self.problems));
        };
        self.resolve_allowed_roots(&mut config);
        for finding in validate(&config) {
            let path = self.original_path(&finding.path);
            let mut candidates = vec![path.clone()];
            candidates.extend(finding.related);
            // A rule over a value that was already reported as unreadable
            // would only talk about the default that replaced it.
            let involves_failed = candidates
                .iter()
                .any(|c| self.failed.iter().any(|f| c.starts_with(f)));
            if involves_failed {
                continue;
            }
            let source = self.source_of_any(&candidates);
            self.problems.push(ConfigProblem {
                path: keypath::render(&path),
                message: finding.message,
                source,
            });
        }
        if self.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(self.problems))
        }
    }

    /// Reads and parses the file; a failure is the one problem reported.
    fn read_file(&self, file: &Path) -> Result<Value, ConfigProblem> {
        let problem = |message: String| ConfigProblem {
            path: String::new(),
            message,
            source: ProblemSource::File(file.to_path_buf()),
        };
        let full = self.working_dir.join(file);
        let text = std::fs::read_to_string(&full)
            .map_err(|err| problem(format!("cannot read the configuration file: {err}")))?;
        let mut value: Value = serde_yaml::from_str(&text).map_err(|err| {
            let message = match err.location() {
                Some(at) => {
                    // The parser's message repeats the location in its own
                    // words; say it once, up front.
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
            problem(message)
        })?;
        if value.is_null() {
            // An empty file, or one with only comments.
            value = Value::Mapping(Mapping::new());
        }
        if !value.is_mapping() {
            return Err(problem(format!(
                "the configuration must be a mapping of keys to values, found {}",
                kind_name(&value)
            )));
        }
        value
            .apply_merge()
            .map_err(|err| problem(format!("invalid YAML merge key (<<): {err}")))?;
        keypath::stringify_keys(&mut value);
        keypath::null_sections_to_empty(&mut value, &self.schema);
        for (path, schema) in Config::optional_sections() {
            if let Some(section) = keypath::get_mut(&mut value, &dotted(path)) {
                keypath::null_sections_to_empty(section, &schema);
            }
        }
        Ok(value)
    }

    /// Applies every `VEGA_*` variable to `tree`, recording problems with
    /// variables that cannot be applied.
    fn apply_env(&mut self, tree: &mut Value, env: impl IntoIterator<Item = (String, String)>) {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !IGNORED_ENV_VARS.contains(&name.as_str())
            })
            .collect();
        // Sorted, so that problems come out in the same order every time.
        vars.sort();
        let mut set_by: HashMap<Vec<String>, String> = HashMap::new();
        for (name, raw) in vars {
            let env_problem = |path: String, message: String| ConfigProblem {
                path,
                message,
                source: ProblemSource::Env(name.clone()),
            };
            let Some(path) = env_key_path(&name) else {
                self.problems.push(env_problem(
                    String::new(),
                    format!(
                        "\"{name}\" does not name a configuration key (expected \
                         {ENV_PREFIX}SECTION{ENV_LEVEL_SEPARATOR}KEY with letters, digits and single underscores)"
                    ),
                ));
                continue;
            };
            let dotted_path = path.join(".");
            if let Some(other) = set_by.get(&path) {
                self.problems.push(env_problem(
                    dotted_path,
                    format!("is also set by {other}; set it only once"),
                ));
                continue;
            }
            if let Some(leaf) = self.leaf_prefix(&path) {
                self.problems.push(env_problem(
                    dotted_path,
                    format!("unknown key: {leaf} is a value, not a section"),
                ));
                continue;
            }
            let value = match env_value(self.kind_of(&path), &raw) {
                Ok(value) => value,
                Err(message) => {
                    self.problems.push(env_problem(dotted_path, message));
                    continue;
                }
            };
            match keypath::set(tree, &path, value) {
                SetOutcome::Stored { created } => {
                    let key_path: KeyPath = path.iter().map(|k| Key::Field(k.clone())).collect();
                    for section in created {
                        self.env_paths.push((section, name.clone()));
                    }
                    self.env_paths.push((key_path, name.clone()));
                    set_by.insert(path, name.clone());
                }
                SetOutcome::Blocked { at } => {
                    self.problems.push(env_problem(
                        dotted_path,
                        format!(
                            "cannot be applied: {} in the configuration file is not a section",
                            keypath::render(&at)
                        ),
                    ));
                }
            }
        }
    }

    /// The longest proper prefix of `path` that is a plain value in the
    /// schema, rendered; `None` if every prefix is a section or unknown.
    fn leaf_prefix(&self, path: &[String]) -> Option<String> {
        let mut node = &self.env_schema;
        for (depth, name) in path.iter().enumerate().take(path.len().saturating_sub(1)) {
            node = node.as_mapping()?.get(name.as_str())?;
            if !node.is_mapping() {
                return Some(path[..=depth].join("."));
            }
        }
        None
    }

    fn kind_of(&self, path: &[String]) -> KeyKind {
        let mut node = &self.env_schema;
        for name in path {
            match node.as_mapping().and_then(|m| m.get(name.as_str())) {
                Some(child) => node = child,
                None => return KeyKind::Unknown,
            }
        }
        match node {
            Value::Null | Value::String(_) => KeyKind::Text,
            Value::Bool(_) | Value::Number(_) => KeyKind::Scalar,
            Value::Sequence(_) => KeyKind::List,
            Value::Mapping(_) => KeyKind::Section,
            Value::Tagged(_) => KeyKind::Unknown,
        }
    }

    /// Deserializes `tree`, removing each offending key after recording it,
    /// until the rest deserializes. `None` if it never does.
    fn deserialize(&mut self, mut tree: Value) -> Option<Config> {
        for _ in 0..MAX_DESERIALIZE_ROUNDS {
            let err = match serde_path_to_error::deserialize::<_, Config>(&tree) {
                Ok(config) => return Some(config),
                Err(err) => err,
            };
            let current = to_key_path(err.path());
            let message = err.inner().to_string();
            let original = self.original_path(current.as_deref().unwrap_or_default());
            let source = self.source_of(&original);
            self.problems.push(ConfigProblem {
                path: keypath::render(&original),
                message,
                source,
            });
            self.failed.push(original.clone());
            let removed = current
                .as_deref()
                .is_some_and(|path| keypath::remove(&mut tree, path));
            if !removed {
                // Cannot locate the value; nothing more can be learned.
                return None;
            }
            if let Some((Key::Index(index), seq)) = original.split_last() {
                let list = self.removed.entry(seq.to_vec()).or_default();
                list.push(*index);
                list.sort_unstable();
            }
        }
        self.problems.push(ConfigProblem {
            path: String::new(),
            message: format!("too many problems; stopped after {MAX_DESERIALIZE_ROUNDS}"),
            source: self.default_source(),
        });
        None
    }

    /// Maps sequence indices of the current tree (after removals) back to
    /// those the user wrote.
    fn original_path(&self, current: &[Key]) -> KeyPath {
        let mut out: KeyPath = Vec::with_capacity(current.len());
        for key in current {
            match key {
                Key::Index(index) => {
                    let mut original = *index;
                    if let Some(removed) = self.removed.get(&out) {
                        for r in removed {
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

    /// Makes relative `connectors.file.allowed_roots` absolute.
    fn resolve_allowed_roots(&self, config: &mut Config) {
        let list_path = dotted("connectors.file.allowed_roots");
        let base = match (self.explicit_source(&list_path), self.file) {
            (Some(ProblemSource::File(_)), Some(file)) => {
                let full = self.working_dir.join(file);
                full.parent().map(Path::to_path_buf).unwrap_or_default()
            }
            _ => self.working_dir.to_path_buf(),
        };
        for root in &mut config.connectors.file.allowed_roots {
            if root.is_relative() && !root.as_os_str().is_empty() {
                *root = base.join(&*root).components().collect::<PathBuf>();
            }
        }
    }

    /// Where the value at `path` came from: the most specific environment
    /// variable that set it or a section above it, else the file if it has
    /// the key, else the defaults.
    fn source_of(&self, path: &[Key]) -> ProblemSource {
        self.explicit_source(path)
            .unwrap_or_else(|| self.default_source())
    }

    /// The source of the first of `paths` that was set explicitly.
    fn source_of_any(&self, paths: &[KeyPath]) -> ProblemSource {
        paths
            .iter()
            .find_map(|p| self.explicit_source(p))
            .unwrap_or_else(|| self.default_source())
    }

    fn explicit_source(&self, path: &[Key]) -> Option<ProblemSource> {
        let by_env = self
            .env_paths
            .iter()
            .filter(|(env_path, _)| path.starts_with(env_path))
            .max_by_key(|(env_path, _)| env_path.len());
        if let Some((_, var)) = by_env {
            return Some(ProblemSource::Env(var.clone()));
        }
        let file = self.file?;
        keypath::get(&self.file_value, path).map(|_| ProblemSource::File(file.to_path_buf()))
    }

    fn default_source(&self) -> ProblemSource {
        match self.file {
            Some(file) => ProblemSource::File(file.to_path_buf()),
            None => ProblemSource::Default,
        }
    }
}

/// `VEGA_QUERY__POOL_SIZE` → `["query", "pool_size"]`; `None` if the rest
/// of the name is not a well-formed key path.
fn env_key_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let path: Vec<String> = rest
        .split(ENV_LEVEL_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    let well_formed = path.iter().all(|key| {
        !key.is_empty()
            && !key.starts_with('_')
            && !key.ends_with('_')
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    well_formed.then_some(path)
}

/// Reads an environment value as the kind of YAML its key expects.
fn env_value(kind: KeyKind, raw: &str) -> Result<Value, String> {
    match kind {
        KeyKind::Text => Ok(Value::String(raw.to_string())),
        KeyKind::Scalar | KeyKind::Unknown => Ok(match serde_yaml::from_str::<Value>(raw) {
            Ok(value @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
                value
            }
            _ => Value::String(raw.to_string()),
        }),
        KeyKind::Section => {
            Ok(serde_yaml::from_str::<Value>(raw)
                .unwrap_or_else(|_| Value::String(raw.to_string())))
        }
        KeyKind::List => env_list(raw),
    }
}

/// A list from `a,b,c` or from a YAML flow sequence `[a, b, c]`. Empty
/// items are skipped, so an empty value is an empty list.
fn env_list(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('[') {
        return match serde_yaml::from_str::<Value>(trimmed) {
            Ok(value @ Value::Sequence(_)) => Ok(value),
            Ok(_) | Err(_) => Err(format!(
                "invalid list \"{raw}\": write a YAML flow sequence such as [a, b] \
                 or comma-separated items"
            )),
        };
    }
    Ok(Value::Sequence(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_string()))
            .collect(),
    ))
}

/// Our key path for a `serde_path_to_error` path; `None` if it has a step
/// that cannot be located.
fn to_key_path(path: &serde_path_to_error::Path) -> Option<KeyPath> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(Key::Field(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Key::Field(variant.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Key::Index(*index)),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_name_maps_to_lowercase_path() {
        assert_eq!(
            env_key_path("VEGA_QUERY__POOL_SIZE"),
            Some(vec!["query".to_string(), "pool_size".to_string()])
        );
        assert_eq!(
            env_key_path("VEGA_DATA_DIR"),
            Some(vec!["data_dir".to_string()])
        );
    }

    #[test]
    fn env_name_with_empty_level_is_malformed() {
        assert_eq!(env_key_path("VEGA_"), None);
        assert_eq!(env_key_path("VEGA_API____LISTEN"), None);
        assert_eq!(env_key_path("VEGA_API__"), None);
        assert_eq!(env_key_path("VEGA_API___LISTEN"), None);
    }

    #[test]
    fn env_list_splits_on_commas_and_trims() {
        assert_eq!(
            env_list(" /a , /b,,").unwrap(),
            serde_yaml::from_str::<Value>("[/a, /b]").unwrap()
        );
        assert_eq!(env_list("").unwrap(), Value::Sequence(Vec::new()));
    }

    #[test]
    fn env_list_reads_flow_sequence() {
        assert_eq!(
            env_list("[/a, '/b,c']").unwrap(),
            serde_yaml::from_str::<Value>("[/a, '/b,c']").unwrap()
        );
    }

    #[test]
    fn env_list_rejects_broken_flow_sequence() {
        assert!(env_list("[/a, /b").is_err());
    }

    #[test]
    fn env_scalar_reads_numbers_and_keeps_words() {
        assert_eq!(env_value(KeyKind::Scalar, "8").unwrap(), Value::from(8));
        assert_eq!(
            env_value(KeyKind::Scalar, "eight").unwrap(),
            Value::String("eight".into())
        );
    }

    #[test]
    fn env_text_keeps_value_verbatim() {
        assert_eq!(
            env_value(KeyKind::Text, "true").unwrap(),
            Value::String("true".into())
        );
        assert_eq!(
            env_value(KeyKind::Text, "a: b").unwrap(),
            Value::String("a: b".into())
        );
    }
}

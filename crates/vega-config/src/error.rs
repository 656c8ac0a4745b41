//! Configuration problems: each names the key path, what is wrong, and
//! where the offending value came from. Loading reports all of them at once.

use std::fmt;
use std::path::PathBuf;

use vega_core::{Classify, ErrorClass};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemSource {
    /// The configuration file at this path (as given).
    File(PathBuf),
    /// The named environment variable.
    Env(String),
    /// The built-in defaults (only for rules that combine several keys, when
    /// none of them was set).
    Default,
}

impl fmt::Display for ProblemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemSource::File(path) => write!(f, "{}", path.display()),
            ProblemSource::Env(var) => write!(f, "environment variable {var}"),
            ProblemSource::Default => f.write_str("defaults"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path such as `query.pool_size` or
    /// `connectors.file.allowed_roots[1]`; empty for problems with the file
    /// as a whole (unreadable, malformed YAML).
    pub path: String,
    /// What is wrong, in words meant for the person editing the file.
    pub message: String,
    /// Where the offending value came from.
    pub source: ProblemSource,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{} (from {})", self.message, self.source)
    }
}

/// A problem at a key path, without where the value came from: what the
/// rules of one block report when the block is checked on its own, as
/// [`crate::LoadBalancerConfig::validate`] does for a `load_balancer:`
/// block read outside a whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// Key path such as `load_balancer.backends[1].weight`; empty for
    /// problems with the document as a whole (malformed YAML).
    pub path: String,
    /// What is wrong, in words meant for the person editing the file.
    pub message: String,
}

impl KeyProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        KeyProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration; never empty when
/// returned by the loader. Displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ConfigProblem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.0
    }

    /// The problem reported for exactly this key path, if any.
    pub fn at(&self, path: &str) -> Option<&ConfigProblem> {
        self.0.iter().find(|p| p.path == path)
    }
}

impl Classify for ConfigErrors {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_one_problem_per_line() {
        let errors = ConfigErrors(vec![
            ConfigProblem {
                path: "query.pool_size".into(),
                message: "must be between 1 and 256, is 0".into(),
                source: ProblemSource::File(PathBuf::from("/etc/vega.yaml")),
            },
            ConfigProblem {
                path: "api.listen".into(),
                message: "invalid socket address syntax".into(),
                source: ProblemSource::Env("VEGA_API__LISTEN".into()),
            },
        ]);
        assert_eq!(
            errors.to_string(),
            "query.pool_size: must be between 1 and 256, is 0 (from /etc/vega.yaml)\n\
             api.listen: invalid socket address syntax (from environment variable VEGA_API__LISTEN)"
        );
    }

    #[test]
    fn problem_without_path_omits_the_prefix() {
        let p = ConfigProblem {
            path: String::new(),
            message: "invalid YAML".into(),
            source: ProblemSource::File(PathBuf::from("vega.yaml")),
        };
        assert_eq!(p.to_string(), "invalid YAML (from vega.yaml)");
    }
}

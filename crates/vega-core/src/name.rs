//! Asset names: `namespace.name`, each part a lower-case SQL identifier, so
//! that an asset can be addressed in SQL without quoting.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {part} '{value}': {reason}")]
pub struct NameError {
    pub part: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The longest namespace or name part accepted.
pub const MAX_PART_LEN: usize = 63;

/// Words that would need quoting as a schema or table name: DuckDB's
/// reserved keywords and those it reserves for types and functions (e.g.
/// `full`, `left`, `join`), plus its built-in schema and catalog names.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "anti",
    "any",
    "array",
    "as",
    "asc",
    "asof",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "default",
    "deferrable",
    "desc",
    "describe",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "generated",
    "glob",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "information_schema",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "main",
    "map",
    "memory",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "pg_catalog",
    "pivot",
    "pivot_longer",
    "pivot_wider",
    "placing",
    "positional",
    "primary",
    "qualify",
    "references",
    "returning",
    "right",
    "schema",
    "select",
    "semi",
    "show",
    "similar",
    "some",
    "struct",
    "summarize",
    "symmetric",
    "system",
    "table",
    "tablesample",
    "temp",
    "then",
    "to",
    "trailing",
    "true",
    "try_cast",
    "union",
    "unique",
    "unpivot",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// Checks one part of an asset name.
pub fn validate_part(part: &'static str, value: &str) -> Result<(), NameError> {
    let err = |reason| NameError {
        part,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > MAX_PART_LEN {
        return Err(err("must be at most 63 characters"));
    }
    let mut chars = value.chars();
    let first = chars.next().unwrap_or('_');
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(err("must start with a lower-case letter or '_'"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(err("may contain only a-z, 0-9 and '_'"));
    }
    if RESERVED.contains(&value) {
        return Err(err("is a reserved word"));
    }
    Ok(())
}

/// A validated `namespace.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AssetName {
    pub namespace: String,
    pub name: String,
}

impl AssetName {
    pub fn new(namespace: &str, name: &str) -> Result<Self, NameError> {
        validate_part("namespace", namespace)?;
        validate_part("name", name)?;
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `namespace.name`.
    pub fn parse(qualified: &str) -> Result<Self, NameError> {
        match qualified.split_once('.') {
            Some((ns, name)) => Self::new(ns, name),
            None => Err(NameError {
                part: "asset name",
                value: qualified.to_string(),
                reason: "must be 'namespace.name'",
            }),
        }
    }
}

impl fmt::Display for AssetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_that_need_quoting_are_refused() {
        for word in ["full", "left", "join", "limit", "qualify", "pivot"] {
            assert!(validate_part("namespace", word).is_err(), "{word}");
        }
        assert!(validate_part("namespace", "fuller").is_ok());
    }

    #[test]
    fn accepts_sql_identifiers() {
        let n = AssetName::parse("plant1.telemetry_raw").unwrap();
        assert_eq!(n.to_string(), "plant1.telemetry_raw");
    }

    #[test]
    fn refuses_what_would_need_quoting() {
        for bad in [
            "Sales.orders",
            "sales.",
            ".orders",
            "sales.or-ders",
            "1x.y",
            "main.t",
            "a.b.c",
        ] {
            assert!(AssetName::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(AssetName::parse("sales").is_err());
    }
}

//! The SQL sandbox's first layer: user SQL is parsed by DuckDB's own parser
//! (`json_serialize_sql`, which only serializes `SELECT` statements) and the
//! resulting tree is checked before anything runs.
//!
//! Rules: exactly one statement; a `SELECT` (anything else — DDL, DML,
//! `COPY`, `ATTACH`, `SET`, `PRAGMA`, `INSTALL`, `LOAD`, `EXPORT` — is not
//! serializable and is refused); tables are assets addressed as
//! `namespace.name` or names of the query's own CTEs; table functions are
//! limited to a short list that reads no files.
//!
//! The second layer is the database itself (see `engine`): external access is
//! off except for the segment directory, extensions cannot be installed or
//! loaded, and the configuration is locked. Either layer alone refuses file
//! and network access; together they give clear messages and a hard stop.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::QueryError;

/// Table functions user SQL may call: they compute rows and read nothing.
pub const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest"];

/// Schemas that hold DuckDB's own metadata; never addressable by users.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "pg_catalog", "main", "temp", "system"];

/// What a checked query reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedQuery {
    /// Every `namespace.name` the query references, sorted.
    pub assets: Vec<String>,
}

/// Checks the output of `json_serialize_sql(sql)`.
///
/// `is_asset` says whether `namespace.name` is a registered asset.
pub fn check_serialized(
    serialized: &str,
    is_asset: &dyn Fn(&str, &str) -> bool,
) -> Result<CheckedQuery, QueryError> {
    analyze(serialized)?.check(is_asset)
}

/// What one statement references, read from its parse tree. It does not
/// depend on which assets exist, so it can be cached per SQL text and
/// checked again against the current assets on every run.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    tables: Vec<TableRef>,
    table_functions: BTreeSet<String>,
    ctes: BTreeSet<String>,
    /// Whether the statement calls a function whose answer changes
    /// without the data changing (the clock, random numbers).
    volatile: bool,
    /// sha256 (hex) of the parse tree without source positions: the same
    /// for statements that differ only in spacing, comments or keyword case.
    normalized: String,
}

/// Functions whose result depends on when or how often they are called,
/// not only on the data: a statement calling one is never answered from a
/// result cache.
pub const VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "get_current_timestamp",
    "current_localtimestamp",
    "localtimestamp",
    "current_date",
    "current_time",
    "get_current_time",
    "current_localtime",
    "localtime",
    "today",
    "transaction_timestamp",
    "random",
    "setseed",
    "uuid",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "nextval",
    "currval",
];

/// Reads the output of `json_serialize_sql(sql)`: refuses parse errors,
/// anything but exactly one `SELECT`, and returns what the statement reads.
pub fn analyze(serialized: &str) -> Result<Analysis, QueryError> {
    let tree: Value = serde_json::from_str(serialized)
        .map_err(|e| QueryError::Internal(format!("parser output is not JSON: {e}")))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        return Err(parse_failure(&tree));
    }
    let statements = tree
        .get("statements")
        .and_then(Value::as_array)
        .ok_or_else(|| QueryError::Internal("parser output has no statements".into()))?;
    match statements.len() {
        0 => {
            return Err(QueryError::BadSql {
                message: "the query is empty".into(),
                position: None,
            })
        }
        1 => {}
        n => {
            return Err(QueryError::BadSql {
                message: format!("exactly one statement is allowed, found {n}"),
                position: None,
            })
        }
    }
    let mut analysis = Analysis::default();
    collect(&statements[0], &mut analysis);
    let mut statement = statements[0].clone();
    strip_positions(&mut statement);
    analysis.normalized = hex_sha256(statement.to_string().as_bytes());
    Ok(analysis)
}

/// Removes `query_location` (character offsets) everywhere in a parse tree.
fn strip_positions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("query_location");
            map.values_mut().for_each(strip_positions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_positions),
        _ => {}
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Analysis {
    /// Whether the statement calls a volatile function (see
    /// [`VOLATILE_FUNCTIONS`]).
    pub fn is_volatile(&self) -> bool {
        self.volatile
    }

    /// The statement's normalized form, hashed (see the field's docs).
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The rules for an asset's SQL assertion: the same as for user SQL,
    /// but the only table is `asset` (the version being checked) and the
    /// assertion's own CTEs.
    pub fn check_assertion(&self) -> Result<(), QueryError> {
        self.check_table_functions()?;
        for table in &self.tables {
            let plain = table.catalog.is_empty() && table.schema.is_empty();
            if plain && (table.name == "asset" || self.ctes.contains(&table.name)) {
                continue;
            }
            return Err(QueryError::BadSql {
                message: format!(
                    "an assertion reads only the table 'asset' (the version being checked), not '{}'",
                    [table.catalog.as_str(), table.schema.as_str(), table.name.as_str()]
                        .iter()
                        .filter(|p| !p.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(".")
                ),
                position: None,
            });
        }
        Ok(())
    }

    fn check_table_functions(&self) -> Result<(), QueryError> {
        for function in &self.table_functions {
            if !ALLOWED_TABLE_FUNCTIONS.contains(&function.as_str()) {
                return Err(QueryError::Forbidden(format!(
                    "table function '{function}' is not allowed: user SQL reads assets by name \
                     (namespace.name); allowed table functions are {}",
                    ALLOWED_TABLE_FUNCTIONS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Applies the sandbox rules against the assets that exist now.
    pub fn check(&self, is_asset: &dyn Fn(&str, &str) -> bool) -> Result<CheckedQuery, QueryError> {
        self.check_table_functions()?;

        let mut assets = BTreeSet::new();
        for table in &self.tables {
            if !table.catalog.is_empty() {
                return Err(QueryError::BadSql {
                    message: format!(
                        "'{}.{}.{}': address assets as namespace.name",
                        table.catalog, table.schema, table.name
                    ),
                    position: None,
                });
            }
            if table.schema.is_empty() {
                if self.ctes.contains(&table.name) {
                    continue;
                }
                return Err(QueryError::UnknownAsset(format!(
                    "'{}' is not an asset: address assets as namespace.name",
                    table.name
                )));
            }
            if SYSTEM_SCHEMAS.contains(&table.schema.to_ascii_lowercase().as_str()) {
                return Err(QueryError::Forbidden(format!(
                    "'{}.{}' is internal to the engine and not queryable",
                    table.schema, table.name
                )));
            }
            let (ns, name) = (
                table.schema.to_ascii_lowercase(),
                table.name.to_ascii_lowercase(),
            );
            if !is_asset(&ns, &name) {
                return Err(QueryError::UnknownAsset(format!(
                    "asset '{ns}.{name}' does not exist"
                )));
            }
            assets.insert(format!("{ns}.{name}"));
        }
        Ok(CheckedQuery {
            assets: assets.into_iter().collect(),
        })
    }
}

fn parse_failure(tree: &Value) -> QueryError {
    let message = tree
        .get("error_message")
        .and_then(Value::as_str)
        .unwrap_or("the query could not be parsed")
        .to_string();
    let error_type = tree.get("error_type").and_then(Value::as_str).unwrap_or("");
    if message.contains("Only SELECT statements") || error_type == "not implemented" {
        return QueryError::Forbidden(
            "only read-only SELECT queries are allowed (no DDL, DML, COPY, ATTACH, SET, PRAGMA, \
             INSTALL, LOAD or EXPORT)"
                .into(),
        );
    }
    let position = tree
        .get("position")
        .and_then(|p| {
            p.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| p.as_u64())
        })
        .map(|p| p as usize);
    QueryError::BadSql { message, position }
}

#[derive(Debug, Clone)]
struct TableRef {
    catalog: String,
    schema: String,
    name: String,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Walks the whole tree: table references can hide in subqueries, CTEs,
/// set operations, joins and expressions.
fn collect(v: &Value, refs: &mut Analysis) {
    match v {
        Value::Object(map) => {
            match map.get("type").and_then(Value::as_str) {
                Some("BASE_TABLE") => refs.tables.push(TableRef {
                    catalog: text(v, "catalog_name"),
                    schema: text(v, "schema_name"),
                    name: text(v, "table_name"),
                }),
                Some("TABLE_FUNCTION") => {
                    let name = v
                        .get("function")
                        .map(|f| text(f, "function_name"))
                        .unwrap_or_default();
                    refs.table_functions.insert(name.to_ascii_lowercase());
                }
                Some("FUNCTION") => {
                    let name = text(v, "function_name").to_ascii_lowercase();
                    if VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                        refs.volatile = true;
                    }
                }
                // `current_timestamp` and friends parse as a bare column
                // name that binds to the function. A real column of that
                // name only costs the cache.
                Some("COLUMN_REF") => {
                    if let Some([name]) = v
                        .get("column_names")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                    {
                        let name = name.as_str().unwrap_or("").to_ascii_lowercase();
                        if VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                            refs.volatile = true;
                        }
                    }
                }
                _ => {}
            }
            if let Some(entries) = map
                .get("cte_map")
                .and_then(|m| m.get("map"))
                .and_then(Value::as_array)
            {
                for entry in entries {
                    if let Some(key) = entry.get("key").and_then(Value::as_str) {
                        refs.ctes.insert(key.to_string());
                    }
                }
            }
            for child in map.values() {
                collect(child, refs);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, refs);
            }
        }
        _ => {}
    }
}

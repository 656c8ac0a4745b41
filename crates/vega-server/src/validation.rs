//! The data checks of assets (not NULL, unique, freshness, SQL assertions),
//! run by the query engine over a version's segment files. Sync calls this
//! through `vega_sync::validate::Validator` before it publishes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use vega_core::{Asset, Clock, Manifest};
use vega_query::{format, sql_ident, sql_string, QueryEngine, QueryOutput};
use vega_storage::SegmentStore;
use vega_sync::validate::{RuleResult, Validator};
use vega_sync::SyncError;

/// How long one check may run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// Offending rows shown per failed check.
const EXAMPLES: usize = 3;

/// Runs checks with the embedded engine.
pub struct EngineValidator {
    pub engine: Arc<QueryEngine>,
    pub store: Arc<SegmentStore>,
    pub clock: Arc<dyn Clock>,
}

fn failed(e: impl std::fmt::Display) -> SyncError {
    SyncError::CheckFailed(e.to_string())
}

/// Rows of a result as JSON objects (column → value).
fn objects(out: &QueryOutput) -> Result<Vec<Value>, SyncError> {
    let rows = format::json_rows(out).map_err(|e| SyncError::Internal(e.to_string()))?;
    let names: Vec<String> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let cells = row.as_array().cloned().unwrap_or_default();
            Value::Object(names.iter().cloned().zip(cells).collect())
        })
        .collect())
}

fn first_number(out: &QueryOutput) -> Result<Option<f64>, SyncError> {
    let rows = format::json_rows(out).map_err(|e| SyncError::Internal(e.to_string()))?;
    Ok(rows.first().and_then(|r| r.get(0)).and_then(Value::as_f64))
}

impl EngineValidator {
    async fn run(&self, sql: String, max_rows: usize) -> Result<QueryOutput, SyncError> {
        self.engine
            .query_internal(sql, max_rows, CHECK_TIMEOUT)
            .await
            .map_err(failed)
    }

    fn relation(&self, manifest: &Manifest) -> Result<String, SyncError> {
        let mut files = Vec::new();
        for segment in &manifest.segments {
            let path = self.store.absolute(&segment.path)?;
            files.push(sql_string(&path.to_string_lossy()));
        }
        Ok(format!("read_parquet([{}])", files.join(", ")))
    }
}

#[async_trait]
impl Validator for EngineValidator {
    async fn validate(
        &self,
        asset: &Asset,
        manifest: &Manifest,
    ) -> Result<Vec<RuleResult>, SyncError> {
        let rel = self.relation(manifest)?;
        let checks = &asset.checks;
        let mut results = Vec::new();

        for column in &checks.not_null {
            let col = sql_ident(column);
            let rule = format!("not_null({column})");
            let count = first_number(
                &self
                    .run(format!("SELECT count(*) FROM {rel} WHERE {col} IS NULL"), 1)
                    .await?,
            )?
            .unwrap_or(0.0) as u64;
            let examples = if count > 0 {
                objects(
                    &self
                        .run(
                            format!("SELECT * FROM {rel} WHERE {col} IS NULL LIMIT {EXAMPLES}"),
                            EXAMPLES,
                        )
                        .await?,
                )?
            } else {
                Vec::new()
            };
            results.push(RuleResult {
                rule,
                passed: count == 0,
                detail: format!("{count} rows have a NULL {column}"),
                examples,
            });
        }

        for columns in &checks.unique {
            let cols: Vec<String> = columns.iter().map(|c| sql_ident(c)).collect();
            let list = cols.join(", ");
            let rule = format!("unique({})", columns.join(", "));
            let dupes = self
                .run(
                    format!(
                        "SELECT {list}, count(*) AS occurrences FROM {rel} GROUP BY {list} HAVING count(*) > 1 ORDER BY occurrences DESC LIMIT {EXAMPLES}"
                    ),
                    EXAMPLES,
                )
                .await?;
            let examples = objects(&dupes)?;
            results.push(RuleResult {
                rule,
                passed: examples.is_empty(),
                detail: if examples.is_empty() {
                    "no duplicate".into()
                } else {
                    "some values occur more than once".into()
                },
                examples,
            });
        }

        if let Some(fresh) = &checks.freshness {
            let rule = format!("freshness({}, {})", fresh.column, fresh.max_age);
            let max_age: vega_config::HumanDuration = fresh
                .max_age
                .parse()
                .map_err(|e| SyncError::CheckFailed(format!("{rule}: {e}")))?;
            let max_age: Duration = max_age.into();
            let newest = first_number(
                &self
                    .run(
                        format!(
                            "SELECT epoch(max({})::TIMESTAMP) FROM {rel}",
                            sql_ident(&fresh.column)
                        ),
                        1,
                    )
                    .await?,
            )?;
            let now = self.clock.now().timestamp_millis() as f64 / 1000.0;
            let (passed, detail) = match newest {
                None => (false, format!("{} has no value", fresh.column)),
                Some(t) => {
                    let age = (now - t).max(0.0);
                    (
                        age <= max_age.as_secs_f64(),
                        format!(
                            "the newest {} is {:.0} s old; at most {} allowed",
                            fresh.column, age, fresh.max_age
                        ),
                    )
                }
            };
            results.push(RuleResult {
                rule,
                passed,
                detail,
                examples: Vec::new(),
            });
        }

        for assertion in &checks.sql {
            let rule = format!("sql({assertion})");
            let out = self
                .run(
                    format!("WITH asset AS (SELECT * FROM {rel}) SELECT * FROM ({assertion}) LIMIT {EXAMPLES}"),
                    EXAMPLES,
                )
                .await?;
            let examples = objects(&out)?;
            results.push(RuleResult {
                rule,
                passed: examples.is_empty(),
                detail: if examples.is_empty() {
                    "no row breaks the assertion".into()
                } else {
                    "rows break the assertion".into()
                },
                examples,
            });
        }
        Ok(results)
    }
}

//! Validation of a version's data against its asset's checks. Checks that
//! need the rows (not NULL, unique, freshness, SQL assertions) run in the
//! query engine, which sync does not know: the server passes in a
//! [`Validator`]. Row-count checks need only the manifest and run here.

use async_trait::async_trait;
use serde::Serialize;
use vega_core::{Asset, Manifest};

use crate::error::SyncError;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    /// The check as written, e.g. `unique(id)` or `not_null(amount)`.
    pub rule: String,
    pub passed: bool,
    /// What was found, e.g. "3 rows have a NULL amount".
    pub detail: String,
    /// A few offending rows (column name → value), when there are any.
    pub examples: Vec<serde_json::Value>,
}

/// The outcome of every check of an asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ValidationReport {
    pub passed: bool,
    pub rules: Vec<RuleResult>,
}

impl ValidationReport {
    /// The first failed check as one line, for a job's error.
    pub fn failure_summary(&self) -> Option<String> {
        self.rules.iter().find(|r| !r.passed).map(|r| {
            let example = r
                .examples
                .first()
                .map(|e| format!("; e.g. {e}"))
                .unwrap_or_default();
            format!("{}: {}{example}", r.rule, r.detail)
        })
    }
}

/// Runs the checks that need the data.
#[async_trait]
pub trait Validator: Send + Sync {
    async fn validate(
        &self,
        asset: &Asset,
        manifest: &Manifest,
    ) -> Result<Vec<RuleResult>, SyncError>;
}

/// The row-count checks, from the manifest alone.
pub fn row_count_rules(asset: &Asset, manifest: &Manifest) -> Vec<RuleResult> {
    let rows = manifest.rows();
    let mut out = Vec::new();
    if let Some(min) = asset.checks.min_rows {
        out.push(RuleResult {
            rule: format!("min_rows({min})"),
            passed: rows >= min,
            detail: format!("the version has {rows} rows, at least {min} are required"),
            examples: Vec::new(),
        });
    }
    if let Some(max) = asset.checks.max_rows {
        out.push(RuleResult {
            rule: format!("max_rows({max})"),
            passed: rows <= max,
            detail: format!("the version has {rows} rows, at most {max} are allowed"),
            examples: Vec::new(),
        });
    }
    out
}

/// Every check of `asset` on `manifest`.
pub async fn run_checks(
    asset: &Asset,
    manifest: &Manifest,
    validator: Option<&dyn Validator>,
) -> Result<ValidationReport, SyncError> {
    let mut rules = row_count_rules(asset, manifest);
    if asset.checks.needs_data() {
        match validator {
            Some(v) => rules.extend(v.validate(asset, manifest).await?),
            None => {
                return Err(SyncError::Internal(
                    "the asset has data checks but no validator is configured".into(),
                ))
            }
        }
    }
    Ok(ValidationReport {
        passed: rules.iter().all(|r| r.passed),
        rules,
    })
}

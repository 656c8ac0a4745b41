//! [`TrinoResult`]: what one statement returned — its columns and JSON
//! rows, the final statistics, whether the rows were cut at the row limit,
//! and the session changes Trino asked the client to make — and how pages
//! are folded into it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow_schema::Schema;
use serde_json::Value;

use crate::error::TrinoError;
use crate::protocol::{Column, QueryResults};
use crate::types;

/// The statistics of the last answer of a statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// `FINISHED`, or the state the query was in when reading stopped.
    pub state: String,
    /// Trino's elapsed time, or the client's when Trino gave none.
    pub elapsed: Duration,
    pub queued: Option<Duration>,
    pub cpu: Option<Duration>,
    pub processed_rows: Option<u64>,
    pub processed_bytes: Option<u64>,
}

/// Session changes a statement (`SET SESSION`, `RESET SESSION`, `USE`)
/// asked for, from the `X-Trino-Set-*` and `X-Trino-Clear-Session` response
/// headers. The client does not apply them: the caller decides whether the
/// next statements run with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChanges {
    /// Properties to set, decoded.
    pub set: BTreeMap<String, String>,
    /// Properties to clear.
    pub cleared: BTreeSet<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

impl SessionChanges {
    pub fn is_empty(&self) -> bool {
        self == &SessionChanges::default()
    }

    /// Applies later changes over these.
    pub(crate) fn merge(&mut self, later: SessionChanges) {
        for (name, value) in later.set {
            self.cleared.remove(&name);
            self.set.insert(name, value);
        }
        for name in later.cleared {
            self.set.remove(&name);
            self.cleared.insert(name);
        }
        if later.catalog.is_some() {
            self.catalog = later.catalog;
        }
        if later.schema.is_some() {
            self.schema = later.schema;
        }
    }
}

/// The outcome of a statement that did not fail.
#[derive(Debug, Clone, Default)]
pub struct TrinoResult {
    pub query_id: String,
    /// The query's page in Trino's web UI.
    pub info_uri: Option<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub stats: QueryStats,
    /// Whether rows past the row limit were dropped (and the query
    /// cancelled).
    pub truncated: bool,
    pub session: SessionChanges,
    /// `INSERT`, `CREATE TABLE`, `SET SESSION`, … for statements that are
    /// not queries.
    pub update_type: Option<String>,
    pub update_count: Option<u64>,
    pub warnings: Vec<String>,
}

impl TrinoResult {
    /// The Arrow schema of the columns (see [`crate::types`]).
    pub fn arrow_schema(&self) -> Schema {
        types::arrow_schema(&self.columns)
    }

    /// The rows as one Arrow record batch.
    pub fn to_arrow(&self) -> Result<RecordBatch, TrinoError> {
        types::to_record_batch(&self.columns, &self.rows)
    }

    /// Folds one answer in; whether the row limit was passed (the rows past
    /// it are dropped).
    pub(crate) fn absorb(
        &mut self,
        page: QueryResults,
        max_rows: usize,
    ) -> Result<bool, TrinoError> {
        if self.query_id.is_empty() {
            self.query_id = page.id;
        }
        if self.info_uri.is_none() {
            self.info_uri = page.info_uri;
        }
        if self.columns.is_empty() {
            if let Some(columns) = page.columns {
                self.columns = columns;
            }
        }
        if let Some(stats) = page.stats {
            self.stats = QueryStats {
                state: stats.state,
                elapsed: stats
                    .elapsed_time_millis
                    .map(Duration::from_millis)
                    .unwrap_or(self.stats.elapsed),
                queued: stats.queued_time_millis.map(Duration::from_millis),
                cpu: stats.cpu_time_millis.map(Duration::from_millis),
                processed_rows: stats.processed_rows,
                processed_bytes: stats.processed_bytes,
            };
        }
        if page.update_type.is_some() {
            self.update_type = page.update_type;
        }
        if page.update_count.is_some() {
            self.update_count = page.update_count;
        }
        for warning in page.warnings {
            if !self.warnings.contains(&warning.message) {
                self.warnings.push(warning.message);
            }
        }
        let data = page.data.unwrap_or_default();
        if data.is_empty() {
            return Ok(false);
        }
        if self.columns.is_empty() {
            return Err(TrinoError::Protocol(
                "rows arrived before the columns".to_string(),
            ));
        }
        let room = max_rows.saturating_sub(self.rows.len());
        let over = data.len() > room;
        self.rows.extend(data.into_iter().take(room));
        self.truncated |= over;
        Ok(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> QueryResults {
        serde_json::from_str(json).expect("page")
    }

    const COLUMNS: &str = r#"[{"name": "n", "type": "integer",
        "typeSignature": {"rawType": "integer", "arguments": []}}]"#;

    #[test]
    fn pages_fold_into_one_result() {
        let mut result = TrinoResult::default();
        let queued = page(
            r#"{"id": "q1", "infoUri": "http://t/ui/query.html?q1",
            "nextUri": "http://t/1", "stats": {"state": "QUEUED"}}"#,
        );
        assert!(!result.absorb(queued, 10).expect("queued"));
        let running = page(&format!(
            r#"{{"id": "q1", "nextUri": "http://t/2", "columns": {COLUMNS},
            "data": [[1], [2]], "stats": {{"state": "RUNNING", "processedRows": 2}}}}"#
        ));
        assert!(!result.absorb(running, 10).expect("running"));
        let finished = page(&format!(
            r#"{{"id": "q1", "columns": {COLUMNS}, "data": [[3]],
            "stats": {{"state": "FINISHED", "elapsedTimeMillis": 40, "processedRows": 3,
            "processedBytes": 12}}, "warnings": [{{"message": "w"}}]}}"#
        ));
        assert!(!result.absorb(finished, 10).expect("finished"));
        assert_eq!(result.query_id, "q1");
        assert_eq!(
            result.info_uri.as_deref(),
            Some("http://t/ui/query.html?q1")
        );
        assert_eq!(result.rows.len(), 3);
        assert_eq!(result.stats.state, "FINISHED");
        assert_eq!(result.stats.elapsed, Duration::from_millis(40));
        assert_eq!(result.stats.processed_bytes, Some(12));
        assert_eq!(result.warnings, vec!["w".to_string()]);
        assert!(!result.truncated);
        let batch = result.to_arrow().expect("batch");
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn rows_past_the_limit_are_dropped() {
        let mut result = TrinoResult::default();
        let running = page(&format!(
            r#"{{"id": "q1", "nextUri": "http://t/2", "columns": {COLUMNS},
            "data": [[1], [2], [3]]}}"#
        ));
        assert!(result.absorb(running, 2).expect("running"));
        assert_eq!(result.rows.len(), 2);
        assert!(result.truncated);
    }

    #[test]
    fn rows_without_columns_break_the_protocol() {
        let mut result = TrinoResult::default();
        let bad = page(r#"{"id": "q1", "data": [[1]]}"#);
        assert!(matches!(
            result.absorb(bad, 10),
            Err(TrinoError::Protocol(_))
        ));
    }

    #[test]
    fn later_session_changes_win() {
        let mut changes = SessionChanges::default();
        changes.merge(SessionChanges {
            set: BTreeMap::from([("a".into(), "1".into())]),
            ..SessionChanges::default()
        });
        changes.merge(SessionChanges {
            cleared: BTreeSet::from(["a".into()]),
            schema: Some("s".into()),
            ..SessionChanges::default()
        });
        assert!(changes.set.is_empty());
        assert!(changes.cleared.contains("a"));
        assert_eq!(changes.schema.as_deref(), Some("s"));
        assert!(!changes.is_empty());
    }
}

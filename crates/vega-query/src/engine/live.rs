//! Live rows of stream assets: rows that ingest has made durable (in its
//! write-ahead log) but not yet flushed to a segment. Each stream asset has
//! an in-memory table `_live."<namespace>.<name>"` with the asset's columns
//! plus `_seq`, the write-ahead-log sequence number of the write that
//! brought the row. The asset's view is the union (by column name) of its
//! segments and this table, so a query sees every acknowledged row at once.
//!
//! A flush moves rows from the table to a segment in one DuckDB
//! transaction: the view gains the new files and the rows with
//! `_seq <= through` leave the table, so no query sees them twice or not at
//! all. User SQL cannot name the live tables (the sandbox only admits
//! assets, and asset names never contain a dot).

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::{internal, sql_ident, view_sql, AssetView, QueryEngine};
use crate::error::QueryError;

/// The schema holding every live table.
pub const LIVE_SCHEMA: &str = "_live";
/// The column carrying each row's write-ahead-log sequence number.
pub(crate) const SEQ_COLUMN: &str = "_seq";

/// The columns of one live table in table order (`_seq` among them: columns
/// added later come after it).
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveTable {
    columns: Vec<(String, DataType)>,
}

impl LiveTable {
    /// Whether every column of `batch` is in the table with its type.
    fn covers(&self, batch: &RecordBatch) -> bool {
        batch.schema().fields().iter().all(|f| {
            f.name() != SEQ_COLUMN
                && self
                    .columns
                    .iter()
                    .any(|(n, t)| n == f.name() && t == f.data_type())
        })
    }
}

/// Rows acknowledged but not yet appended to their live table.
pub(crate) struct Pending {
    key: (String, String),
    seq: u64,
    /// Shaped to the table's columns (see [`shape`]).
    rows: RecordBatch,
}

impl Pending {
    pub(crate) fn is_for(&self, namespace: &str, name: &str) -> bool {
        self.key.0 == namespace && self.key.1 == name
    }
}

/// `batch` with the table's `columns` in order (missing ones NULL) and
/// `_seq` filled.
fn shape(
    columns: &[(String, DataType)],
    seq: u64,
    batch: &RecordBatch,
) -> Result<RecordBatch, QueryError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (column, data_type) in columns {
        fields.push(Field::new(column, data_type.clone(), true));
        arrays.push(if column == SEQ_COLUMN {
            Arc::new(UInt64Array::from(vec![seq; batch.num_rows()]))
        } else {
            match batch.column_by_name(column) {
                Some(a) => a.clone(),
                None => new_null_array(data_type, batch.num_rows()),
            }
        });
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| QueryError::Internal(format!("shaping live rows: {e}")))
}

/// The quoted name of an asset's live table.
pub(crate) fn table_ident(namespace: &str, name: &str) -> String {
    format!(
        "{}.{}",
        sql_ident(LIVE_SCHEMA),
        sql_ident(&format!("{namespace}.{name}"))
    )
}

/// DuckDB's name for the Arrow types ingest produces.
fn duckdb_type(data_type: &DataType) -> Result<&'static str, QueryError> {
    Ok(match data_type {
        DataType::Utf8 => "VARCHAR",
        DataType::Float64 => "DOUBLE",
        DataType::Int64 => "BIGINT",
        DataType::UInt64 => "UBIGINT",
        DataType::Boolean => "BOOLEAN",
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS",
        other => {
            return Err(QueryError::Internal(format!(
                "live rows cannot hold a column of type {other}"
            )))
        }
    })
}

impl QueryEngine {
    /// Makes acknowledged rows of a stream asset visible to queries.
    /// `seq` is the write-ahead-log record they came from. A column the
    /// table does not have yet is added; a column with another type than
    /// before is refused (ingest checks types before it acknowledges).
    pub fn live_append(
        &self,
        namespace: &str,
        name: &str,
        seq: u64,
        batch: &RecordBatch,
    ) -> Result<(), QueryError> {
        let key = (namespace.to_string(), name.to_string());
        // Fast path: the table has every column already. Appends from many
        // writers run in parallel on pooled connections.
        {
            let _layout = self.live_layout.read().unwrap_or_else(|e| e.into_inner());
            let columns = {
                let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
                live.get(&key)
                    .and_then(|t| t.covers(batch).then(|| t.columns.clone()))
            };
            if let Some(columns) = columns {
                let rows = shape(&columns, seq, batch)?;
                self.live_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Pending { key, seq, rows });
                self.touch(namespace, name);
                return Ok(());
            }
        }
        // The table's columns change: rows shaped for the old columns go in
        // first.
        self.apply_pending()?;
        let _layout = self.live_layout.write().unwrap_or_else(|e| e.into_inner());
        let columns = self.widen_live_table(namespace, name, batch)?;
        let rows = shape(&columns, seq, batch)?;
        self.append_now(&[(key, vec![rows])])?;
        self.touch(namespace, name);
        Ok(())
    }

    /// Appends every pending row to its live table, one append per table.
    pub(crate) fn apply_pending(&self) -> Result<(), QueryError> {
        let _apply = self.live_apply.lock().unwrap_or_else(|e| e.into_inner());
        let pending =
            std::mem::take(&mut *self.live_pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        let _layout = self.live_layout.read().unwrap_or_else(|e| e.into_inner());
        let mut by_table: Vec<((String, String), Vec<RecordBatch>)> = Vec::new();
        for p in pending {
            match by_table.iter_mut().find(|(k, _)| *k == p.key) {
                Some((_, rows)) => rows.push(p.rows),
                None => by_table.push((p.key, vec![p.rows])),
            }
        }
        self.append_now(&by_table)
    }

    /// Creates the asset's live table or adds the batch's new columns, and
    /// points the view at it. Returns the table's columns.
    fn widen_live_table(
        &self,
        namespace: &str,
        name: &str,
        batch: &RecordBatch,
    ) -> Result<Vec<(String, DataType)>, QueryError> {
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let table = table_ident(namespace, name);
        let mut ddl = String::new();
        let created = !live.contains_key(&key);
        let entry = live.entry(key.clone()).or_default();
        let before = entry.columns.clone();
        if created {
            let mut columns = Vec::new();
            for field in batch.schema().fields() {
                columns.push(format!(
                    "{} {}",
                    sql_ident(field.name()),
                    duckdb_type(field.data_type())?
                ));
                entry
                    .columns
                    .push((field.name().clone(), field.data_type().clone()));
            }
            columns.push(format!("{} UBIGINT", sql_ident(SEQ_COLUMN)));
            entry
                .columns
                .push((SEQ_COLUMN.to_string(), DataType::UInt64));
            ddl.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE OR REPLACE TABLE {table} ({columns});",
                schema = sql_ident(LIVE_SCHEMA),
                columns = columns.join(", ")
            ));
        } else {
            for field in batch.schema().fields() {
                if field.name() == SEQ_COLUMN {
                    return Err(QueryError::Internal(format!(
                        "{SEQ_COLUMN} is reserved for live rows"
                    )));
                }
                match entry.columns.iter().find(|(n, _)| n == field.name()) {
                    Some((_, t)) if t == field.data_type() => {}
                    Some((_, t)) => {
                        return Err(QueryError::Internal(format!(
                            "column {} of {namespace}.{name} is {t}, the new rows have {}",
                            field.name(),
                            field.data_type()
                        )))
                    }
                    None => {
                        ddl.push_str(&format!(
                            "ALTER TABLE {table} ADD COLUMN {} {};",
                            sql_ident(field.name()),
                            duckdb_type(field.data_type())?
                        ));
                        entry
                            .columns
                            .push((field.name().clone(), field.data_type().clone()));
                    }
                }
            }
        }
        if ddl.is_empty() {
            return Ok(entry.columns.clone());
        }
        let files = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map(|v| v.files.clone())
            .unwrap_or_default();
        ddl.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {};",
            sql_ident(namespace)
        ));
        ddl.push_str(&view_sql(namespace, name, &files, true));
        if let Err(e) = admin.execute_batch(&ddl) {
            if created {
                live.remove(&key);
            } else if let Some(t) = live.get_mut(&key) {
                t.columns = before;
            }
            return Err(internal("creating a live table")(e));
        }
        let columns = live[&key].columns.clone();
        drop(live);
        let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
        views.entry(key).or_insert_with(|| AssetView {
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: 0,
            files: Vec::new(),
        });
        Ok(columns)
    }

    /// Appends rows (already shaped to their tables) on a pooled connection.
    fn append_now(
        &self,
        tables: &[((String, String), Vec<RecordBatch>)],
    ) -> Result<(), QueryError> {
        let conn = {
            let pooled = self
                .live_conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            match pooled {
                Some(c) => c,
                None => self
                    .admin
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .try_clone()
                    .map_err(internal("opening a DuckDB connection"))?,
            }
        };
        let result = (|| {
            for ((namespace, name), batches) in tables {
                let Some(first) = batches.first() else {
                    continue;
                };
                let rows = arrow::compute::concat_batches(&first.schema(), batches)
                    .map_err(|e| QueryError::Internal(format!("joining live rows: {e}")))?;
                let mut appender = conn
                    .appender_to_db(&format!("{namespace}.{name}"), LIVE_SCHEMA)
                    .map_err(internal("opening a live-table appender"))?;
                appender
                    .append_record_batch(rows)
                    .map_err(internal("appending live rows"))?;
                appender.flush().map_err(internal("committing live rows"))?;
            }
            Ok(())
        })();
        self.live_conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
    }

    /// After a flush committed `view.files` (the asset's new version):
    /// in one transaction the view reads them, and the live rows they hold
    /// (`_seq <= through_seq`) leave the live table.
    pub fn live_flushed(&self, view: AssetView, through_seq: u64) -> Result<(), QueryError> {
        let _apply = self.live_apply.lock().unwrap_or_else(|e| e.into_inner());
        // Rows not appended yet that the new files hold never need to be.
        self.live_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| {
                !(p.key.0 == view.namespace && p.key.1 == view.name && p.seq <= through_seq)
            });
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let key = (view.namespace.clone(), view.name.clone());
        let has_live = live.contains_key(&key);
        let mut sql = format!(
            "BEGIN TRANSACTION; CREATE SCHEMA IF NOT EXISTS {};",
            sql_ident(&view.namespace)
        );
        sql.push_str(&view_sql(
            &view.namespace,
            &view.name,
            &view.files,
            has_live,
        ));
        if has_live {
            sql.push_str(&format!(
                "DELETE FROM {} WHERE {} <= {through_seq};",
                table_ident(&view.namespace, &view.name),
                sql_ident(SEQ_COLUMN)
            ));
        }
        sql.push_str("COMMIT;");
        if let Err(e) = admin.execute_batch(&sql) {
            let _ = admin.execute_batch("ROLLBACK;");
            return Err(internal("publishing flushed rows")(e));
        }
        drop(live);
        self.touch(&view.namespace, &view.name);
        let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
        views.insert(key, view);
        Ok(())
    }

    /// Rows in an asset's live table (0 when it has none).
    pub fn live_rows(&self, namespace: &str, name: &str) -> Result<u64, QueryError> {
        self.apply_pending()?;
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if !live.contains_key(&(namespace.to_string(), name.to_string())) {
            return Ok(0);
        }
        let n: i64 = admin
            .query_row(
                &format!("SELECT count(*) FROM {}", table_ident(namespace, name)),
                [],
                |row| row.get(0),
            )
            .map_err(internal("counting live rows"))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampNanosecondArray};

    use super::*;
    use crate::engine::{EngineConfig, QueryOutput, QueryRequest};

    fn engine(dir: &Path) -> QueryEngine {
        QueryEngine::open(EngineConfig {
            segments_root: dir.join("segments"),
            temp_dir: dir.join("tmp"),
            pool_size: 2,
            max_concurrency: 2,
            queue_timeout: Duration::from_secs(5),
            threads: 1,
            memory_limit_bytes: 256 << 20,
        })
        .unwrap()
    }

    fn rows(hosts: &[&str], values: &[f64], times: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("host", DataType::Utf8, true),
                Field::new("usage", DataType::Float64, true),
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                ),
            ])),
            vec![
                Arc::new(StringArray::from(hosts.to_vec())),
                Arc::new(Float64Array::from(values.to_vec())),
                Arc::new(TimestampNanosecondArray::from(times.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn count(e: &QueryEngine, sql: &str) -> i64 {
        let out: QueryOutput = e
            .query(QueryRequest {
                sql: sql.into(),
                max_rows: 10,
                timeout: Duration::from_secs(30),
            })
            .await
            .unwrap();
        out.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn live_rows_are_queryable_before_any_segment() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.live_append("tele", "cpu", 1, &rows(&["a", "b"], &[1.0, 2.0], &[1, 2]))
            .unwrap();
        assert_eq!(count(&e, "SELECT count(*) FROM tele.cpu").await, 2);
        assert_eq!(
            count(
                &e,
                "SELECT count(*) FROM tele.cpu WHERE host = 'b' AND usage = 2"
            )
            .await,
            1
        );
        assert_eq!(e.live_rows("tele", "cpu").unwrap(), 2);
    }

    #[tokio::test]
    async fn a_flush_moves_rows_from_the_live_table_to_files_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let first = rows(&["a", "b"], &[1.0, 2.0], &[1, 2]);
        e.live_append("tele", "cpu", 1, &first).unwrap();
        e.live_append("tele", "cpu", 2, &rows(&["c"], &[3.0], &[3]))
            .unwrap();
        // Record 1 is flushed to a file; record 2 stays live.
        let file = dir.path().join("segments/x/part-0.parquet");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).unwrap(),
            first.schema(),
            None,
        )
        .unwrap();
        w.write(&first).unwrap();
        w.close().unwrap();
        e.live_flushed(
            AssetView {
                namespace: "tele".into(),
                name: "cpu".into(),
                version: 1,
                files: vec![file.canonicalize().unwrap()],
            },
            1,
        )
        .unwrap();
        assert_eq!(count(&e, "SELECT count(*) FROM tele.cpu").await, 3);
        assert_eq!(
            count(&e, "SELECT count(DISTINCT host) FROM tele.cpu").await,
            3
        );
        assert_eq!(e.live_rows("tele", "cpu").unwrap(), 1);
    }

    #[tokio::test]
    async fn a_new_column_widens_the_live_table() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.live_append("tele", "cpu", 1, &rows(&["a"], &[1.0], &[1]))
            .unwrap();
        let wider = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("host", DataType::Utf8, true),
                Field::new("temp", DataType::Int64, true),
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                ),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["b"])),
                Arc::new(Int64Array::from(vec![40])),
                Arc::new(TimestampNanosecondArray::from(vec![2])),
            ],
        )
        .unwrap();
        e.live_append("tele", "cpu", 2, &wider).unwrap();
        assert_eq!(
            count(
                &e,
                "SELECT count(*) FROM tele.cpu WHERE temp IS NULL AND usage = 1"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &e,
                "SELECT count(*) FROM tele.cpu WHERE temp = 40 AND usage IS NULL"
            )
            .await,
            1
        );
    }

    #[tokio::test]
    async fn user_sql_cannot_name_a_live_table() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.live_append("tele", "cpu", 1, &rows(&["a"], &[1.0], &[1]))
            .unwrap();
        let err = e
            .query(QueryRequest {
                sql: r#"SELECT * FROM _live."tele.cpu""#.into(),
                max_rows: 10,
                timeout: Duration::from_secs(30),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::UnknownAsset(_)), "{err}");
    }
}

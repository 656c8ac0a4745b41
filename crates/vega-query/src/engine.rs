//! The embedded DuckDB engine: one in-memory database whose schemas hold one
//! view per asset (`namespace.name` → `read_parquet([...segments])`), a pool
//! of connections used on blocking threads, a concurrency limit, and
//! cancellation on timeout.
//!
//! The database is opened locked down (the sandbox's second layer): external
//! access only to the segment directory, no extension install or autoload, a
//! private temp directory, and `lock_configuration` so user SQL cannot change
//! any of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use tokio::sync::Semaphore;

use crate::error::QueryError;
use crate::sandbox::{self, Analysis, CheckedQuery};

mod live;

/// How the engine is sized and where it may read.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The only directory user SQL can read (through asset views).
    pub segments_root: PathBuf,
    /// Where DuckDB may spill; created if missing.
    pub temp_dir: PathBuf,
    pub pool_size: usize,
    pub max_concurrency: usize,
    pub queue_timeout: Duration,
    pub threads: usize,
    pub memory_limit_bytes: u64,
}

/// One asset as the engine sees it: a name and the files of its active version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetView {
    pub namespace: String,
    pub name: String,
    pub version: u32,
    /// Absolute paths of the version's segment files (at least one).
    pub files: Vec<PathBuf>,
}

/// One query to run.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub sql: String,
    /// Rows to return at most; more are dropped and the result says truncated.
    pub max_rows: usize,
    pub timeout: Duration,
}

/// What a statement would read if it ran now: the key of a result cache.
/// Two statements with equal read sets give equal answers, because every
/// change to the data an asset shows (a new version, new files in the
/// same version, streamed rows arriving or leaving the live table) gives
/// the asset a new generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadSet {
    /// sha256 of the statement's normalized parse tree.
    pub normalized: String,
    /// Each asset read, sorted by name.
    pub assets: Vec<AssetState>,
    /// Calls a function of the clock or of chance: never cache.
    pub volatile: bool,
}

/// The state of one asset's data at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssetState {
    /// `namespace.name`.
    pub name: String,
    pub version: u32,
    /// Increases on every change of the rows the asset's view shows.
    pub generation: u64,
}

/// The result of a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
    /// The assets (`namespace.name`) the query read, with the version each
    /// view pointed at when the query started.
    pub assets: Vec<(String, u32)>,
    pub elapsed: Duration,
}

/// The embedded engine. Cheap to share behind an `Arc`.
pub struct QueryEngine {
    config: EngineConfig,
    /// Used only for view changes, serialized by its mutex.
    admin: Mutex<Connection>,
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
    views: RwLock<HashMap<(String, String), AssetView>>,
    /// Stream assets' unflushed rows: the columns of each live table.
    /// Guarded together with DuckDB's catalog by `admin`'s lock order:
    /// always lock `admin` first.
    live: Mutex<HashMap<(String, String), live::LiveTable>>,
    /// Held shared while rows are appended to live tables, exclusively
    /// while a live table's columns change.
    live_layout: RwLock<()>,
    /// Connections used for appends, so appends run in parallel with each
    /// other and with view changes.
    live_conns: Mutex<Vec<Connection>>,
    /// Rows acknowledged since the last query, not yet in their live
    /// tables: appended in bulk before the next query runs (one DuckDB
    /// append per table instead of one per write).
    live_pending: Mutex<Vec<live::Pending>>,
    /// Serializes applying pending rows with flushes that remove rows.
    live_apply: Mutex<()>,
    analyses: Arc<AnalysisCache>,
    /// The generation of each asset's data (see [`ReadSet`]), from one
    /// counter so that a dropped and re-created asset never repeats one.
    generations: Mutex<HashMap<(String, String), u64>>,
    next_generation: std::sync::atomic::AtomicU64,
}

/// Parse trees of recent statements, by SQL text, so a repeated query
/// (a dashboard refreshing) skips the parse. Only what the statement
/// references is cached; the sandbox rules are applied again on every run
/// against the assets that exist then.
#[derive(Debug, Default)]
struct AnalysisCache {
    entries: Mutex<HashMap<String, Arc<Analysis>>>,
}

impl AnalysisCache {
    /// Entries kept at most; the cache is emptied when full.
    const MAX_ENTRIES: usize = 1024;
    /// Statements longer than this are not cached (bounds memory).
    const MAX_SQL_BYTES: usize = 64 * 1024;

    fn get(&self, sql: &str) -> Option<Arc<Analysis>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    fn put(&self, sql: &str, analysis: Arc<Analysis>) {
        if sql.len() > Self::MAX_SQL_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(sql.to_string(), analysis);
    }
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn internal(context: &str) -> impl Fn(duckdb::Error) -> QueryError + '_ {
    move |e| QueryError::Internal(format!("{context}: {e}"))
}

impl QueryEngine {
    /// Opens the database and locks it down.
    pub fn open(config: EngineConfig) -> Result<Self, QueryError> {
        std::fs::create_dir_all(&config.segments_root).map_err(|e| {
            QueryError::Internal(format!("creating {}: {e}", config.segments_root.display()))
        })?;
        std::fs::create_dir_all(&config.temp_dir).map_err(|e| {
            QueryError::Internal(format!("creating {}: {e}", config.temp_dir.display()))
        })?;
        let root = canonical_dir(&config.segments_root)?;
        let temp = canonical_dir(&config.temp_dir)?;

        let db_config = duckdb::Config::default()
            .threads(config.threads.max(1) as i64)
            .and_then(|c| c.max_memory(&format!("{}B", config.memory_limit_bytes.max(1 << 24))))
            .and_then(|c| c.enable_autoload_extension(false))
            .map_err(internal("configuring DuckDB"))?;
        let admin =
            Connection::open_in_memory_with_flags(db_config).map_err(internal("opening DuckDB"))?;
        let lockdown = format!(
            "SET temp_directory = {temp};
             SET autoinstall_known_extensions = false;
             SET autoload_known_extensions = false;
             SET allowed_directories = [{root}];
             SET enable_external_access = false;
             SET allow_community_extensions = false;
             SET lock_configuration = true;",
            temp = sql_string(&temp.to_string_lossy()),
            root = sql_string(&format!("{}/", root.to_string_lossy())),
        );
        admin
            .execute_batch(&lockdown)
            .map_err(internal("locking DuckDB down"))?;

        let mut idle = Vec::with_capacity(config.pool_size);
        for _ in 0..config.pool_size.max(1) {
            idle.push(
                admin
                    .try_clone()
                    .map_err(internal("opening a DuckDB connection"))?,
            );
        }
        let slots = Semaphore::new(config.max_concurrency.clamp(1, config.pool_size.max(1)));
        Ok(Self {
            config,
            admin: Mutex::new(admin),
            idle: Mutex::new(idle),
            slots,
            views: RwLock::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            live_layout: RwLock::new(()),
            live_conns: Mutex::new(Vec::new()),
            live_pending: Mutex::new(Vec::new()),
            live_apply: Mutex::new(()),
            analyses: Arc::new(AnalysisCache::default()),
            generations: Mutex::new(HashMap::new()),
            next_generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Points `namespace.name` at a version's files (and, for a stream
    /// asset, at its live rows too). Queries already running keep reading
    /// the files they started with; new queries see the new version. Never
    /// fails a running query.
    pub fn register(&self, view: AssetView) -> Result<(), QueryError> {
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let has_live = live.contains_key(&(view.namespace.clone(), view.name.clone()));
        if view.files.is_empty() && !has_live {
            return Err(QueryError::Internal(format!(
                "asset {}.{} v{} has no segment files",
                view.namespace, view.name, view.version
            )));
        }
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {ns};\n{create}",
            ns = sql_ident(&view.namespace),
            create = view_sql(&view.namespace, &view.name, &view.files, has_live),
        );
        admin
            .execute_batch(&sql)
            .map_err(internal("registering an asset view"))?;
        drop(live);
        self.touch(&view.namespace, &view.name);
        let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
        views.insert((view.namespace.clone(), view.name.clone()), view);
        Ok(())
    }

    /// Removes an asset's view (and its live rows, if any).
    pub fn unregister(&self, namespace: &str, name: &str) -> Result<(), QueryError> {
        let _apply = self.live_apply.lock().unwrap_or_else(|e| e.into_inner());
        self.live_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| !p.is_for(namespace, name));
        let sql = format!(
            "DROP VIEW IF EXISTS {}.{}; DROP TABLE IF EXISTS {};",
            sql_ident(namespace),
            sql_ident(name),
            live::table_ident(namespace, name),
        );
        {
            let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            admin
                .execute_batch(&sql)
                .map_err(internal("dropping an asset view"))?;
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.remove(&(namespace.to_string(), name.to_string()));
        }
        self.touch(namespace, name);
        let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
        views.remove(&(namespace.to_string(), name.to_string()));
        Ok(())
    }

    /// The version each registered asset currently points at.
    pub fn registered(&self) -> Vec<AssetView> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = views.values().cloned().collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }

    /// A trivial query on a pooled connection, for readiness.
    pub async fn ping(&self) -> Result<(), QueryError> {
        let out = self
            .run(QueryRequestInner {
                sql: "SELECT 1".into(),
                max_rows: 1,
                timeout: Duration::from_secs(5),
                trusted: true,
            })
            .await?;
        if out.rows == 1 {
            Ok(())
        } else {
            Err(QueryError::Internal("SELECT 1 returned no row".into()))
        }
    }

    /// Checks user SQL against the sandbox, then runs it with its limits.
    pub async fn query(&self, request: QueryRequest) -> Result<QueryOutput, QueryError> {
        self.run(QueryRequestInner {
            sql: request.sql,
            max_rows: request.max_rows,
            timeout: request.timeout,
            trusted: false,
        })
        .await
    }

    /// Runs SQL that Vega itself wrote (validation of a staged version),
    /// without the parser-level sandbox; the database's own lockdown still
    /// applies. Never pass user text here.
    pub async fn query_internal(
        &self,
        sql: String,
        max_rows: usize,
        timeout: Duration,
    ) -> Result<QueryOutput, QueryError> {
        self.run(QueryRequestInner {
            sql,
            max_rows,
            timeout,
            trusted: true,
        })
        .await
    }

    /// Checks an asset's SQL assertion: one SELECT whose only table is
    /// `asset` (and its own CTEs).
    pub async fn check_assertion(&self, sql: &str) -> Result<(), QueryError> {
        let quoted = sql_string(sql);
        let out = self
            .query_internal(
                format!("SELECT json_serialize_sql({quoted})"),
                1,
                Duration::from_secs(10),
            )
            .await?;
        let serialized = out
            .batches
            .first()
            .and_then(|b| arrow::util::display::array_value_to_string(b.column(0), 0).ok())
            .ok_or_else(|| QueryError::Internal("the parser returned nothing".into()))?;
        sandbox::analyze(&serialized)?.check_assertion()
    }

    async fn run(&self, request: QueryRequestInner) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        // Acknowledged streamed rows become visible before the query starts.
        self.apply_pending()?;
        let _permit =
            match tokio::time::timeout(self.config.queue_timeout, self.slots.acquire()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(QueryError::Unavailable("the engine is closed".into())),
                Err(_) => {
                    return Err(QueryError::Busy {
                        waited_ms: self.config.queue_timeout.as_millis() as u64,
                    })
                }
            };
        let conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => {
                let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
                admin
                    .try_clone()
                    .map_err(internal("opening a DuckDB connection"))?
            }
        };
        let interrupt = conn.interrupt_handle();
        let views = self.views_snapshot();
        let analyses = self.analyses.clone();
        let timeout = request.timeout;
        let mut task = tokio::task::spawn_blocking(move || {
            let result = execute(&conn, &request, &views, &analyses);
            (conn, result)
        });
        let (conn, result) = match tokio::time::timeout(timeout, &mut task).await {
            Ok(joined) => {
                joined.map_err(|e| QueryError::Internal(format!("query thread failed: {e}")))?
            }
            Err(_) => {
                // Stop the query inside DuckDB, then wait for its thread to
                // hand the connection back: the thread is free again.
                interrupt.interrupt();
                let (conn, _) = task
                    .await
                    .map_err(|e| QueryError::Internal(format!("query thread failed: {e}")))?;
                self.give_back(conn);
                return Err(QueryError::Timeout {
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        };
        self.give_back(conn);
        let mut output = result?;
        output.elapsed = started.elapsed();
        Ok(output)
    }

    /// Gives an asset's data a new generation: answers computed before
    /// no longer match its read set.
    pub(crate) fn touch(&self, namespace: &str, name: &str) {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), name.to_string()), generation);
    }

    /// What `sql` reads now, for a result cache's key: the statement's
    /// normalized form and the version and generation of each asset it
    /// reads. Refuses what the query itself would refuse (bad SQL, the
    /// sandbox), so only statements that can run have a read set. Take it
    /// *before* running the query: the answer then holds at least
    /// everything the read set describes.
    pub async fn read_set(&self, sql: &str) -> Result<ReadSet, QueryError> {
        let analysis = match self.analyses.get(sql) {
            Some(cached) => cached,
            None => {
                let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match conn {
                    Some(c) => c,
                    None => {
                        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
                        admin
                            .try_clone()
                            .map_err(internal("opening a DuckDB connection"))?
                    }
                };
                let text = sql.to_string();
                let (conn, analysis) = tokio::task::spawn_blocking(move || {
                    let analysis = analyze_on(&conn, &text);
                    (conn, analysis)
                })
                .await
                .map_err(|e| QueryError::Internal(format!("parser thread failed: {e}")))?;
                self.give_back(conn);
                let analysis = Arc::new(analysis?);
                self.analyses.put(sql, analysis.clone());
                analysis
            }
        };
        let views = self.views_snapshot();
        let checked =
            analysis.check(&|ns, name| views.contains_key(&(ns.to_string(), name.to_string())))?;
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let assets = checked
            .assets
            .iter()
            .map(|qualified| {
                let (ns, name) = qualified.split_once('.').unwrap_or(("", qualified));
                let key = (ns.to_string(), name.to_string());
                AssetState {
                    name: qualified.clone(),
                    version: views.get(&key).copied().unwrap_or(0),
                    generation: generations.get(&key).copied().unwrap_or(0),
                }
            })
            .collect();
        Ok(ReadSet {
            normalized: analysis.normalized().to_string(),
            assets,
            volatile: analysis.is_volatile(),
        })
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.config.pool_size.max(1) {
            idle.push(conn);
        }
    }

    fn views_snapshot(&self) -> HashMap<(String, String), u32> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        views.iter().map(|(k, v)| (k.clone(), v.version)).collect()
    }

    /// Connections sitting idle in the pool (for tests and metrics).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The statement that makes `namespace.name` read `files` (a version's
/// segments, schemas matched by column name so a stream asset whose schema
/// grew still reads its older segments) and, when `live`, the asset's
/// unflushed rows.
fn view_sql(namespace: &str, name: &str, files: &[PathBuf], live: bool) -> String {
    let parquet = (!files.is_empty()).then(|| {
        let list = files
            .iter()
            .map(|p| sql_string(&p.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT * FROM read_parquet([{list}], union_by_name = true)")
    });
    let live = live.then(|| {
        format!(
            "SELECT * EXCLUDE ({seq}) FROM {table}",
            seq = sql_ident(live::SEQ_COLUMN),
            table = live::table_ident(namespace, name)
        )
    });
    let body = match (parquet, live) {
        (Some(p), Some(l)) => format!("{p} UNION ALL BY NAME {l}"),
        (Some(p), None) => p,
        (None, Some(l)) => l,
        (None, None) => "SELECT NULL WHERE false".to_string(),
    };
    format!(
        "CREATE OR REPLACE VIEW {}.{} AS {body};",
        sql_ident(namespace),
        sql_ident(name)
    )
}

struct QueryRequestInner {
    sql: String,
    max_rows: usize,
    timeout: Duration,
    /// Engine-internal SQL that skips the sandbox check.
    trusted: bool,
}

fn canonical_dir(p: &Path) -> Result<PathBuf, QueryError> {
    p.canonicalize()
        .map_err(|e| QueryError::Internal(format!("resolving {}: {e}", p.display())))
}

fn execute(
    conn: &Connection,
    request: &QueryRequestInner,
    views: &HashMap<(String, String), u32>,
    analyses: &AnalysisCache,
) -> Result<QueryOutput, QueryError> {
    let checked = if request.trusted {
        CheckedQuery::default()
    } else {
        let analysis = match analyses.get(&request.sql) {
            Some(cached) => cached,
            None => {
                let analysis = Arc::new(analyze_on(conn, &request.sql)?);
                analyses.put(&request.sql, analysis.clone());
                analysis
            }
        };
        analysis.check(&|ns, name| views.contains_key(&(ns.to_string(), name.to_string())))?
    };
    let assets = checked
        .assets
        .iter()
        .map(|qualified| {
            let (ns, name) = qualified.split_once('.').unwrap_or(("", qualified));
            let v = views
                .get(&(ns.to_string(), name.to_string()))
                .copied()
                .unwrap_or(0);
            (qualified.clone(), v)
        })
        .collect();

    let mut stmt = conn
        .prepare(&request.sql)
        .map_err(|e| classify_duckdb_error(e, &request.sql))?;
    let stream = stmt
        .stream_arrow([])
        .map_err(|e| classify_duckdb_error(e, &request.sql))?;
    let schema = stream.get_schema();
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    for batch in stream {
        let batch = batch.map_err(|e| classify_duckdb_error(e, &request.sql))?;
        let room = request.max_rows - rows;
        if batch.num_rows() > room {
            if room > 0 {
                batches.push(batch.slice(0, room));
            }
            rows += room;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        rows,
        truncated,
        assets,
        elapsed: Duration::ZERO,
    })
}

/// Parses `sql` with DuckDB's own parser and reads what it references.
fn analyze_on(conn: &Connection, sql: &str) -> Result<Analysis, QueryError> {
    let serialized: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |row| {
            row.get(0)
        })
        .map_err(|e| classify_duckdb_error(e, sql))?;
    sandbox::analyze(&serialized)
}

/// Sorts a DuckDB error into a user error (bad SQL, with the position when
/// DuckDB marked one) or an engine failure.
pub(crate) fn classify_duckdb_error(e: duckdb::Error, sql: &str) -> QueryError {
    let text = e.to_string();
    if text.contains("INTERRUPT") || text.contains("Interrupted") {
        return QueryError::Execution("interrupted".into());
    }
    let kind = text.split(" Error:").next().unwrap_or("");
    let position = caret_position(&text, sql);
    let message = text
        .split("\n\nLINE")
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string();
    match kind {
        "Parser" | "Binder" | "Catalog" | "Syntax" => QueryError::BadSql { message, position },
        "Permission" => QueryError::Forbidden(message),
        "Conversion" | "Invalid Input" | "Out of Range" | "Constraint" | "Not implemented"
        | "Invalid" | "Dependency" => QueryError::Execution(message),
        "Out of Memory" => QueryError::Execution(message),
        _ => QueryError::Internal(message),
    }
}

/// DuckDB marks an error's place as `LINE n: <text>` and a caret line below.
/// Returns the 0-based character offset in `sql`, when it can be recovered.
fn caret_position(text: &str, sql: &str) -> Option<usize> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("LINE ") else {
            continue;
        };
        let (number, shown) = rest.split_once(": ")?;
        let number: usize = number.trim().parse().ok()?;
        let caret = lines.next()?;
        let column = caret.find('^')?.checked_sub(line.len() - shown.len())?;
        if shown.starts_with("...") {
            return None;
        }
        let line_start: usize = sql
            .split_inclusive('\n')
            .take(number.saturating_sub(1))
            .map(|l| l.chars().count())
            .sum();
        return Some(line_start + column);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

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

    fn write_parquet(path: &Path, ids: &[i64]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn request(sql: &str) -> QueryRequest {
        QueryRequest {
            sql: sql.into(),
            max_rows: 1000,
            timeout: Duration::from_secs(30),
        }
    }

    fn first_i64(out: &QueryOutput) -> i64 {
        out.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn registered_asset_is_queryable_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let file = dir.path().join("segments/a/v1/part-0.parquet");
        write_parquet(&file, &[1, 2, 3]);
        e.register(AssetView {
            namespace: "s".into(),
            name: "t".into(),
            version: 1,
            files: vec![file.canonicalize().unwrap()],
        })
        .unwrap();
        let out = e.query(request("SELECT count(*) FROM s.t")).await.unwrap();
        assert_eq!(first_i64(&out), 3);
        assert_eq!(out.assets, vec![("s.t".to_string(), 1)]);
    }

    #[tokio::test]
    async fn the_database_itself_refuses_files_outside_the_segment_root() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let outside = dir.path().join("outside.csv");
        std::fs::write(&outside, "a\n1\n").unwrap();
        // Bypass the parser-level check: the second layer alone must hold.
        for sql in [
            format!("SELECT * FROM read_csv('{}')", outside.display()),
            "SELECT * FROM read_text('/etc/passwd')".to_string(),
            format!(
                "COPY (SELECT 1) TO '{}'",
                dir.path().join("x.csv").display()
            ),
            "SET enable_external_access = true".to_string(),
            "INSTALL httpfs".to_string(),
        ] {
            let result = e
                .run(QueryRequestInner {
                    sql: sql.clone(),
                    max_rows: 10,
                    timeout: Duration::from_secs(10),
                    trusted: true,
                })
                .await;
            assert!(result.is_err(), "{sql} was allowed by the database");
        }
        assert!(!dir.path().join("x.csv").exists());
    }

    #[tokio::test]
    async fn timeout_interrupts_and_returns_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let started = Instant::now();
        let err = e
            .query(QueryRequest {
                sql: "SELECT count(*) FROM range(1000000000000) t WHERE t.range % 3 = 1".into(),
                max_rows: 10,
                timeout: Duration::from_millis(200),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, QueryError::Timeout { timeout_ms: 200 }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(
            e.idle_connections(),
            2,
            "the interrupted connection is back in the pool"
        );
        let out = e.query(request("SELECT 7")).await.unwrap();
        assert_eq!(out.rows, 1);
    }

    #[tokio::test]
    async fn max_rows_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let out = e
            .query(QueryRequest {
                sql: "SELECT * FROM range(5000)".into(),
                max_rows: 2500,
                timeout: Duration::from_secs(30),
            })
            .await
            .unwrap();
        assert_eq!(out.rows, 2500);
        assert!(out.truncated);
        let total: usize = out.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(total, 2500);
    }

    #[tokio::test]
    async fn re_registering_switches_versions() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let v1 = dir.path().join("segments/a/v1/p.parquet");
        let v2 = dir.path().join("segments/a/v2/p.parquet");
        write_parquet(&v1, &[1]);
        write_parquet(&v2, &[1, 2]);
        for (n, f) in [(1, &v1), (2, &v2)] {
            e.register(AssetView {
                namespace: "s".into(),
                name: "t".into(),
                version: n,
                files: vec![f.canonicalize().unwrap()],
            })
            .unwrap();
        }
        let out = e.query(request("SELECT count(*) FROM s.t")).await.unwrap();
        assert_eq!(first_i64(&out), 2);
        assert_eq!(out.assets, vec![("s.t".to_string(), 2)]);
        e.unregister("s", "t").unwrap();
        // The same text as before: its parse is cached, the rules are not.
        assert!(matches!(
            e.query(request("SELECT count(*) FROM s.t")).await,
            Err(QueryError::UnknownAsset(_))
        ));
    }

    #[tokio::test]
    async fn read_set_names_the_assets_and_changes_with_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let v1 = dir.path().join("segments/a/v1/p.parquet");
        write_parquet(&v1, &[1]);
        let view = AssetView {
            namespace: "s".into(),
            name: "t".into(),
            version: 1,
            files: vec![v1.canonicalize().unwrap()],
        };
        e.register(view.clone()).unwrap();
        let first = e.read_set("SELECT count(*) FROM s.t").await.unwrap();
        assert_eq!(first.assets.len(), 1);
        assert_eq!(first.assets[0].name, "s.t");
        assert_eq!(first.assets[0].version, 1);
        assert!(!first.volatile);
        // Spacing, comments and keyword case do not change the statement.
        let same = e
            .read_set("select   count(*)\n  from s.t -- how many\n")
            .await
            .unwrap();
        assert_eq!(same, first);
        let other = e.read_set("SELECT count(*) + 1 FROM s.t").await.unwrap();
        assert_ne!(other.normalized, first.normalized);
        // The same version registered again (new files appended) is new data.
        e.register(view).unwrap();
        let again = e.read_set("SELECT count(*) FROM s.t").await.unwrap();
        assert_eq!(again.assets[0].version, 1);
        assert!(again.assets[0].generation > first.assets[0].generation);
        // Streamed rows arriving are new data too.
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7]))]).unwrap();
        e.live_append("s", "t", 1, &rows).unwrap();
        let live = e.read_set("SELECT count(*) FROM s.t").await.unwrap();
        assert!(live.assets[0].generation > again.assets[0].generation);
        // What the query would refuse has no read set.
        assert!(matches!(
            e.read_set("SELECT * FROM s.missing").await,
            Err(QueryError::UnknownAsset(_))
        ));
        assert!(e.read_set("DROP TABLE s.t").await.is_err());
    }

    #[tokio::test]
    async fn read_set_marks_the_clock_and_chance_as_volatile() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        for sql in [
            "SELECT now()",
            "SELECT current_timestamp",
            "SELECT current_date",
            "SELECT random()",
            "SELECT uuid()",
            "SELECT x FROM (SELECT now() AS x)",
        ] {
            assert!(e.read_set(sql).await.unwrap().volatile, "{sql}");
        }
        assert!(!e.read_set("SELECT 1 + 1").await.unwrap().volatile);
    }

    #[tokio::test]
    async fn cached_parse_still_enforces_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let sql = "SELECT * FROM read_csv('/etc/passwd')";
        for _ in 0..2 {
            assert!(matches!(
                e.query(request(sql)).await,
                Err(QueryError::Forbidden(_))
            ));
        }
        for _ in 0..2 {
            assert_eq!(e.query(request("SELECT 1")).await.unwrap().rows, 1);
        }
    }

    #[test]
    fn caret_position_is_recovered() {
        let sql = "SELECT 1 FORM x";
        let text = format!(
            "Parser Error: syntax error at or near \"x\"\n\nLINE 1: SELECT 1 FORM x\n{}^",
            " ".repeat(8 + 14)
        );
        assert_eq!(caret_position(&text, sql), Some(14));
        let sql = "SELECT 1\nFROM nope";
        let text = format!(
            "Catalog Error: Table with name nope does not exist!\n\nLINE 2: FROM nope\n{}^",
            " ".repeat(8 + 5)
        );
        assert_eq!(caret_position(&text, sql), Some(9 + 5));
    }
}

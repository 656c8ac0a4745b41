//! Jobs: the `jobs` table. A partial unique index allows at most one pending
//! or running job per (asset, kind); `start_job` reports a clash as a
//! `Conflict` carrying the job in the way.

use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use vega_core::{Id, IdKind, Job, JobKind, JobState};

use super::codec::{self, db};
use super::pool::Route;
use super::{assets, SqlCatalog};
use crate::{CatalogError, ClaimedJob as Claimed, JobFilter, JobOutcome, JobProgress, Result};

const TABLE: &str = "jobs";

const COLUMNS: &str = "id, kind, asset_id, state, params_json, attempts, rows, bytes, error, \
     result_version, created_at, started_at, finished_at, owner, lease_expires_at";

/// Jobs listed when the filter gives no limit.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// The states in which a job blocks another of its kind on its asset.
const ACTIVE_STATES: &str = "('pending', 'running')";

/// Every state, in the order `count_jobs_by_state` reports them.
const ALL_STATES: [JobState; 5] = [
    JobState::Pending,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

fn decode(row: &AnyRow) -> Result<Job> {
    Ok(Job {
        id: codec::id_col(row, TABLE, "id")?,
        kind: codec::enum_col(row, TABLE, "kind", JobKind::parse)?,
        asset_id: codec::opt_id_col(row, TABLE, "asset_id")?,
        state: codec::enum_col(row, TABLE, "state", JobState::parse)?,
        params: codec::json_col(row, TABLE, "params_json")?,
        attempts: codec::u32_col(row, TABLE, "attempts")?,
        rows: codec::u64_col(row, TABLE, "rows")?,
        bytes: codec::u64_col(row, TABLE, "bytes")?,
        error: codec::col(row, TABLE, "error")?,
        result_version: codec::opt_u32_col(row, TABLE, "result_version")?,
        created_at: codec::time_col(row, TABLE, "created_at")?,
        started_at: codec::opt_time_col(row, TABLE, "started_at")?,
        finished_at: codec::opt_time_col(row, TABLE, "finished_at")?,
        owner: codec::opt_id_col(row, TABLE, "owner")?,
        lease_expires_at: codec::opt_time_col(row, TABLE, "lease_expires_at")?,
    })
}

fn not_found(id: &Id) -> CatalogError {
    CatalogError::NotFound {
        what: "job",
        key: id.to_string(),
    }
}

/// The conflict reported when `existing` blocks a new job.
fn already_active(existing: &Job) -> CatalogError {
    let asset = existing
        .asset_id
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    CatalogError::Conflict {
        message: format!(
            "asset {asset} already has a {} {} job {}",
            existing.state.as_str(),
            existing.kind.as_str(),
            existing.id
        ),
        existing: Some(existing.id.to_string()),
    }
}

/// The pending or running job of `kind` on `asset_id`, if any.
async fn find_active(
    tx: &mut Transaction<'static, Any>,
    kind: JobKind,
    asset_id: &Id,
) -> Result<Option<Job>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE asset_id = $1 AND kind = $2 AND state IN {ACTIVE_STATES}"
    );
    let row = sqlx::query(&sql)
        .bind(asset_id.as_str())
        .bind(kind.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("looking for a running job"))?;
    row.as_ref().map(decode).transpose()
}

async fn load(tx: &mut Transaction<'static, Any>, id: &Id) -> Result<Job> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading a job"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id)),
    }
}

/// Who runs a job being started: the node, and how long its hold lasts
/// before it must renew it.
pub(super) type Owner<'a> = Option<(&'a Id, Duration)>;

pub(super) async fn start(
    catalog: &SqlCatalog,
    kind: JobKind,
    asset_id: Option<&Id>,
    params: serde_json::Value,
    owner: Owner<'_>,
    now: DateTime<Utc>,
) -> Result<Job> {
    let action = "starting a job";
    let job = Job {
        id: codec::new_id(IdKind::Job, now),
        kind,
        asset_id: asset_id.cloned(),
        state: JobState::Running,
        params,
        attempts: 1,
        rows: 0,
        bytes: 0,
        error: None,
        result_version: None,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        owner: owner.map(|(node, _)| node.clone()),
        lease_expires_at: owner.map(|(_, ttl)| now + ttl),
    };
    let mut w = catalog.write_tx(action).await?;
    if let Some(asset_id) = asset_id {
        assets::lock_existing(&mut w.tx, asset_id).await?;
        if let Some(existing) = find_active(&mut w.tx, kind, asset_id).await? {
            return Err(already_active(&existing));
        }
    }
    let sql = format!(
        "INSERT INTO jobs ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    );
    let inserted = sqlx::query(&sql)
        .bind(job.id.as_str())
        .bind(job.kind.as_str())
        .bind(job.asset_id.as_ref().map(|a| a.as_str()))
        .bind(job.state.as_str())
        .bind(job.params.to_string())
        .bind(i64::from(job.attempts))
        .bind(0_i64)
        .bind(0_i64)
        .bind(None::<String>)
        .bind(None::<i64>)
        .bind(codec::time(job.created_at))
        .bind(job.started_at.map(codec::time))
        .bind(None::<String>)
        .bind(job.owner.as_ref().map(|o| o.as_str()))
        .bind(job.lease_expires_at.map(codec::time))
        .execute(&mut *w.tx)
        .await;
    match inserted {
        Ok(_) => {
            w.commit(action).await?;
            Ok(job)
        }
        // Another writer (another process on the same database) started one
        // between our check and our insert. The failed statement may have
        // aborted the transaction (PostgreSQL), so look in a fresh one.
        Err(e) if codec::is_unique_violation(&e) => {
            drop(w);
            let Some(asset_id) = asset_id else {
                return Err(db(action)(e));
            };
            let mut tx = catalog.read_tx(action, Route::Primary).await?;
            match find_active(&mut tx, kind, asset_id).await? {
                Some(existing) => Err(already_active(&existing)),
                None => Err(CatalogError::Conflict {
                    message: format!(
                        "asset {asset_id} already had a {} job starting; try again",
                        kind.as_str()
                    ),
                    existing: None,
                }),
            }
        }
        Err(e) => Err(db(action)(e)),
    }
}

pub(super) async fn get(catalog: &SqlCatalog, id: &Id) -> Result<Job> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    let mut conn = catalog.reader("reading a job", Route::Replica).await?;
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a job"))?;
    match row {
        Some(row) => decode(&row),
        None => Err(not_found(id)),
    }
}

pub(super) async fn list(catalog: &SqlCatalog, filter: JobFilter) -> Result<Vec<Job>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.asset_id.is_some() {
        conditions.push(format!("asset_id = {}", next()));
    }
    if filter.state.is_some() {
        conditions.push(format!("state = {}", next()));
    }
    let limit_param = next();
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs {where_clause} \
         ORDER BY created_at DESC, id DESC LIMIT {limit_param}"
    );
    let mut query = sqlx::query(&sql);
    if let Some(asset_id) = &filter.asset_id {
        query = query.bind(asset_id.as_str());
    }
    if let Some(state) = filter.state {
        query = query.bind(state.as_str());
    }
    query = query.bind(i64::from(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)));
    let mut conn = catalog.reader("listing jobs", Route::Replica).await?;
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing jobs"))?;
    rows.iter().map(decode).collect()
}

/// The conflict reported when a finished job is changed.
fn already_finished(job: &Job) -> CatalogError {
    CatalogError::Conflict {
        message: format!("job {} already finished ({})", job.id, job.state.as_str()),
        existing: Some(job.id.to_string()),
    }
}

pub(super) async fn update_progress(
    catalog: &SqlCatalog,
    id: &Id,
    progress: JobProgress,
) -> Result<()> {
    let action = "recording job progress";
    let mut w = catalog.write_tx(action).await?;
    let job = load(&mut w.tx, id).await?;
    if job.state.is_finished() {
        return Err(already_finished(&job));
    }
    sqlx::query("UPDATE jobs SET rows = $2, bytes = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(codec::u64_param(TABLE, "rows", progress.rows)?)
        .bind(codec::u64_param(TABLE, "bytes", progress.bytes)?)
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await
}

/// A pending or running job's attempt failed and it will be tried again:
/// attempts + 1 and `error` recorded; the state does not change.
pub(super) async fn record_attempt(catalog: &SqlCatalog, id: &Id, error: &str) -> Result<Job> {
    let action = "recording a job attempt";
    let mut w = catalog.write_tx(action).await?;
    let mut job = load(&mut w.tx, id).await?;
    if job.state.is_finished() {
        return Err(already_finished(&job));
    }
    job.attempts = job.attempts.checked_add(1).ok_or_else(|| {
        codec::corrupt(
            TABLE,
            format!("job {id}: attempts {} leave no next one", job.attempts),
        )
    })?;
    job.error = Some(error.to_string());
    sqlx::query("UPDATE jobs SET attempts = $2, error = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(i64::from(job.attempts))
        .bind(error)
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await?;
    Ok(job)
}

pub(super) async fn finish(
    catalog: &SqlCatalog,
    id: &Id,
    outcome: JobOutcome,
    now: DateTime<Utc>,
) -> Result<Job> {
    let action = "finishing a job";
    let mut w = catalog.write_tx(action).await?;
    let mut job = load(&mut w.tx, id).await?;
    if job.state.is_finished() {
        return Err(already_finished(&job));
    }
    match outcome {
        JobOutcome::Succeeded { result_version } => {
            job.state = JobState::Succeeded;
            job.result_version = result_version;
        }
        JobOutcome::Failed { error } => {
            job.state = JobState::Failed;
            job.error = Some(error);
        }
        JobOutcome::Cancelled { reason } => {
            job.state = JobState::Cancelled;
            job.error = Some(reason);
        }
    }
    job.finished_at = Some(now);
    sqlx::query(
        "UPDATE jobs SET state = $2, error = $3, result_version = $4, finished_at = $5 \
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(job.state.as_str())
    .bind(job.error.as_deref())
    .bind(job.result_version.map(i64::from))
    .bind(codec::time(now))
    .execute(&mut *w.tx)
    .await
    .map_err(db(action))?;
    w.commit(action).await?;
    Ok(job)
}

/// Fails the pending and running jobs of `owner` and those without an
/// owner (every one with `None`): a restart of that node interrupted them.
pub(super) async fn fail_interrupted(
    catalog: &SqlCatalog,
    owner: Option<&Id>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Job>> {
    let action = "failing interrupted jobs";
    let mut w = catalog.write_tx(action).await?;
    // $4 is the owner; with none, `$4 IS NULL` selects every job.
    let scope = "($4 IS NULL OR owner IS NULL OR owner = $4)";
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE state IN {ACTIVE_STATES} AND {} ORDER BY created_at, id",
        scope.replace("$4", "$1")
    );
    let rows = sqlx::query(&sql)
        .bind(owner.map(|o| o.as_str()))
        .fetch_all(&mut *w.tx)
        .await
        .map_err(db(action))?;
    let mut jobs = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    let update = format!(
        "UPDATE jobs SET state = $1, error = $2, finished_at = $3 \
         WHERE state IN {ACTIVE_STATES} AND {scope}"
    );
    sqlx::query(&update)
        .bind(JobState::Failed.as_str())
        .bind(reason)
        .bind(codec::time(now))
        .bind(owner.map(|o| o.as_str()))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    w.commit(action).await?;
    for job in &mut jobs {
        job.state = JobState::Failed;
        job.error = Some(reason.to_string());
        job.finished_at = Some(now);
    }
    Ok(jobs)
}

/// Extends, until `until`, the lease of every running job `owner` holds;
/// returns their ids. A job another node has claimed is no longer running
/// and is not extended.
pub(super) async fn renew_leases(
    catalog: &SqlCatalog,
    owner: &Id,
    until: DateTime<Utc>,
) -> Result<Vec<Id>> {
    let action = "renewing job leases";
    let mut w = catalog.write_tx(action).await?;
    sqlx::query("UPDATE jobs SET lease_expires_at = $2 WHERE owner = $1 AND state = 'running'")
        .bind(owner.as_str())
        .bind(codec::time(until))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
    let rows =
        sqlx::query("SELECT id FROM jobs WHERE owner = $1 AND state = 'running' ORDER BY id")
            .bind(owner.as_str())
            .fetch_all(&mut *w.tx)
            .await
            .map_err(db(action))?;
    let ids = rows
        .iter()
        .map(|r| codec::id_col(r, TABLE, "id"))
        .collect::<Result<Vec<_>>>()?;
    w.commit(action).await?;
    Ok(ids)
}

/// Claims, for `claimer`, up to `limit` running jobs of other nodes whose
/// lease expired before `now`. On PostgreSQL the rows are taken with
/// `FOR UPDATE SKIP LOCKED`, so nodes claiming at once never take the same
/// job (and never wait on one another); on SQLite the write lock
/// serializes claims. Each job is finished in the same transaction: one
/// whose result was already published succeeds, the others fail as
/// interrupted and are returned for the claimer to run again.
pub(super) async fn claim_orphaned(
    catalog: &SqlCatalog,
    claimer: &Id,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>> {
    let action = "claiming orphaned jobs";
    let mut w = catalog.write_tx(action).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND owner IS NOT NULL \
         AND owner <> $1 AND lease_expires_at < $2 ORDER BY created_at, id LIMIT $3{}",
        catalog.backend().skip_locked()
    );
    let rows = sqlx::query(&sql)
        .bind(claimer.as_str())
        .bind(codec::time(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *w.tx)
        .await
        .map_err(db(action))?;
    let mut claimed = Vec::new();
    for row in &rows {
        let mut job = decode(row)?;
        let from = job.owner.clone().map(|o| o.to_string()).unwrap_or_default();
        job.finished_at = Some(now);
        let done = job.result_version.is_some();
        if done {
            job.state = JobState::Succeeded;
        } else {
            job.state = JobState::Failed;
            job.error = Some(format!(
                "interrupted: node {from} stopped renewing its lease; node {claimer} runs the job again"
            ));
        }
        sqlx::query(
            "UPDATE jobs SET state = $2, error = $3, finished_at = $4 WHERE id = $1 AND state = 'running'",
        )
        .bind(job.id.as_str())
        .bind(job.state.as_str())
        .bind(job.error.as_deref())
        .bind(codec::time(now))
        .execute(&mut *w.tx)
        .await
        .map_err(db(action))?;
        claimed.push(if done {
            Claimed::Completed(job)
        } else {
            Claimed::Interrupted(job)
        });
    }
    w.commit(action).await?;
    Ok(claimed)
}

/// The fencing check of a job's result, inside the transaction that
/// publishes it: the job must still be running and its lease (if it has
/// one) unexpired at `now`; its result version is recorded on it at once.
/// The statement locks the job's row, so a node claiming the job either
/// runs before (and this fails: the job is no longer running) or after
/// (and sees the result, so the job is not run again).
pub(super) async fn fence_result(
    tx: &mut Transaction<'static, Any>,
    job_id: &Id,
    version: u32,
    now: DateTime<Utc>,
    action: &'static str,
) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE jobs SET result_version = $2 WHERE id = $1 AND state = 'running' \
         AND (lease_expires_at IS NULL OR lease_expires_at >= $3)",
    )
    .bind(job_id.as_str())
    .bind(i64::from(version))
    .bind(codec::time(now))
    .execute(&mut **tx)
    .await
    .map_err(db(action))?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    let job = load(tx, job_id).await?;
    Err(CatalogError::Fenced {
        what: job_id.to_string(),
        message: match job.state {
            JobState::Running => format!(
                "job {job_id}'s lease expired at {}; its result is refused",
                job.lease_expires_at.map(codec::time).unwrap_or_default()
            ),
            state => format!(
                "job {job_id} is {} (another node may have taken it over); its result is refused",
                state.as_str()
            ),
        },
    })
}

pub(super) async fn count_by_state(catalog: &SqlCatalog) -> Result<Vec<(JobState, u64)>> {
    let mut conn = catalog.reader("counting jobs", Route::Replica).await?;
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("counting jobs"))?;
    let mut counts: Vec<(JobState, u64)> = ALL_STATES.iter().map(|s| (*s, 0)).collect();
    for row in &rows {
        let state = codec::enum_col(row, TABLE, "state", JobState::parse)?;
        let n = codec::u64_col(row, TABLE, "n")?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

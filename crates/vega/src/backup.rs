//! `vega backup list|verify|restore` and `vega drill`: the backup
//! repository read directly (no running node needed — the point of a
//! backup is the day the node is gone), the disaster-recovery restore of a
//! full backup into an empty data directory, and the drill that proves it
//! works within the recovery targets.
//!
//! Taking a backup needs the node's catalog and files while it runs, so
//! `vega backup create` asks a running node (`POST /api/v1/backups`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vega_backup::{BackupManifest, BackupRepository, Progress, Scope};
use vega_catalog::{Catalog, CatalogSnapshot, SqlCatalog};
use vega_config::{Config, HumanDuration};

/// Exit status when the data is wrong (a damaged backup; EX_DATAERR).
const EXIT_DATA: u8 = 65;
/// Exit status of a drill that missed a target or found a broken asset.
const EXIT_DRILL_FAILED: u8 = 1;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Ask a running node to take a backup.
    Create(CreateArgs),
    /// List the backups in the repository (newest last).
    List(ListArgs),
    /// Read every object of a backup back and check its sha256.
    Verify(VerifyArgs),
    /// Restore a full backup into an empty data directory (disaster recovery).
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// `full`, `catalog` or `asset`.
    #[arg(long, default_value = "full")]
    pub scope: String,
    /// The asset of an `asset` backup (its id).
    #[arg(long)]
    pub asset: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The node's API.
    #[arg(long, env = "VEGA_URL", default_value = "http://127.0.0.1:50013")]
    pub url: String,
    /// An operator API key (not needed in development mode).
    #[arg(long, env = "VEGA_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup's id (`bak_…`); the newest backup when left out.
    pub id: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The full backup's id; the newest full backup when left out.
    pub id: Option<String>,
    /// The data directory to rebuild (default: the configured `data_dir`).
    /// Its catalog must be empty.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The longest acceptable time from the start of the restore until the
    /// restored instance is ready.
    #[arg(long, default_value = "15m")]
    pub rto_target: HumanDuration,
    /// The largest acceptable age of the newest data in the backup.
    #[arg(long, default_value = "5m")]
    pub rpo_target: HumanDuration,
    /// Restore into this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// The repository the configuration names.
pub fn open_repository(config: &Config) -> anyhow::Result<BackupRepository> {
    Ok(vega_server::startup::backup_repository(
        config,
        &config.data_dir,
    )?)
}

pub fn run(config: &Config, command: BackupCommand) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match command {
            BackupCommand::Create(args) => create(args).await,
            BackupCommand::List(args) => list(config, args).await,
            BackupCommand::Verify(args) => verify(config, args).await,
            BackupCommand::Restore(args) => {
                let mut target = config.clone();
                if let Some(dir) = args.data_dir {
                    target.data_dir = dir;
                }
                let repo = open_repository(config)?;
                let manifest = pick(&repo, args.id.as_deref(), Some(Scope::Full)).await?;
                let report = restore_full(&repo, &manifest, &target, true).await?;
                println!(
                    "restored {} into {}: {} assets, {} files, {} bytes in {:.1} s",
                    manifest.id,
                    target.data_dir.display(),
                    report.assets,
                    report.files,
                    report.bytes,
                    report.elapsed.as_secs_f64()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    result.unwrap_or_else(report_error)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("vega: starting the runtime: {e}");
            ExitCode::from(70)
        })
}

fn report_error(e: anyhow::Error) -> ExitCode {
    eprintln!("vega: {e:#}");
    let damaged = e.chain().any(|c| {
        c.downcast_ref::<vega_backup::BackupError>()
            .is_some_and(|b| {
                matches!(
                    b,
                    vega_backup::BackupError::ChecksumMismatch { .. }
                        | vega_backup::BackupError::SizeMismatch { .. }
                        | vega_backup::BackupError::ObjectMissing { .. }
                        | vega_backup::BackupError::CorruptManifest { .. }
                )
            })
            || c.downcast_ref::<Damaged>().is_some()
    });
    ExitCode::from(if damaged { EXIT_DATA } else { 1 })
}

/// A backup that did not verify.
#[derive(Debug, thiserror::Error)]
#[error("backup {id} is damaged: {problems}")]
struct Damaged {
    id: String,
    problems: String,
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "scope": args.scope });
    if let Some(a) = &args.asset {
        body["asset_id"] = json!(a);
    }
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(24 * 3600))
        .build()?;
    let mut request = client
        .post(format!("{}/api/v1/backups", args.url.trim_end_matches('/')))
        .json(&body);
    if let Some(key) = &args.key {
        request = request.bearer_auth(key);
    }
    let started = Instant::now();
    let spinner = Spinner::start("backing up");
    let response = request.send().await;
    spinner.stop();
    let response = response.with_context(|| format!("reaching {}", args.url))?;
    let status = response.status();
    let text = response.text().await?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        bail!("the backup was refused ({status}): {message}");
    }
    println!(
        "backup {} ({}) done in {:.1} s: {} bytes, {} written, {} deduplicated",
        value["id"].as_str().unwrap_or("?"),
        value["scope"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64(),
        value["stats"]["bytes_total"],
        value["stats"]["bytes_written"],
        value["stats"]["bytes_deduplicated"],
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(config: &Config, args: ListArgs) -> anyhow::Result<ExitCode> {
    let repo = open_repository(config)?;
    let backups = repo.list().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&backups)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.set_header(vec![
        "id",
        "scope",
        "asset",
        "created",
        "objects",
        "bytes",
        "description",
    ]);
    for b in &backups {
        table.add_row(vec![
            b.id.to_string(),
            scope_name(b.scope).to_string(),
            b.asset_id.clone().unwrap_or_default(),
            b.created_at.to_rfc3339(),
            b.objects.len().to_string(),
            b.stats.bytes_total.to_string(),
            b.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Full => "full",
        Scope::Catalog => "catalog",
        Scope::Asset => "asset",
    }
}

async fn verify(config: &Config, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let repo = open_repository(config)?;
    let manifest = pick(&repo, args.id.as_deref(), None).await?;
    let progress = Arc::new(Progress::default());
    let bar = ProgressBar::start("verifying", progress.clone());
    let report = repo
        .verify_with_progress(manifest.id.as_str(), &progress)
        .await;
    bar.stop();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_ok() {
        println!(
            "backup {} is intact: {} objects, {} bytes checked",
            manifest.id, report.objects_checked, report.bytes_checked
        );
    } else {
        for p in &report.problems {
            println!("{p}");
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DATA)
    })
}

/// The backup `id`, or the newest (of `scope`, if given).
async fn pick(
    repo: &BackupRepository,
    id: Option<&str>,
    scope: Option<Scope>,
) -> anyhow::Result<BackupManifest> {
    let manifest = match id {
        Some(id) => repo.get(id).await?,
        None => repo
            .list()
            .await?
            .into_iter()
            .rev()
            .find(|b| scope.is_none_or(|s| b.scope == s))
            .ok_or_else(|| match scope {
                Some(s) => anyhow!("the repository holds no {} backup", scope_name(s)),
                None => anyhow!("the repository holds no backup"),
            })?,
    };
    if let Some(s) = scope {
        if manifest.scope != s {
            bail!(
                "backup {} is a {} backup; this needs a {} one",
                manifest.id,
                scope_name(manifest.scope),
                scope_name(s)
            );
        }
    }
    Ok(manifest)
}

/// What a full restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub assets: usize,
    pub files: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Rebuilds an instance from a full backup: verifies every object first
/// (nothing is written if one is damaged), writes the segment files (each
/// checked, fsynced and renamed into place), and only then imports the
/// catalog snapshot — into the catalog `target` names, which must be empty.
/// So an interrupted restore leaves no catalog pointing at missing files.
pub async fn restore_full(
    repo: &BackupRepository,
    manifest: &BackupManifest,
    target: &Config,
    show_progress: bool,
) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let bar = show_progress.then(|| ProgressBar::start("verifying", progress.clone()));
    let report = repo
        .verify_with_progress(manifest.id.as_str(), &progress)
        .await;
    if let Some(bar) = bar {
        bar.stop();
    }
    let report = report?;
    if !report.is_ok() {
        return Err(Damaged {
            id: manifest.id.to_string(),
            problems: report
                .problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        }
        .into());
    }
    let snapshot = CatalogSnapshot::from_json(&repo.read_catalog(manifest).await?)?;

    let catalog = open_catalog(target).await?;
    if !catalog.list_connections().await?.is_empty() || !catalog.list_assets().await?.is_empty() {
        bail!(
            "the catalog of {} is not empty: a full restore rebuilds an instance from nothing \
             (restore single assets through the API instead)",
            target.data_dir.display()
        );
    }
    let root = segments_root(target);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let progress = Arc::new(Progress::default());
    progress.add_total(
        manifest.objects.iter().map(|o| o.bytes).sum(),
        manifest.objects.len() as u64,
    );
    let bar = show_progress.then(|| ProgressBar::start("restoring", progress.clone()));
    let mut bytes = 0;
    for object in &manifest.objects {
        let dest = root.join(&object.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        repo.restore_file_with_progress(object, &dest, &progress)
            .await?;
        bytes += object.bytes;
    }
    if let Some(bar) = bar {
        bar.stop();
    }
    catalog.import_snapshot(&snapshot).await?;
    catalog.close().await;
    Ok(RestoreReport {
        assets: snapshot.assets.len(),
        files: manifest.objects.len(),
        bytes,
        elapsed: started.elapsed(),
    })
}

async fn open_catalog(config: &Config) -> anyhow::Result<SqlCatalog> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    Ok(match &config.catalog.url {
        Some(url) => SqlCatalog::connect(url.expose()).await?,
        None => SqlCatalog::open_sqlite(&config.data_dir.join("catalog.db")).await?,
    })
}

/// Where the instance `config` describes keeps its segments.
fn segments_root(config: &Config) -> PathBuf {
    match &config.storage.shared_dir {
        Some(shared) => shared.join("segments"),
        None => config.data_dir.join("segments"),
    }
}

/// The result of a drill.
#[derive(Debug, serde::Serialize)]
pub struct DrillReport {
    pub backup_id: String,
    pub backup_created_at: String,
    /// Seconds from the start of the restore until the instance was ready.
    pub rto_seconds: f64,
    pub rto_target_seconds: f64,
    pub rto_met: bool,
    /// Age in seconds of the newest data in the backup.
    pub rpo_seconds: f64,
    pub rpo_target_seconds: f64,
    pub rpo_met: bool,
    pub assets: Vec<DrillAsset>,
    /// Every target met and every asset valid and queryable.
    pub passed: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct DrillAsset {
    pub name: String,
    pub version: Option<String>,
    pub valid: bool,
    pub rows: Option<u64>,
    pub error: Option<String>,
}

/// `vega drill`: restores the newest full backup into a scratch directory,
/// starts an embedded instance on it, checks every asset and reports the
/// achieved RTO and RPO against the targets.
pub fn drill(config: &Config, args: DrillArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run_drill(config, &args)) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_drill(&report);
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DRILL_FAILED)
            }
        }
        Err(e) => report_error(e),
    }
}

async fn run_drill(config: &Config, args: &DrillArgs) -> anyhow::Result<DrillReport> {
    let repo = open_repository(config)?;
    let manifest = pick(&repo, None, Some(Scope::Full)).await?;
    let (_tmp, scratch) = match &args.scratch {
        Some(dir) => (None, dir.clone()),
        None => {
            let tmp = tempfile::tempdir().context("creating a scratch directory")?;
            let dir = tmp.path().join("data");
            (Some(tmp), dir)
        }
    };
    let mut target = Config {
        data_dir: scratch.clone(),
        ..Config::default()
    };
    target.api.listen = "127.0.0.1:0".parse().expect("address");
    target.ops.listen = "127.0.0.1:0".parse().expect("address");
    target.cache.enabled = false;

    let started = Instant::now();
    restore_full(&repo, &manifest, &target, !args.json).await?;
    let server = vega_server::start(&target, vega_server::StartOptions::default())
        .await
        .map_err(|e| anyhow!("the restored instance did not start: {e}"))?;
    let rto = started.elapsed();

    let state = server.state.clone();
    let mut assets = Vec::new();
    for asset in state.catalog.list_assets().await? {
        let name = asset.qualified_name();
        let Some(number) = asset.active_version else {
            assets.push(DrillAsset {
                name,
                version: None,
                valid: true,
                rows: None,
                error: None,
            });
            continue;
        };
        let mut entry = DrillAsset {
            name: name.clone(),
            version: Some(format!("v{number}")),
            valid: false,
            rows: None,
            error: None,
        };
        match state.catalog.get_version(&asset.id, number).await {
            Ok(version) => match state.sync.check(&asset, &version.manifest).await {
                Ok(report) => {
                    entry.valid = report.passed;
                    if !report.passed {
                        entry.error = report.failure_summary();
                    }
                }
                Err(e) => entry.error = Some(format!("validation failed: {e}")),
            },
            Err(e) => entry.error = Some(format!("reading the version failed: {e}")),
        }
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            vega_query::sql_ident(&asset.namespace),
            vega_query::sql_ident(&asset.name)
        );
        match state
            .engine
            .query(vega_query::QueryRequest {
                sql,
                max_rows: 1,
                timeout: Duration::from_secs(60),
            })
            .await
        {
            Ok(out) => {
                entry.rows = out
                    .batches
                    .first()
                    .and_then(|b| arrow_cast_u64(b.column(0).as_ref()));
            }
            Err(e) => {
                entry.valid = false;
                entry.error = Some(format!("sample query failed: {e}"));
            }
        }
        assets.push(entry);
    }
    server.shutdown().await;

    let newest = manifest.newest_data_at.unwrap_or(manifest.created_at);
    let rpo = (chrono::Utc::now() - newest)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let rto_target: Duration = args.rto_target.into();
    let rpo_target: Duration = args.rpo_target.into();
    let rto_met = rto <= rto_target;
    let rpo_met = rpo <= rpo_target;
    let passed = rto_met && rpo_met && assets.iter().all(|a| a.valid);
    Ok(DrillReport {
        backup_id: manifest.id.to_string(),
        backup_created_at: manifest.created_at.to_rfc3339(),
        rto_seconds: rto.as_secs_f64(),
        rto_target_seconds: rto_target.as_secs_f64(),
        rto_met,
        rpo_seconds: rpo.as_secs_f64(),
        rpo_target_seconds: rpo_target.as_secs_f64(),
        rpo_met,
        assets,
        passed,
    })
}

/// The first value of a count column.
fn arrow_cast_u64(array: &dyn arrow::array::Array) -> Option<u64> {
    use arrow::array::{Int64Array, UInt64Array};
    if let Some(a) = array.as_any().downcast_ref::<Int64Array>() {
        return (!a.is_empty()).then(|| a.value(0) as u64);
    }
    if let Some(a) = array.as_any().downcast_ref::<UInt64Array>() {
        return (!a.is_empty()).then(|| a.value(0));
    }
    None
}

fn print_drill(report: &DrillReport) {
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "drill of backup {} (taken {})",
        report.backup_id, report.backup_created_at
    );
    println!(
        "  RTO {:.1} s (target {:.0} s): {}",
        report.rto_seconds,
        report.rto_target_seconds,
        mark(report.rto_met)
    );
    println!(
        "  RPO {:.1} s (target {:.0} s): {}",
        report.rpo_seconds,
        report.rpo_target_seconds,
        mark(report.rpo_met)
    );
    for a in &report.assets {
        println!(
            "  {} {}: {}{}",
            a.name,
            a.version.as_deref().unwrap_or("(no version)"),
            if a.valid { "valid" } else { "INVALID" },
            match (&a.rows, &a.error) {
                (_, Some(e)) => format!(" — {e}"),
                (Some(n), None) => format!(", {n} rows"),
                _ => String::new(),
            }
        );
    }
    println!("{}", if report.passed { "PASSED" } else { "FAILED" });
}

/// A one-line progress bar on stderr for work measured by a [`Progress`],
/// redrawn a few times a second until stopped.
struct ProgressBar {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(label: &'static str, progress: Arc<Progress>) -> Self {
        Self::spawn(move || {
            let fraction = progress.fraction();
            let width = 30;
            let filled = (fraction * width as f64).round() as usize;
            format!(
                "{label} [{}{}] {:>3.0}% {}/{} MiB",
                "#".repeat(filled.min(width)),
                " ".repeat(width - filled.min(width)),
                fraction * 100.0,
                progress.bytes_done() >> 20,
                progress.bytes_total() >> 20,
            )
        })
    }

    fn spawn(line: impl Fn() -> String + Send + 'static) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut err = std::io::stderr();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = write!(err, "\r{}", line());
                let _ = err.flush();
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = writeln!(err, "\r{}", line());
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Elapsed time on stderr for work whose size is unknown here.
struct Spinner(ProgressBar);

impl Spinner {
    fn start(label: &'static str) -> Self {
        let started = Instant::now();
        Spinner(ProgressBar::spawn(move || {
            format!("{label} … {:.0} s", started.elapsed().as_secs_f64())
        }))
    }

    fn stop(self) {
        self.0.stop();
    }
}

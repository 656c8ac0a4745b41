//! Command-line parsing and the `serve` and `config check` commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vega_config::Config;
use vega_server::StartOptions;
use vega_sync::Failpoint;

/// Exit status for an invalid configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit status when the server cannot start or fails (EX_SOFTWARE).
const EXIT_FAILED: u8 = 70;

#[derive(Debug, Parser)]
#[command(
    name = "vega",
    version,
    about = "Vega: versioned data assets and sandboxed SQL over them"
)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(long, global = true, env = "VEGA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Vega node.
    Serve(ServeArgs),
    /// Run SQL against a running node and print the result.
    Sql(crate::sql_client::SqlArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The load balancer in front of Vega nodes.
    #[command(subcommand)]
    Lb(crate::lb::LbCommand),
    /// Backups: take one (through a running node), list, verify, restore.
    #[command(subcommand)]
    Backup(crate::backup::BackupCommand),
    /// Disaster-recovery drill: restore the newest full backup into a
    /// scratch directory, start an instance on it, check every asset and
    /// report the achieved RTO and RPO against the targets.
    Drill(crate::backup::DrillArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file and VEGA_* variables) and print every problem.
    Check,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Load a small demo dataset as assets so you can query at once.
    #[arg(long)]
    pub demo: bool,
}

pub fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    vega_config::load_from_process_env(path).map_err(|errors| {
        eprintln!("vega: invalid configuration:\n{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn config_check(path: Option<&Path>) -> ExitCode {
    match load_config(path) {
        Ok(config) => {
            // What only a running node would find: schedules are parsed by
            // the scheduler's own parser.
            let problems: Vec<String> = config
                .backup
                .schedules
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    vega_server::backup_schedule::BackupSchedule::parse(i, s).err()
                })
                .collect();
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "configuration is valid; effective configuration:\n{}",
                config.to_yaml()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn serve(path: Option<&Path>, log_format: Option<LogFormatArg>, args: ServeArgs) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let format = match log_format {
        Some(LogFormatArg::Json) => vega_telemetry::logs::LogFormat::Json,
        Some(LogFormatArg::Pretty) => vega_telemetry::logs::LogFormat::Pretty,
        None => match config.log.format {
            vega_config::LogFormat::Json => vega_telemetry::logs::LogFormat::Json,
            vega_config::LogFormat::Pretty => vega_telemetry::logs::LogFormat::Pretty,
        },
    };
    let filter = std::env::var("VEGA_LOG").unwrap_or_else(|_| config.log.level.clone());
    if let Err(e) = vega_telemetry::logs::init(format, &filter, "vega") {
        eprintln!("vega: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let failpoint = std::env::var("VEGA_FAILPOINT")
        .ok()
        .and_then(|s| Failpoint::parse(&s));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vega: starting the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let mut options = StartOptions {
            failpoint,
            ..StartOptions::default()
        };
        if args.demo {
            match crate::demo::write_files(&config.data_dir) {
                Ok(dir) => options.extra_allowed_roots.push(dir),
                Err(e) => {
                    tracing::error!(error = %e, "writing the demo files failed");
                    return ExitCode::from(EXIT_FAILED);
                }
            }
        }
        // A signal during start-up (which may wait long for the catalog)
        // stops the process at once.
        let started = tokio::select! {
            started = vega_server::start(&config, options) => started,
            () = wait_for_signal() => {
                tracing::info!("stopped before start-up finished");
                return ExitCode::SUCCESS;
            }
        };
        let server = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "vega could not start");
                eprintln!("vega: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        };
        if args.demo {
            if let Err(e) = crate::demo::load(&server).await {
                tracing::error!(error = %e, "loading the demo failed");
            }
        }
        wait_for_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops Vega");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

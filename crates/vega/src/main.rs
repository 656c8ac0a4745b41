//! The `vega` binary: parses the command line and wires the parts together.
//!
//! - `vega serve [--demo]` runs a node (embedded defaults without a config).
//! - `vega sql "<query>"` runs SQL against a running node.
//! - `vega config check` validates a configuration and prints every problem.
//! - `vega lb render FILE` renders the HAProxy configuration for the nodes.
//! - `vega backup create|list|verify|restore` and `vega drill` (backups and
//!   disaster-recovery drills).

mod backup;
mod cli;
mod demo;
mod lb;
mod sql_client;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => cli::serve(cli.config.as_deref(), cli.log_format, args),
        cli::Command::Sql(args) => sql_client::run(args),
        cli::Command::Config(cli::ConfigCommand::Check) => cli::config_check(cli.config.as_deref()),
        cli::Command::Lb(command) => lb::run(command),
        cli::Command::Backup(command) => match cli::load_config(cli.config.as_deref()) {
            Ok(config) => backup::run(&config, command),
            Err(code) => code,
        },
        cli::Command::Drill(args) => match cli::load_config(cli.config.as_deref()) {
            Ok(config) => backup::drill(&config, args),
            Err(code) => code,
        },
    }
}

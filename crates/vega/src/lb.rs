//! `vega lb render`: the HAProxy configuration for Vega nodes, rendered from
//! the `load_balancer:` block of a YAML file (a whole Vega configuration
//! will do; other keys are ignored). See `docs/deployment.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use vega_config::HumanDuration;
use vega_deploy::{render_from_yaml, RenderOptions};

/// Problems with the block or the options (one per line on stderr).
const EXIT_PROBLEMS: u8 = 1;
/// The input could not be read or the output written.
const EXIT_IO: u8 = 74;

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Renders haproxy.cfg from a `load_balancer:` block.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The YAML file holding `load_balancer:` (`-` for standard input).
    pub file: PathBuf,
    /// Where clients connect (HAProxy's frontend `bind`).
    #[arg(long, default_value = "127.0.0.1:50013")]
    pub bind: SocketAddr,
    /// Health checks of every backend go to this port (the nodes'
    /// operations port, which also answers /health/ready).
    #[arg(long)]
    pub check_port: Option<u16>,
    /// Health checks of backend ADDRESS go to PORT (`ADDRESS=PORT`,
    /// repeatable); wins over --check-port.
    #[arg(long = "check-port-of", value_parser = parse_check_port)]
    pub check_port_of: Vec<(String, u16)>,
    /// A stats page on this loopback address.
    #[arg(long)]
    pub stats: Option<SocketAddr>,
    /// HAProxy's `timeout server`; keep it above the nodes' api.request_timeout.
    #[arg(long)]
    pub server_timeout: Option<HumanDuration>,
    /// An extra header comment line (repeatable).
    #[arg(long)]
    pub comment: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

fn parse_check_port(v: &str) -> Result<(String, u16), String> {
    let (address, port) = v
        .rsplit_once('=')
        .ok_or_else(|| format!("{v}: write ADDRESS=PORT"))?;
    let port = port.parse().map_err(|e| format!("{v}: {e}"))?;
    Ok((address.to_string(), port))
}

pub fn run(command: LbCommand) -> ExitCode {
    let LbCommand::Render(args) = command;
    let mut options = RenderOptions {
        bind: args.bind,
        check_port: args.check_port,
        check_ports: args.check_port_of.into_iter().collect::<BTreeMap<_, _>>(),
        stats: args.stats,
        comment: args.comment,
        ..RenderOptions::default()
    };
    if let Some(t) = args.server_timeout {
        options.server_timeout = t;
    }
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("vega: reading standard input: {e}");
            return ExitCode::from(EXIT_IO);
        }
        text
    } else {
        match std::fs::read_to_string(&args.file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("vega: reading {name}: {e}");
                return ExitCode::from(EXIT_IO);
            }
        }
    };
    match render_from_yaml(&text, &options) {
        Ok(rendered) => match &args.output {
            Some(path) => match std::fs::write(path, rendered) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vega: writing {}: {e}", path.display());
                    ExitCode::from(EXIT_IO)
                }
            },
            None => {
                print!("{rendered}");
                ExitCode::SUCCESS
            }
        },
        Err(problems) => {
            for problem in problems {
                eprintln!("{name}: {problem}");
            }
            ExitCode::from(EXIT_PROBLEMS)
        }
    }
}

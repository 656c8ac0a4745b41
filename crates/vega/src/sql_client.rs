//! `vega sql "<query>"`: sends SQL to a running node's API and prints the
//! answer as a table (default), JSON or CSV.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};

/// Exit status for a query the server refused or failed (EX_DATAERR).
const EXIT_QUERY: u8 = 65;
/// Exit status when the server cannot be reached (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One SELECT statement; assets are addressed as namespace.name.
    pub query: String,
    /// The node's API address.
    #[arg(long, env = "VEGA_URL", default_value = "http://127.0.0.1:50013")]
    pub url: String,
    /// API key (sent as a Bearer token).
    #[arg(long, env = "VEGA_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// At most this many rows.
    #[arg(long)]
    pub max_rows: Option<u64>,
    /// Cancel the query after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

pub fn run(args: SqlArgs) -> ExitCode {
    let wire_format = match args.format {
        OutputFormat::Csv => "csv",
        _ => "json",
    };
    let mut body = json!({ "sql": args.query, "format": wire_format });
    if let Some(n) = args.max_rows {
        body["max_rows"] = json!(n);
    }
    if let Some(ms) = args.timeout_ms {
        body["timeout_ms"] = json!(ms);
    }
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15 * 60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vega sql: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let url = format!("{}/api/v1/query", args.url.trim_end_matches('/'));
    let mut request = client.post(&url).json(&body);
    if let Some(key) = &args.key {
        request = request.bearer_auth(key);
    }
    let response = match request.send() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vega sql: cannot reach {url}: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let status = response.status();
    let text = match response.text() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vega sql: reading the answer: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                let mut m = e.get("message")?.as_str()?.to_string();
                if let Some(p) = e.get("details").and_then(|d| d.get("position")) {
                    m.push_str(&format!(" (at position {p})"));
                }
                Some(m)
            })
            .unwrap_or(text);
        eprintln!("vega sql: {} {message}", status.as_u16());
        return ExitCode::from(EXIT_QUERY);
    }
    match args.format {
        OutputFormat::Csv => print!("{text}"),
        OutputFormat::Json => println!("{text}"),
        OutputFormat::Table => match serde_json::from_str::<Value>(&text) {
            Ok(v) => println!("{}", render_table(&v)),
            Err(e) => {
                eprintln!("vega sql: the answer is not JSON: {e}");
                return ExitCode::from(EXIT_QUERY);
            }
        },
    }
    ExitCode::SUCCESS
}

/// Renders a JSON query result as a text table with a summary line.
pub fn render_table(result: &Value) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let columns = result["columns"].as_array().cloned().unwrap_or_default();
    table.set_header(
        columns
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string()),
    );
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        let cells: Vec<String> = row
            .as_array()
            .map(|cells| {
                cells
                    .iter()
                    .map(|v| match v {
                        Value::Null => "NULL".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        table.add_row(cells);
    }
    let truncated = if result["truncated"].as_bool() == Some(true) {
        " (truncated)"
    } else {
        ""
    };
    format!(
        "{table}\n{} row{}{truncated} in {:.1} ms",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        result["elapsed_ms"].as_f64().unwrap_or(0.0)
    )
}

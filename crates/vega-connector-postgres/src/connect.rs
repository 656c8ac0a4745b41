//! Opening connections and classifying PostgreSQL errors.
//!
//! The password is resolved from its reference just before connecting and
//! lives only in the driver's configuration for the connect; it never
//! appears in a message. Every session is set to `TimeZone = 'UTC'` and
//! ISO date style, so the text of timestamps in watermarks is stable.

use std::error::Error as _;

use postgres::config::SslMode as PgSslMode;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use vega_connectors::ConnectorError;

use crate::config::{PostgresConnectionParams, SslMode};

/// An open connection and how to name the server in messages.
pub struct Connection {
    pub client: Client,
    /// e.g. `postgres at 127.0.0.1:5432/sales`.
    pub what: String,
}

/// Connects (trying the hosts in order) and sets up the session.
pub fn connect(params: &PostgresConnectionParams) -> Result<Connection, ConnectorError> {
    let what = format!(
        "postgres at {}/{}",
        params.describe_hosts(),
        params.database
    );
    let mut config = postgres::Config::new();
    for host in &params.hosts {
        config.host(host);
    }
    config
        .port(params.port)
        .dbname(&params.database)
        .user(&params.user)
        .application_name("vega")
        .connect_timeout(params.connect_timeout)
        .ssl_mode(match params.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
        });
    if let Some(reference) = &params.password {
        let secret = reference.resolve()?;
        config.password(secret.expose());
    }
    let mut client = match params.sslmode {
        SslMode::Disable => config.connect(NoTls),
        // libpq's meaning: `prefer` and `require` encrypt without checking
        // the server's certificate (that is `verify-full`, not offered yet).
        SslMode::Prefer | SslMode::Require => {
            let connector = native_tls::TlsConnector::builder()
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true)
                .build()
                .map_err(|e| ConnectorError::Internal {
                    message: format!("setting up TLS: {e}"),
                })?;
            config.connect(postgres_native_tls::MakeTlsConnector::new(connector))
        }
    }
    .map_err(|e| map_error(&what, e))?;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'",
        )
        .map_err(|e| map_error(&what, e))?;
    Ok(Connection { client, what })
}

/// Classifies a driver error: refused, timed out or lost connections are
/// [`ConnectorError::Unreachable`] (retryable), refused credentials
/// [`ConnectorError::Auth`], SQL errors [`ConnectorError::Remote`]
/// (permanent unless the server says it is transient: resources,
/// serialization, lock or shutdown).
pub fn map_error(what: &str, e: postgres::Error) -> ConnectorError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let mut message = format!("{} (SQLSTATE {})", db.message(), code.code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        let class = &code.code()[..2.min(code.code().len())];
        return match class {
            "28" => ConnectorError::Auth {
                what: what.to_string(),
                message,
            },
            "08" => ConnectorError::Unreachable {
                what: what.to_string(),
                message,
            },
            _ if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
            {
                ConnectorError::Unreachable {
                    what: what.to_string(),
                    message,
                }
            }
            "40" | "53" | "55" | "57" | "58" => ConnectorError::Remote {
                what: what.to_string(),
                message,
                permanent: false,
            },
            _ => ConnectorError::Remote {
                what: what.to_string(),
                message,
                permanent: true,
            },
        };
    }
    let mut message = e.to_string();
    let mut source = e.source();
    let mut io = false;
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        io |= s.is::<std::io::Error>();
        source = s.source();
    }
    if e.is_closed()
        || io
        || message.starts_with("error connecting")
        || message.starts_with("error communicating")
        || message.starts_with("timeout")
        || message.starts_with("error performing TLS")
    {
        ConnectorError::Unreachable {
            what: what.to_string(),
            message,
        }
    } else if message.starts_with("authentication error") || message.contains("password missing") {
        ConnectorError::Auth {
            what: what.to_string(),
            message,
        }
    } else {
        ConnectorError::Internal {
            message: format!("{what}: {message}"),
        }
    }
}

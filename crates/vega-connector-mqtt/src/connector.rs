//! The `mqtt` connection kind in the connector registry: parameters and
//! sources are checked here; `test` opens a TCP connection to the broker.
//! MQTT assets are stream assets: they are fed by the consumer, never read
//! by sync, so the read methods refuse.

use std::net::ToSocketAddrs;
use std::time::Duration;

use serde_json::Value;
use vega_connectors::{BatchSource, Connector, ConnectorError};
use vega_core::ConnectorKind;

use crate::config::{MqttConnection, MqttSource};

/// How long `test` waits for the broker's port.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone, Copy)]
pub struct MqttConnector;

impl Connector for MqttConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Mqtt
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        MqttConnection::parse(params).map(|_| ())
    }

    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError> {
        MqttConnection::parse(params)?;
        MqttSource::parse(source).map(|_| ())
    }

    fn test(&self, params: &Value) -> Result<(), ConnectorError> {
        let conn = MqttConnection::parse(params)?;
        let what = format!("MQTT broker {}:{}", conn.host, conn.port);
        let addrs = (conn.host.as_str(), conn.port)
            .to_socket_addrs()
            .map_err(|e| ConnectorError::Unreachable {
                what: what.clone(),
                message: format!("cannot resolve the host: {e}"),
            })?;
        let mut last = String::from("no address");
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, TEST_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ConnectorError::Unreachable {
            what,
            message: last,
        })
    }

    fn open_full(
        &self,
        _params: &Value,
        _source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        Err(ConnectorError::Unsupported {
            message: "MQTT assets are stream assets, fed by their subscription, not by sync".into(),
        })
    }
}

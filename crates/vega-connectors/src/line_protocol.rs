//! The `line_protocol` connection: the source is Vega's own write
//! endpoints (`/api/v2/write`, `/write`). It has no parameters, nothing to
//! contact and nothing to read; its stream assets are created by their
//! first write and fed by ingest.

use serde_json::Value;
use vega_core::ConnectorKind;

use crate::{BatchSource, Connector, ConnectorError};

#[derive(Debug, Default, Clone, Copy)]
pub struct LineProtocolConnector;

fn no_fields(what: &str, value: &Value) -> Result<(), ConnectorError> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) if map.is_empty() => Ok(()),
        Value::Object(map) => Err(ConnectorError::InvalidParams {
            field: map.keys().next().cloned().unwrap_or_default(),
            message: format!("a line_protocol {what} takes no parameters"),
        }),
        _ => Err(ConnectorError::InvalidParams {
            field: what.to_string(),
            message: "must be an empty object".into(),
        }),
    }
}

impl Connector for LineProtocolConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::LineProtocol
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        no_fields("connection", params)
    }

    fn check_source(&self, _params: &Value, source: &Value) -> Result<(), ConnectorError> {
        no_fields("source", source)
    }

    fn test(&self, _params: &Value) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn open_full(
        &self,
        _params: &Value,
        _source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        Err(ConnectorError::Unsupported {
            message:
                "line_protocol assets are fed by writes to /api/v2/write and /write, not by sync"
                    .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn takes_no_parameters_and_cannot_be_read() {
        let c = LineProtocolConnector;
        assert!(c.check_connection(&json!({})).is_ok());
        assert!(c.check_connection(&json!({"url": "x"})).is_err());
        assert!(c.check_source(&json!({}), &json!({"path": "x"})).is_err());
        assert!(c.open_full(&json!({}), &json!({})).is_err());
    }
}

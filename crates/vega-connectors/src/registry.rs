//! The connectors available to a node, by kind.

use std::collections::HashMap;
use std::sync::Arc;

use vega_core::ConnectorKind;

use crate::error::ConnectorError;
use crate::Connector;

/// Maps a connection's kind to its connector.
#[derive(Debug, Clone, Default)]
pub struct ConnectorRegistry {
    connectors: HashMap<ConnectorKind, Arc<dyn Connector>>,
}

impl ConnectorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the connector of its kind.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(connector.kind(), connector);
    }

    /// The connector for `kind`, or an error saying it is not available.
    pub fn get(&self, kind: ConnectorKind) -> Result<Arc<dyn Connector>, ConnectorError> {
        self.connectors
            .get(&kind)
            .cloned()
            .ok_or_else(|| ConnectorError::Unsupported {
                message: format!(
                    "connector type '{}' is not available on this node",
                    kind.as_str()
                ),
            })
    }

    /// The kinds registered, sorted by name.
    pub fn kinds(&self) -> Vec<ConnectorKind> {
        let mut kinds: Vec<_> = self.connectors.keys().copied().collect();
        kinds.sort_by_key(|k| k.as_str());
        kinds
    }
}

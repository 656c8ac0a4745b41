//! [`StaticDiscovery`] (`static`): a fixed list of addresses per service,
//! all taken as healthy. Registering is a no-op: whoever writes the list
//! registers the nodes.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{
    split_host_port, Discovery, DiscoveryError, Instance, Registration, RegistrationHandle,
};

const PROVIDER: &str = "static";

/// Service name → `host:port` addresses.
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    services: BTreeMap<String, Vec<String>>,
}

impl StaticDiscovery {
    /// Checks that every address is `host:port`.
    pub fn new(services: BTreeMap<String, Vec<String>>) -> Result<Self, DiscoveryError> {
        for (service, addresses) in &services {
            for address in addresses {
                split_host_port(address).map_err(|e| DiscoveryError::InvalidSettings {
                    provider: PROVIDER,
                    message: format!("service {service:?}: {e}"),
                })?;
            }
        }
        Ok(StaticDiscovery { services })
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError> {
        reg.validate()?;
        Ok(RegistrationHandle::noop(PROVIDER, &reg.instance_id))
    }

    /// The configured addresses, in order; a service not in the list has
    /// no instances.
    async fn discover(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let addresses = self.services.get(service).map(Vec::as_slice).unwrap_or(&[]);
        Ok(addresses
            .iter()
            .map(|address| Instance {
                id: address.clone(),
                service: service.to_string(),
                address: address.clone(),
                tags: Vec::new(),
                healthy: true,
                meta: BTreeMap::new(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_the_configured_addresses_and_nothing_for_other_services() {
        let discovery = StaticDiscovery::new(BTreeMap::from([(
            "vega-worker".to_string(),
            vec!["10.0.0.1:8080".to_string(), "[::1]:8080".to_string()],
        )]))
        .unwrap();
        let found = discovery.discover("vega-worker").await.unwrap();
        let addresses: Vec<_> = found.iter().map(|i| i.address.as_str()).collect();
        assert_eq!(addresses, ["10.0.0.1:8080", "[::1]:8080"]);
        assert!(found
            .iter()
            .all(|i| i.healthy && i.service == "vega-worker"));
        assert!(discovery.discover("other").await.unwrap().is_empty());
    }

    #[test]
    fn refuses_addresses_without_a_port() {
        let err = StaticDiscovery::new(BTreeMap::from([(
            "s".to_string(),
            vec!["10.0.0.1".to_string()],
        )]))
        .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::InvalidSettings { .. }),
            "{err}"
        );
    }
}

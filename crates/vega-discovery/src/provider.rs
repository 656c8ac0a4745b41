//! [`Provider`]: the configured provider and its settings, built into the
//! `Arc<dyn Discovery>` the server keeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    ConsulDiscovery, Discovery, DiscoveryError, DnsDiscovery, EtcdDiscovery, Secret,
    StaticDiscovery,
};

/// Which registry to use, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// Service name → `host:port` addresses.
    Static {
        services: BTreeMap<String, Vec<String>>,
    },
    /// Service name → DNS name (`host:port` or `_service._proto.domain`);
    /// `resolver`: the name server to ask (`None`: the system's).
    Dns {
        names: BTreeMap<String, String>,
        resolver: Option<SocketAddr>,
    },
    /// Client URLs of the cluster's members, the key prefix (empty: the
    /// default), and the lease TTL (`None`: the registration's TTL).
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        lease_ttl: Option<Duration>,
    },
    /// The agent's HTTP address, the ACL token, and the datacenter to
    /// discover in (`None`: the agent's).
    Consul {
        address: String,
        token: Option<Secret>,
        datacenter: Option<String>,
    },
}

impl Provider {
    /// The provider's configured name.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Static { .. } => "static",
            Provider::Dns { .. } => "dns",
            Provider::Etcd { .. } => "etcd",
            Provider::Consul { .. } => "consul",
        }
    }

    /// Checks the settings and makes the provider. Nothing is contacted
    /// yet: an unreachable backend shows at the first call.
    pub fn build(&self) -> Result<Arc<dyn Discovery>, DiscoveryError> {
        Ok(match self {
            Provider::Static { services } => Arc::new(StaticDiscovery::new(services.clone())?),
            Provider::Dns { names, resolver } => {
                Arc::new(DnsDiscovery::new(names.clone(), *resolver)?)
            }
            Provider::Etcd {
                endpoints,
                prefix,
                lease_ttl,
            } => Arc::new(EtcdDiscovery::new(endpoints, prefix, *lease_ttl)?),
            Provider::Consul {
                address,
                token,
                datacenter,
            } => Arc::new(ConsulDiscovery::new(
                address,
                token.clone(),
                datacenter.clone(),
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_builds_under_its_name() {
        let providers = [
            Provider::Static {
                services: BTreeMap::new(),
            },
            Provider::Dns {
                names: BTreeMap::from([("api".to_string(), "_api._tcp.example.test".to_string())]),
                resolver: None,
            },
            Provider::Etcd {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: String::new(),
                lease_ttl: None,
            },
            Provider::Consul {
                address: "127.0.0.1:8500".into(),
                token: Some(Secret::new("t")),
                datacenter: None,
            },
        ];
        for provider in providers {
            assert_eq!(provider.build().unwrap().name(), provider.name());
        }
    }

    #[test]
    fn bad_settings_are_reported_at_build() {
        let bad = Provider::Etcd {
            endpoints: vec!["https://etcd:2379".into()],
            prefix: String::new(),
            lease_ttl: None,
        };
        assert!(matches!(
            bad.build().unwrap_err(),
            DiscoveryError::InvalidSettings { .. }
        ));
        let bad = Provider::Dns {
            names: BTreeMap::from([("api".to_string(), "no-port".to_string())]),
            resolver: None,
        };
        assert!(bad.build().is_err());
    }

    #[test]
    fn printed_settings_hide_the_token() {
        let provider = Provider::Consul {
            address: "127.0.0.1:8500".into(),
            token: Some(Secret::new("s3cret")),
            datacenter: None,
        };
        assert!(!format!("{provider:?}").contains("s3cret"));
    }
}

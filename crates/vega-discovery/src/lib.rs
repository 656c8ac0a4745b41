//! Service discovery and registration for Vega nodes.
//!
//! A node registers itself ([`Discovery::register`]) so that load
//! balancers and peers find it, and looks up the healthy instances of the
//! services it calls ([`Discovery::discover`]). Four providers implement
//! [`Discovery`]:
//!
//! | provider | register | discover |
//! |---|---|---|
//! | [`StaticDiscovery`] (`static`) | no-op | a fixed list of addresses per service |
//! | [`DnsDiscovery`] (`dns`) | no-op: DNS is managed outside Vega | A/AAAA of `host:port`, SRV of `_service._proto.domain` |
//! | [`EtcdDiscovery`] (`etcd`) | a key under a lease, kept alive | a range read by prefix |
//! | [`ConsulDiscovery`] (`consul`) | an agent service with a TTL or HTTP check | the health API, passing only |
//!
//! The settings come in as plain structs ([`Provider`], [`Registration`]);
//! reading them from the configuration file is the config crate's job.
//! [`Provider::build`] makes the `Arc<dyn Discovery>` the server keeps, and
//! [`register_with_backoff`] registers at start-up while the backend is not
//! reachable yet.
//!
//! A registration lives as long as its [`RegistrationHandle`]: a background
//! task refreshes it (etcd lease keep-alive, Consul TTL check pass) and
//! registers again when the backend has forgotten it;
//! [`RegistrationHandle::deregister`] removes it at once, dropping the
//! handle only stops the refreshing, so the entry expires after its TTL.
//!
//! Only plain HTTP is spoken to etcd and Consul (the workspace builds its
//! HTTP client without TLS); put a local agent or a TLS-terminating proxy in
//! front of a remote cluster.

mod address;
mod consul;
mod dns;
mod error;
mod etcd;
mod handle;
mod http;
mod provider;
mod retry;
mod secret;
mod static_list;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use address::{join_host_port, split_host_port};
pub use consul::{ConsulDiscovery, CONSUL_DEREGISTER_CRITICAL_AFTER};
pub use dns::{DnsDiscovery, DnsName};
pub use error::DiscoveryError;
pub use etcd::{EtcdDiscovery, DEFAULT_ETCD_PREFIX};
pub use handle::RegistrationHandle;
pub use provider::Provider;
pub use retry::{
    register_with_backoff, RetryAttempt, INITIAL_REGISTER_BACKOFF, MAX_REGISTER_BACKOFF,
};
pub use secret::Secret;
pub use static_list::StaticDiscovery;

/// This node's entry in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The service this node is an instance of, e.g. `vega-gateway`.
    pub service_name: String,
    /// Unique among the instances of the service, e.g. the node id.
    pub instance_id: String,
    /// `host:port` of this node's API, as the callers should reach it.
    pub address: String,
    /// The URL a registry that runs checks itself (Consul) probes, e.g.
    /// `http://127.0.0.1:8080/health/ready`. `None`: the registry relies on
    /// this node refreshing its entry within [`ttl`](Self::ttl).
    pub health_url: Option<String>,
    pub tags: Vec<String>,
    /// How long the entry outlives this node's last refresh (etcd lease
    /// TTL, Consul TTL check). Refreshes happen every third of it.
    pub ttl: Duration,
    /// How often the registry probes [`health_url`](Self::health_url).
    pub check_interval: Duration,
}

impl Registration {
    /// Checks what every provider needs: non-empty names without `/` or
    /// control characters (they become key parts and URL path segments), a
    /// `host:port` address, a TTL of at least a second, and a positive check
    /// interval when a health URL is given.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let invalid = |message: String| Err(DiscoveryError::InvalidRegistration(message));
        for (field, value) in [
            ("service_name", &self.service_name),
            ("instance_id", &self.instance_id),
        ] {
            if value.is_empty() {
                return invalid(format!("{field} is empty"));
            }
            if value.contains('/') || value.chars().any(char::is_control) {
                return invalid(format!(
                    "{field} {value:?} contains '/' or a control character"
                ));
            }
        }
        split_host_port(&self.address)
            .map_err(|e| DiscoveryError::InvalidRegistration(format!("address: {e}")))?;
        if self.ttl < Duration::from_secs(1) {
            return invalid(format!(
                "ttl {:?} is below one second (etcd leases count whole seconds)",
                self.ttl
            ));
        }
        if self.health_url.is_some() && self.check_interval.is_zero() {
            return invalid("check_interval must be positive when health_url is set".into());
        }
        Ok(())
    }
}

/// One instance of a service, as discovery finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub service: String,
    /// `host:port` to call.
    pub address: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub healthy: bool,
    /// Provider-specific details (e.g. SRV `priority` and `weight`).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// A registry of service instances.
#[async_trait]
pub trait Discovery: Send + Sync + std::fmt::Debug {
    /// The provider's name as configured: `static`, `dns`, `etcd`, `consul`.
    fn name(&self) -> &'static str;

    /// Registers this node and keeps the registration alive until the
    /// handle is deregistered or dropped.
    async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError>;

    /// The healthy instances of `service` (empty when there are none).
    async fn discover(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            service_name: "vega-gateway".into(),
            instance_id: "node-1".into(),
            address: "127.0.0.1:8080".into(),
            health_url: None,
            tags: vec![],
            ttl: Duration::from_secs(10),
            check_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_complete_registration_is_valid() {
        assert!(registration().validate().is_ok());
    }

    #[test]
    fn registrations_with_bad_fields_are_refused() {
        let cases: Vec<fn(&mut Registration)> = vec![
            |r| r.service_name.clear(),
            |r| r.instance_id = "a/b".into(),
            |r| r.address = "no-port".into(),
            |r| r.ttl = Duration::from_millis(500),
            |r| {
                r.health_url = Some("http://127.0.0.1:8080/health/ready".into());
                r.check_interval = Duration::ZERO;
            },
        ];
        for change in cases {
            let mut reg = registration();
            change(&mut reg);
            let err = reg.validate().unwrap_err();
            assert!(
                matches!(err, DiscoveryError::InvalidRegistration(_)),
                "{err}"
            );
        }
    }

    #[test]
    fn instances_read_json_without_optional_fields() {
        let instance: Instance = serde_json::from_str(
            r#"{"id":"a","service":"s","address":"10.0.0.1:80","healthy":true}"#,
        )
        .unwrap();
        assert!(instance.tags.is_empty() && instance.meta.is_empty());
    }
}

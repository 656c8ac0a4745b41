//! This node in service discovery (`service_discovery`): it registers
//! itself (name, address of its API, health URL, tags, TTL or check) with
//! the configured provider — static, DNS, etcd or Consul — and finds the
//! healthy instances of the services listed under `discovery.services`.
//!
//! Registration runs in the background: an unreachable backend at start is
//! retried with full-jitter backoff, and until the first registration
//! succeeds `/health/ready` is 503 naming the last error (a node nobody can
//! discover should not take traffic from a balancer that discovers it).
//! Later refresh failures show in `/health` (degraded); the entry expires
//! by itself if the node stops refreshing it. A graceful stop deregisters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;
use vega_config::{DiscoveryProvider, ServiceDiscoveryConfig};
use vega_discovery::{Discovery, Instance, Provider, Registration, RegistrationHandle};

/// How long start-up registration keeps retrying: as long as the node
/// runs (the backoff is capped, so attempts go on every few seconds).
const REGISTER_RETRY_FOR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The TTL of the registration when the configuration gives none: three
/// refreshes a minute, gone half a minute after the node stopped.
const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct RegistrationState {
    /// Whether the node is registered (always true without registration).
    registered: bool,
    last_error: Option<String>,
    handle: Option<RegistrationHandle>,
}

/// The discovery side of this node.
pub struct DiscoveryAgent {
    discovery: Arc<dyn Discovery>,
    config: ServiceDiscoveryConfig,
    state: Mutex<RegistrationState>,
}

/// One discovered service, as `GET /api/v1/discovery` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveredView {
    pub name: String,
    /// How calls to it are spread (`round_robin`, `least_connections`,
    /// `ip_hash`).
    pub load_balance: String,
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<Instance>,
    /// Why the instances could not be listed, if they could not.
    pub error: Option<String>,
}

/// The provider of the configuration.
fn provider(config: &ServiceDiscoveryConfig) -> Result<Provider, String> {
    Ok(match config.provider {
        DiscoveryProvider::Static => Provider::Static {
            services: config.static_.services.clone(),
        },
        DiscoveryProvider::Dns => Provider::Dns {
            names: config.dns.services.clone(),
            resolver: config.dns.resolver,
        },
        DiscoveryProvider::Etcd => Provider::Etcd {
            endpoints: config.etcd.endpoints.clone(),
            prefix: config.etcd.prefix.clone(),
            lease_ttl: Some(config.etcd.lease_ttl.into()),
        },
        DiscoveryProvider::Consul => Provider::Consul {
            address: config.consul.address.clone(),
            token: config
                .consul
                .token
                .as_ref()
                .map(|t| vega_discovery::Secret::new(t.expose())),
            datacenter: config.consul.datacenter.clone(),
        },
        DiscoveryProvider::Kubernetes => {
            return Err(
                "service_discovery.provider: kubernetes is not supported; use dns with the service's headless name"
                    .into(),
            )
        }
    })
}

impl DiscoveryAgent {
    pub fn new(config: &ServiceDiscoveryConfig) -> Result<Arc<Self>, String> {
        let discovery = provider(config)?
            .build()
            .map_err(|e| format!("service_discovery: {e}"))?;
        Ok(Arc::new(DiscoveryAgent {
            discovery,
            config: config.clone(),
            state: Mutex::new(RegistrationState {
                registered: config.registration.is_none(),
                ..Default::default()
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistrationState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers this node (its API at `api`, id `node`) in the background,
    /// retrying until it succeeds.
    pub fn spawn_registration(self: &Arc<Self>, node: &vega_core::Id, api: std::net::SocketAddr) {
        let Some(reg) = &self.config.registration else {
            return;
        };
        let registration = Registration {
            service_name: reg.service_name.clone(),
            instance_id: node.to_string(),
            address: api.to_string(),
            health_url: reg.health_check.as_ref().map(|h| h.http.clone()),
            tags: reg.tags.clone(),
            ttl: reg.ttl.map_or(DEFAULT_REGISTRATION_TTL, Into::into),
            check_interval: reg
                .health_check
                .as_ref()
                .map_or(Duration::from_secs(10), |h| h.interval.into()),
        };
        let agent = self.clone();
        tokio::spawn(async move {
            let result = vega_discovery::register_with_backoff(
                agent.discovery.as_ref(),
                &registration,
                REGISTER_RETRY_FOR,
                |attempt| {
                    tracing::warn!(provider = agent.discovery.name(), attempt = attempt.attempt,
                        error = %attempt.error, retry_in_ms = attempt.delay.as_millis() as u64,
                        "registering this node in service discovery failed; retrying");
                    agent.lock().last_error = Some(attempt.error.to_string());
                },
            )
            .await;
            let mut state = agent.lock();
            match result {
                Ok(handle) => {
                    tracing::info!(provider = agent.discovery.name(),
                        service = %registration.service_name, address = %registration.address,
                        "registered in service discovery");
                    state.registered = true;
                    state.last_error = None;
                    state.handle = Some(handle);
                }
                Err(e) => {
                    tracing::error!(provider = agent.discovery.name(), error = %e,
                        "registering this node in service discovery failed for good");
                    state.last_error = Some(e.to_string());
                }
            }
        });
    }

    /// `None` while registered (or nothing to register); else why not.
    pub fn not_ready(&self) -> Option<String> {
        let state = self.lock();
        (!state.registered).then(|| {
            format!(
                "not registered in service discovery ({}) yet: {}",
                self.discovery.name(),
                state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "first attempt running".into())
            )
        })
    }

    /// The last refresh error of a registration that succeeded once.
    pub fn refresh_error(&self) -> Option<String> {
        let state = self.lock();
        state
            .handle
            .as_ref()
            .and_then(|h| h.last_error())
            .map(|e| e.to_string())
    }

    pub fn provider_name(&self) -> &'static str {
        self.discovery.name()
    }

    /// The healthy instances of every service of `discovery.services`.
    pub async fn discovered(&self) -> Vec<DiscoveredView> {
        let mut out = Vec::new();
        for service in &self.config.discovery.services {
            let (instances, error) = match self.discovery.discover(&service.name).await {
                Ok(i) => (i, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            out.push(DiscoveredView {
                name: service.name.clone(),
                load_balance: service.load_balance.as_str().to_string(),
                instances,
                error,
            });
        }
        out
    }

    /// Removes this node's entry (a graceful stop).
    pub async fn deregister(&self) {
        let handle = self.lock().handle.take();
        if let Some(handle) = handle {
            match handle.deregister().await {
                Ok(()) => tracing::info!("deregistered from service discovery"),
                Err(e) => tracing::warn!(error = %e,
                    "deregistering from service discovery failed; the entry expires by itself"),
            }
        }
    }
}

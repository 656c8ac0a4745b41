//! [`ConsulDiscovery`] (`consul`): instances as services of a Consul
//! agent, over its HTTP API.
//!
//! - register: `PUT /v1/agent/service/register` with `{ID, Name, Tags,
//!   Address, Port, Check}`. Without a health URL the check is a TTL check
//!   (`{TTL, DeregisterCriticalServiceAfter}`): Consul starts it critical,
//!   so it is passed at once (`PUT /v1/agent/check/pass/service:<id>`) and
//!   then every third of the TTL by the handle; when the agent answers 404
//!   (it lost the service, e.g. restarted without its data directory) the
//!   handle registers again. With a health URL the check is an HTTP check
//!   (`{HTTP, Interval, Timeout, DeregisterCriticalServiceAfter}`) that the
//!   agent runs itself; there is nothing to refresh, and the agent keeps
//!   the definition in its own data directory.
//! - deregister: `PUT /v1/agent/service/deregister/<id>`.
//! - discover: `GET /v1/health/service/<name>?passing=true` (with `&dc=`
//!   when a datacenter is configured); an entry is healthy when all its
//!   checks pass. The address is the service's, or the node's when the
//!   service has none, as Consul's own DNS interface does.
//!
//! The token goes in `X-Consul-Token` (marked sensitive, never logged).
//! A 403 answering a wrong or missing token (`ACL not found`) is
//! [`DiscoveryError::Unauthenticated`], one for a token without the
//! permission [`DiscoveryError::Forbidden`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{base_url, client, excerpt, path_segment, transport_error};
use crate::{
    join_host_port, split_host_port, Discovery, DiscoveryError, Instance, Registration,
    RegistrationHandle, Secret,
};

const PROVIDER: &str = "consul";

/// `DeregisterCriticalServiceAfter`: Consul's smallest value (its reaper
/// runs every 30 s). A dead node is out of discovery as soon as its check
/// is critical; this only removes the stale entry, and a node that comes
/// back registers again.
pub const CONSUL_DEREGISTER_CRITICAL_AFTER: Duration = Duration::from_secs(60);

/// The longest HTTP check timeout: a readiness endpoint answers in
/// milliseconds; five seconds flags a stuck node well before Consul's
/// default of ten. Never longer than the check interval.
const HTTP_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// TTL check passes per TTL: three tries before the check goes critical,
/// so one lost request does not take the instance out of discovery.
const PASSES_PER_TTL: u32 = 3;

/// The header Consul reads the ACL token from.
const TOKEN_HEADER: &str = "X-Consul-Token";

/// Instances as Consul agent services; see the module documentation.
#[derive(Debug, Clone)]
pub struct ConsulDiscovery {
    client: Arc<ConsulClient>,
}

impl ConsulDiscovery {
    /// `address`: the agent's HTTP address (`http://host:port` or
    /// `host:port`; usually the local agent, `127.0.0.1:8500`). `token`: the
    /// ACL token, if ACLs are on. `datacenter`: where discovery looks
    /// (`None`: the agent's own); registration always goes to the agent.
    pub fn new(
        address: &str,
        token: Option<Secret>,
        datacenter: Option<String>,
    ) -> Result<Self, DiscoveryError> {
        let token_header = match &token {
            Some(token) => {
                let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                    DiscoveryError::InvalidSettings {
                        provider: PROVIDER,
                        message: "the token contains characters not allowed in a header".into(),
                    }
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(ConsulDiscovery {
            client: Arc::new(ConsulClient {
                base: base_url(PROVIDER, address)?,
                token: token_header,
                datacenter: datacenter.filter(|dc| !dc.is_empty()),
                http: client(PROVIDER)?,
            }),
        })
    }
}

#[async_trait]
impl Discovery for ConsulDiscovery {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError> {
        reg.validate()?;
        let body = register_body(reg)?;
        let client = self.client.clone();
        client.register(&body).await?;
        let id = reg.instance_id.clone();
        let deregister_client = self.client.clone();
        let deregister_id = id.clone();
        let deregister = move || async move {
            deregister_client
                .put(
                    &format!(
                        "/v1/agent/service/deregister/{}",
                        path_segment(&deregister_id)
                    ),
                    None,
                )
                .await
                .map(|_| ())
        };
        if reg.health_url.is_some() {
            // The agent runs the HTTP check; there is nothing to refresh.
            return Ok(RegistrationHandle::removable(PROVIDER, &id, deregister));
        }
        // TTL checks start critical: pass it now so the instance is found.
        client.pass(&id).await?;
        let refresh = move || {
            let (client, body, id) = (client.clone(), body.clone(), id.clone());
            async move {
                match client.pass(&id).await {
                    Err(DiscoveryError::Rejected { status: 404, .. }) => {
                        tracing::info!(instance = %id, "the Consul agent lost the service; registering again");
                        client.register(&body).await?;
                        client.pass(&id).await
                    }
                    other => other,
                }
            }
        };
        Ok(RegistrationHandle::keep_alive(
            PROVIDER,
            &reg.instance_id,
            reg.ttl / PASSES_PER_TTL,
            refresh,
            deregister,
        ))
    }

    async fn discover(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let mut path = format!("/v1/health/service/{}?passing=true", path_segment(service));
        if let Some(dc) = &self.client.datacenter {
            path.push_str(&format!("&dc={}", path_segment(dc)));
        }
        let text = self.client.request(Method::GET, &path, None).await?;
        let entries: Vec<HealthEntry> =
            serde_json::from_str(&text).map_err(|e| DiscoveryError::BadResponse {
                provider: PROVIDER,
                endpoint: self.client.base.clone(),
                message: format!("the health answer: {e}: {}", excerpt(&text)),
            })?;
        Ok(entries
            .into_iter()
            .map(HealthEntry::into_instance)
            .filter(|i| i.healthy)
            .collect())
    }
}

/// The agent's HTTP API.
struct ConsulClient {
    base: String,
    token: Option<HeaderValue>,
    datacenter: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulClient")
            .field("base", &self.base)
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::secret::REDACTED),
            )
            .field("datacenter", &self.datacenter)
            .finish()
    }
}

impl ConsulClient {
    async fn register(&self, body: &Value) -> Result<(), DiscoveryError> {
        self.put("/v1/agent/service/register", Some(body))
            .await
            .map(|_| ())
    }

    async fn pass(&self, instance_id: &str) -> Result<(), DiscoveryError> {
        let check = format!("service:{instance_id}");
        self.put(
            &format!("/v1/agent/check/pass/{}", path_segment(&check)),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn put(&self, path: &str, body: Option<&Value>) -> Result<String, DiscoveryError> {
        self.request(Method::PUT, path, body).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, DiscoveryError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(PROVIDER, &self.base, &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(PROVIDER, &self.base, &e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(consul_error(
            &self.base,
            status,
            &text,
            self.token.is_some(),
        ))
    }
}

/// Maps an error answer of the agent.
fn consul_error(endpoint: &str, status: u16, body: &str, sent_token: bool) -> DiscoveryError {
    let message = excerpt(body);
    match status {
        401 => DiscoveryError::Unauthenticated {
            provider: PROVIDER,
            message,
        },
        403 if !sent_token || body.contains("ACL not found") => DiscoveryError::Unauthenticated {
            provider: PROVIDER,
            message,
        },
        403 => DiscoveryError::Forbidden {
            provider: PROVIDER,
            message,
        },
        429 | 500..=599 => DiscoveryError::Unavailable {
            provider: PROVIDER,
            endpoint: endpoint.to_string(),
            message: format!("HTTP {status}: {message}"),
        },
        _ => DiscoveryError::Rejected {
            provider: PROVIDER,
            status,
            message,
        },
    }
}

/// The agent service definition for `reg`.
pub(crate) fn register_body(reg: &Registration) -> Result<Value, DiscoveryError> {
    let (host, port) = split_host_port(&reg.address)
        .map_err(|e| DiscoveryError::InvalidRegistration(format!("address: {e}")))?;
    let deregister_after = go_duration(CONSUL_DEREGISTER_CRITICAL_AFTER);
    let check = match &reg.health_url {
        Some(url) => json!({
            "HTTP": url,
            "Interval": go_duration(reg.check_interval),
            "Timeout": go_duration(reg.check_interval.min(HTTP_CHECK_TIMEOUT)),
            "DeregisterCriticalServiceAfter": deregister_after,
        }),
        None => json!({
            "TTL": go_duration(reg.ttl),
            "DeregisterCriticalServiceAfter": deregister_after,
        }),
    };
    Ok(json!({
        "ID": reg.instance_id,
        "Name": reg.service_name,
        "Tags": reg.tags,
        "Address": host,
        "Port": port,
        "Check": check,
    }))
}

/// A duration as Go writes it for Consul: whole seconds as `"10s"`,
/// anything finer in milliseconds (`"1500ms"`; at least `"1ms"`).
pub(crate) fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis().max(1))
    }
}

/// One entry of `/v1/health/service/<name>`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
    #[serde(default)]
    checks: Option<Vec<HealthCheck>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    address: String,
    port: u16,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    status: String,
}

impl HealthEntry {
    fn into_instance(self) -> Instance {
        let healthy = self
            .checks
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|c| c.status == "passing");
        let host = if self.service.address.is_empty() {
            self.node.address
        } else {
            self.service.address
        };
        let mut meta = self.service.meta.unwrap_or_default();
        if !self.node.node.is_empty() {
            meta.insert("consul_node".to_string(), self.node.node);
        }
        Instance {
            id: self.service.id,
            service: self.service.service,
            address: join_host_port(&host, self.service.port),
            tags: self.service.tags.unwrap_or_default(),
            healthy,
            meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(health_url: Option<&str>) -> Registration {
        Registration {
            service_name: "vega-gateway".into(),
            instance_id: "node-1".into(),
            address: "10.0.0.5:8080".into(),
            health_url: health_url.map(str::to_string),
            tags: vec!["api".into(), "v2".into()],
            ttl: Duration::from_secs(15),
            check_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn ttl_registrations_have_consuls_shape() {
        assert_eq!(
            register_body(&registration(None)).unwrap(),
            json!({
                "ID": "node-1",
                "Name": "vega-gateway",
                "Tags": ["api", "v2"],
                "Address": "10.0.0.5",
                "Port": 8080,
                "Check": {"TTL": "15s", "DeregisterCriticalServiceAfter": "60s"},
            })
        );
    }

    #[test]
    fn http_registrations_carry_interval_and_a_bounded_timeout() {
        let body = register_body(&registration(Some("http://10.0.0.5:8080/health/ready"))).unwrap();
        assert_eq!(
            body["Check"],
            json!({
                "HTTP": "http://10.0.0.5:8080/health/ready",
                "Interval": "10s",
                "Timeout": "5s",
                "DeregisterCriticalServiceAfter": "60s",
            })
        );
    }

    #[test]
    fn durations_are_written_the_go_way() {
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_nanos(10)), "1ms");
    }

    #[test]
    fn health_entries_become_instances() {
        let entries: Vec<HealthEntry> = serde_json::from_value(json!([
            {
                "Node": {"ID": "x", "Node": "n1", "Address": "10.0.0.9", "Datacenter": "dc1"},
                "Service": {"ID": "a", "Service": "api", "Tags": null, "Address": "",
                            "Port": 80, "Meta": null},
                "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceID": ""},
                           {"CheckID": "service:a", "Status": "passing", "ServiceID": "a"}]
            },
            {
                "Node": {"Node": "n2", "Address": "10.0.0.10"},
                "Service": {"ID": "b", "Service": "api", "Tags": ["x"], "Address": "::1",
                            "Port": 81, "Meta": {"k": "v"}},
                "Checks": [{"CheckID": "service:b", "Status": "critical", "ServiceID": "b"}]
            }
        ]))
        .unwrap();
        let instances: Vec<Instance> = entries
            .into_iter()
            .map(HealthEntry::into_instance)
            .collect();
        assert_eq!(instances[0].address, "10.0.0.9:80");
        assert!(instances[0].healthy && instances[0].tags.is_empty());
        assert_eq!(instances[0].meta["consul_node"], "n1");
        assert_eq!(instances[1].address, "[::1]:81");
        assert!(!instances[1].healthy);
        assert_eq!(instances[1].meta["k"], "v");
    }

    #[test]
    fn acl_refusals_are_told_apart() {
        let e = consul_error("http://a", 403, "ACL not found", true);
        assert!(matches!(e, DiscoveryError::Unauthenticated { .. }), "{e}");
        let e = consul_error("http://a", 403, "Permission denied", false);
        assert!(matches!(e, DiscoveryError::Unauthenticated { .. }), "{e}");
        let e = consul_error(
            "http://a",
            403,
            "Permission denied: token lacks service:write",
            true,
        );
        assert!(matches!(e, DiscoveryError::Forbidden { .. }), "{e}");
        let e = consul_error("http://a", 500, "No cluster leader", true);
        assert!(matches!(e, DiscoveryError::Unavailable { .. }), "{e}");
    }

    #[test]
    fn the_token_is_not_printed() {
        let d = ConsulDiscovery::new("127.0.0.1:8500", Some(Secret::new("s3cret")), None).unwrap();
        let printed = format!("{d:?}");
        assert!(
            !printed.contains("s3cret") && printed.contains("***"),
            "{printed}"
        );
    }
}

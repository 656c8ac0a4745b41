//! The `service_discovery` block (seed `operations-and-reliability.md`
//! §17.3): where this node registers itself, which services it looks up,
//! and the settings of the provider that holds the lists: a static list,
//! DNS, etcd or Consul.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::balance::Algorithm;
use crate::duration::HumanDuration;
use crate::keypath::{render, Key, PathBuild};
use crate::net::{is_dns_name, parse_address, parse_http_url};
use crate::secret::Secret;
use crate::validate::Findings;

/// A static list needs nothing else running, so a block that does not
/// name a provider works on its own.
pub const DEFAULT_DISCOVERY_PROVIDER: DiscoveryProvider = DiscoveryProvider::Static;

/// The name this node registers under when the block does not say: the
/// product's name, which other nodes and tools look Vega up by.
pub const DEFAULT_REGISTRATION_SERVICE_NAME: &str = "vega";

/// The seed's check interval: the provider notices a dead node within a
/// few intervals, at the cost of one cheap request every ten seconds.
pub const DEFAULT_REGISTRATION_CHECK_INTERVAL: HumanDuration = HumanDuration::from_secs(10);

/// The same choice as the load balancer's and for the same reason: the
/// calls Vega makes take from milliseconds to minutes, so the instance with
/// the fewest calls in flight is the best next one.
pub const DEFAULT_DISCOVERY_LOAD_BALANCE: Algorithm = Algorithm::LeastConnections;

/// Where registrations live in etcd: one key per instance below
/// `<prefix><service>/`, out of the way of anything else in the cluster.
pub const DEFAULT_ETCD_PREFIX: &str = "/vega/services/";

/// The lease of this node's etcd registration: as `cluster.lease_ttl`, a
/// node that stops renewing disappears from the lists within ten seconds,
/// while renewals every few seconds ride out a brief etcd election.
pub const DEFAULT_ETCD_LEASE_TTL: HumanDuration = HumanDuration::from_secs(10);

/// The local Consul agent's HTTP API on its default port: Consul runs an
/// agent on every host, and clients talk to their own.
pub const DEFAULT_CONSUL_ADDRESS: &str = "http://127.0.0.1:8500";

/// Longest accepted service name or tag; registries and DNS labels keep
/// them short.
pub const MAX_SERVICE_NAME_LEN: usize = 63;

/// Who holds the lists of service instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryProvider {
    /// The lists in `service_discovery.static.services`. The default.
    #[default]
    Static,
    /// DNS records named in `service_discovery.dns.services`.
    Dns,
    /// An etcd cluster (`service_discovery.etcd`).
    Etcd,
    /// A Consul agent (`service_discovery.consul`).
    Consul,
    /// Kubernetes endpoints. Accepted by the parser so that the seed's
    /// list of providers reads as written, but not supported by this build:
    /// validation refuses it (use `dns` with the headless service's name).
    Kubernetes,
}

impl DiscoveryProvider {
    /// The name used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscoveryProvider::Static => "static",
            DiscoveryProvider::Dns => "dns",
            DiscoveryProvider::Etcd => "etcd",
            DiscoveryProvider::Consul => "consul",
            DiscoveryProvider::Kubernetes => "kubernetes",
        }
    }
}

/// The `service_discovery` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceDiscoveryConfig {
    /// `static` (default), `dns`, `etcd` or `consul`; `kubernetes` is
    /// refused by this build.
    pub provider: DiscoveryProvider,
    /// How this node registers itself (etcd and Consul only). Unset: it
    /// does not register.
    pub registration: Option<RegistrationConfig>,
    /// The services this node looks up.
    pub discovery: DiscoveryConfig,
    /// Settings of the `static` provider.
    #[serde(rename = "static")]
    pub static_: StaticDiscoveryConfig,
    /// Settings of the `dns` provider.
    pub dns: DnsDiscoveryConfig,
    /// Settings of the `etcd` provider.
    pub etcd: EtcdDiscoveryConfig,
    /// Settings of the `consul` provider.
    pub consul: ConsulDiscoveryConfig,
}

/// How this node registers itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// The name this node is listed under.
    pub service_name: String,
    /// A check the provider runs against this node (Consul only).
    pub health_check: Option<RegistrationHealthCheck>,
    /// Tags listed with this node, e.g. `api`, `v2`.
    pub tags: Vec<String>,
    /// A time-to-live check instead of (or besides) `health_check`: the
    /// node reports itself alive at least this often, and the provider
    /// marks it failed when it stops (Consul only; etcd uses
    /// `etcd.lease_ttl`).
    pub ttl: Option<HumanDuration>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            service_name: DEFAULT_REGISTRATION_SERVICE_NAME.to_string(),
            health_check: None,
            tags: Vec::new(),
            ttl: None,
        }
    }
}

/// A check the provider runs against this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationHealthCheck {
    /// The URL the provider requests; 2xx passes. Required.
    pub http: String,
    /// Time between two checks.
    #[serde(default = "default_registration_check_interval")]
    pub interval: HumanDuration,
    /// How long a check waits for its answer; shorter than `interval`.
    /// Unset: the provider's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

fn default_registration_check_interval() -> HumanDuration {
    DEFAULT_REGISTRATION_CHECK_INTERVAL
}

/// The services this node looks up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Each service by name, with how calls are spread over its instances.
    pub services: Vec<DiscoveredService>,
}

/// A service this node looks up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredService {
    /// Its name at the provider. Required.
    pub name: String,
    /// How calls are spread over its instances: `round_robin`,
    /// `least_connections` (default) or `ip_hash` (each Vega node keeps
    /// using one instance, by a hash of its own address).
    #[serde(default = "default_discovery_load_balance")]
    pub load_balance: Algorithm,
}

fn default_discovery_load_balance() -> Algorithm {
    DEFAULT_DISCOVERY_LOAD_BALANCE
}

/// The `static` provider: the instances of each service, written down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticDiscoveryConfig {
    /// Per service, its instances' `host:port` addresses (at least one).
    pub services: BTreeMap<String, Vec<String>>,
}

/// The `dns` provider: the instances of each service, looked up in DNS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsDiscoveryConfig {
    /// Per service, the name to look up: `host:port` for A/AAAA records
    /// (every address at that port), or an SRV name such as
    /// `_http._tcp.vega-worker.example.com` (addresses and ports from the
    /// SRV records).
    pub services: BTreeMap<String, String>,
    /// The DNS server to ask, `IP:port`. Unset: the system's resolver.
    pub resolver: Option<SocketAddr>,
}

/// The `etcd` provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdDiscoveryConfig {
    /// The cluster's client URLs, e.g. `http://10.0.0.5:2379` (at least one
    /// when the provider is etcd).
    pub endpoints: Vec<String>,
    /// Registrations live below this key.
    pub prefix: String,
    /// The lease of this node's registration: it disappears this long after
    /// the node stops renewing. Whole seconds (etcd's unit), at least `1s`.
    pub lease_ttl: HumanDuration,
}

impl Default for EtcdDiscoveryConfig {
    fn default() -> Self {
        EtcdDiscoveryConfig {
            endpoints: Vec::new(),
            prefix: DEFAULT_ETCD_PREFIX.to_string(),
            lease_ttl: DEFAULT_ETCD_LEASE_TTL,
        }
    }
}

/// The `consul` provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulDiscoveryConfig {
    /// The agent's HTTP API.
    pub address: String,
    /// An ACL token. Never printed.
    pub token: Option<Secret>,
    /// The datacenter to register in and look up. Unset: the agent's.
    pub datacenter: Option<String>,
}

impl Default for ConsulDiscoveryConfig {
    fn default() -> Self {
        ConsulDiscoveryConfig {
            address: DEFAULT_CONSUL_ADDRESS.to_string(),
            token: None,
            datacenter: None,
        }
    }
}

/// Why `name` cannot name a service or a tag, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if name.chars().count() > MAX_SERVICE_NAME_LEN {
        return Some(format!(
            "\"{name}\" is longer than {MAX_SERVICE_NAME_LEN} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "\"{}\" contains {bad:?}; use letters, digits, '-', '_' and '.'",
            name.escape_debug()
        ));
    }
    None
}

/// Why `record` is neither `host:port` nor an SRV name, if it is not.
fn dns_record_problem(record: &str) -> Option<String> {
    if !record.starts_with('_') {
        return parse_address(record).err().map(|why| {
            format!("{why}; or write an SRV name such as _http._tcp.vega-worker.example.com")
        });
    }
    let mut labels = record.splitn(3, '.');
    let service = labels.next().unwrap_or_default();
    let proto = labels.next().unwrap_or_default();
    let domain = labels.next().unwrap_or_default();
    let shape = "an SRV name is _service._proto.domain, e.g. _http._tcp.vega-worker.example.com";
    if service.len() < 2 || !is_dns_name(&service[1..]) {
        return Some(format!(
            "\"{record}\": \"{service}\" is not a service label; {shape}"
        ));
    }
    if !matches!(proto, "_tcp" | "_udp") {
        return Some(format!(
            "\"{record}\": the protocol must be _tcp or _udp; {shape}"
        ));
    }
    if !is_dns_name(domain) {
        return Some(format!(
            "\"{record}\": \"{domain}\" is not a domain name; {shape}"
        ));
    }
    None
}

impl ServiceDiscoveryConfig {
    /// Adds every broken rule of the block at `at` to `f`.
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        let provider = self.provider;
        if provider == DiscoveryProvider::Kubernetes {
            f.at(
                at.key("provider"),
                "kubernetes is not supported by this build; use provider: dns with the \
                 service's headless DNS name in service_discovery.dns.services (e.g. \
                 _http._tcp.vega-worker.default.svc.cluster.local), or provider: static",
            );
        }
        if let Some(registration) = &self.registration {
            registration.check(&at.key("registration"), provider, at, f);
        }
        self.check_discovery(at, f);
        self.check_static(&at.key("static"), f);
        self.check_dns(&at.key("dns"), f);
        self.etcd.check(&at.key("etcd"), provider, f);
        self.consul.check(&at.key("consul"), f);
    }

    fn check_discovery(&self, at: &[Key], f: &mut Findings) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, service) in self.discovery.services.iter().enumerate() {
            let name_at = at.key("discovery").key("services").index(index).key("name");
            if let Some(message) = name_problem(&service.name) {
                f.at(name_at, message);
                continue;
            }
            if let Some(first) = seen.get(service.name.as_str()) {
                f.at(
                    name_at,
                    format!(
                        "\"{}\" is already services[{first}]; list each service once",
                        service.name
                    ),
                );
                continue;
            }
            seen.insert(&service.name, index);
            let listed_in = match self.provider {
                DiscoveryProvider::Static => {
                    Some(("static", self.static_.services.contains_key(&service.name)))
                }
                DiscoveryProvider::Dns => {
                    Some(("dns", self.dns.services.contains_key(&service.name)))
                }
                _ => None,
            };
            if let Some((block, false)) = listed_in {
                let list = at.key(block).key("services");
                f.at_related(
                    name_at,
                    list.clone(),
                    format!(
                        "\"{}\" is not in {}; with provider {} every service looked up must be listed there",
                        service.name,
                        render(&list),
                        self.provider.as_str()
                    ),
                );
            }
        }
    }

    fn check_static(&self, at: &[Key], f: &mut Findings) {
        let services = &self.static_.services;
        if self.provider == DiscoveryProvider::Static && services.is_empty() {
            f.at(
                at.key("services"),
                "provider is static, so list each service's instances here, e.g. \
                 `vega-worker: [\"10.0.0.5:50013\"]`",
            );
        }
        for (name, addresses) in services {
            let here = at.key("services").key(name);
            if let Some(message) = name_problem(name) {
                f.at(here.clone(), format!("service name {message}"));
            }
            if addresses.is_empty() {
                f.at(here.clone(), "must list at least one address (host:port)");
            }
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (index, address) in addresses.iter().enumerate() {
                match parse_address(address) {
                    Ok(parsed) => {
                        let key = parsed.to_string().to_ascii_lowercase();
                        if let Some(first) = seen.get(&key) {
                            f.at(
                                here.index(index),
                                format!("{address} is already [{first}]; list each instance once"),
                            );
                        } else {
                            seen.insert(key, index);
                        }
                    }
                    Err(message) => f.at(here.index(index), message),
                }
            }
        }
    }

    fn check_dns(&self, at: &[Key], f: &mut Findings) {
        let services = &self.dns.services;
        if self.provider == DiscoveryProvider::Dns && services.is_empty() {
            f.at(
                at.key("services"),
                "provider is dns, so name each service's DNS record here, e.g. \
                 `vega-worker: _http._tcp.vega-worker.example.com` or `vega-worker: vega-worker.example.com:50013`",
            );
        }
        for (name, record) in services {
            let here = at.key("services").key(name);
            if let Some(message) = name_problem(name) {
                f.at(here.clone(), format!("service name {message}"));
            }
            if let Some(message) = dns_record_problem(record) {
                f.at(here, message);
            }
        }
    }
}

impl RegistrationConfig {
    fn check(&self, at: &[Key], provider: DiscoveryProvider, block: &[Key], f: &mut Findings) {
        if let Some(message) = name_problem(&self.service_name) {
            f.at(at.key("service_name"), message);
        }
        let mut tags = HashSet::new();
        for (index, tag) in self.tags.iter().enumerate() {
            if let Some(message) = name_problem(tag) {
                f.at(at.key("tags").index(index), message);
            } else if !tags.insert(tag.as_str()) {
                f.at(
                    at.key("tags").index(index),
                    format!("\"{tag}\" is listed twice"),
                );
            }
        }
        if let Some(check) = &self.health_check {
            let check_at = at.key("health_check");
            if let Err(message) = parse_http_url(&check.http) {
                f.at(check_at.key("http"), message);
            }
            f.not_zero_at(
                check_at.key("interval"),
                check.interval.is_zero(),
                "the node would be checked without pause",
            );
            if let Some(timeout) = check.timeout {
                if timeout.is_zero() {
                    f.at(
                        check_at.key("timeout"),
                        "must be greater than zero (every check would fail)",
                    );
                } else if !check.interval.is_zero() && timeout >= check.interval {
                    f.at(
                        check_at.key("timeout"),
                        format!(
                            "{timeout} must be shorter than {} ({}), so that a check ends before the next one is due",
                            render(&check_at.key("interval")),
                            check.interval
                        ),
                    );
                }
            }
        }
        if let Some(ttl) = self.ttl {
            f.not_zero_at(
                at.key("ttl"),
                ttl.is_zero(),
                "the registration would expire at once",
            );
        }
        match provider {
            DiscoveryProvider::Static | DiscoveryProvider::Dns => f.at_related(
                at.to_vec(),
                block.key("provider"),
                format!(
                    "provider {} cannot register this node (Vega does not write {}); \
                     remove registration, or use provider etcd or consul",
                    provider.as_str(),
                    if provider == DiscoveryProvider::Static {
                        "the static list"
                    } else {
                        "DNS records"
                    }
                ),
            ),
            DiscoveryProvider::Consul => {
                if self.health_check.is_none() && self.ttl.is_none() {
                    f.at(
                        at.to_vec(),
                        "set health_check or ttl: without a check Consul keeps listing this node \
                         after it stops",
                    );
                }
            }
            DiscoveryProvider::Etcd => {
                let lease = render(&block.key("etcd").key("lease_ttl"));
                if self.health_check.is_some() {
                    f.at(
                        at.key("health_check"),
                        format!(
                            "etcd runs no health checks: the registration lasts while this node \
                             renews its lease ({lease}); remove health_check"
                        ),
                    );
                }
                if self.ttl.is_some() {
                    f.at(
                        at.key("ttl"),
                        format!(
                            "with provider etcd the registration's lifetime is {lease}; remove ttl"
                        ),
                    );
                }
            }
            DiscoveryProvider::Kubernetes => {}
        }
    }
}

impl EtcdDiscoveryConfig {
    fn check(&self, at: &[Key], provider: DiscoveryProvider, f: &mut Findings) {
        if provider == DiscoveryProvider::Etcd && self.endpoints.is_empty() {
            f.at(
                at.key("endpoints"),
                "provider is etcd, so list at least one client URL, e.g. http://10.0.0.5:2379",
            );
        }
        f.http_urls_at(&at.key("endpoints"), &self.endpoints);
        if !self.prefix.starts_with('/') {
            f.at(
                at.key("prefix"),
                format!(
                    "\"{}\" must start with '/', e.g. {DEFAULT_ETCD_PREFIX}",
                    self.prefix
                ),
            );
        }
        if self.lease_ttl.as_millis() < 1000 || !self.lease_ttl.as_millis().is_multiple_of(1000) {
            f.at(
                at.key("lease_ttl"),
                format!(
                    "must be whole seconds, at least 1s (etcd grants leases in seconds), is {}",
                    self.lease_ttl
                ),
            );
        }
    }
}

impl ConsulDiscoveryConfig {
    fn check(&self, at: &[Key], f: &mut Findings) {
        if let Err(message) = parse_http_url(&self.address) {
            f.at(at.key("address"), message);
        }
        if let Some(token) = &self.token {
            f.real_secret_at(at.key("token"), token);
        }
        if let Some(datacenter) = &self.datacenter {
            if let Some(message) = name_problem(datacenter) {
                f.at(at.key("datacenter"), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_records_are_host_port_or_srv_names() {
        for ok in [
            "vega-worker.example.com:50013",
            "10.0.0.5:50013",
            "_http._tcp.vega-worker.example.com",
            "_grpc._udp.svc.",
        ] {
            assert_eq!(dns_record_problem(ok), None, "{ok}");
        }
        for (bad, expect) in [
            ("vega-worker.example.com", "has no port"),
            ("_http.vega-worker.example.com", "_tcp or _udp"),
            ("_._tcp.example.com", "not a service label"),
            ("_http._tcp.", "not a domain name"),
            ("_http._sctp.example.com", "_tcp or _udp"),
        ] {
            let message = dns_record_problem(bad).unwrap_or_default();
            assert!(message.contains(expect), "{bad}: {message}");
        }
    }

    #[test]
    fn names_are_short_and_plain() {
        assert_eq!(name_problem("embedding-service"), None);
        assert_eq!(name_problem("vega_worker.v2"), None);
        assert!(name_problem(" ").unwrap().contains("empty"));
        assert!(name_problem("a/b").unwrap().contains("'/'"));
        assert!(name_problem(&"x".repeat(64)).unwrap().contains("longer"));
    }
}

//! [`DnsDiscovery`] (`dns`): instances from DNS.
//!
//! Each service maps to one DNS name (a service without a mapping is looked
//! up under its own name):
//! - `host:port` — the A/AAAA records of `host`, each with `port`;
//! - `_service._proto.domain` — the SRV records of that name, ordered by
//!   priority (lowest first) and then weight (highest first), each target
//!   resolved to its addresses (from the answer's additional section when
//!   the server sent them, otherwise by an A/AAAA lookup). A target of `.`
//!   means "no service here" (RFC 2782) and is skipped.
//!
//! Every address found is an instance, taken as healthy: DNS has no health
//! state, whoever publishes the records decides who is in them. A name
//! without records has no instances; a resolver that does not answer is
//! [`DiscoveryError::Unavailable`].
//!
//! Without a resolver address, `host:port` names go through the system's
//! resolver (`/etc/hosts`, `/etc/resolv.conf`, NSS) and SRV names through
//! the name servers of `/etc/resolv.conf`. With one (`ip:port`), every
//! lookup is sent there.
//!
//! Registering is a no-op: DNS records are managed outside Vega (by an
//! orchestrator, a DNS-publishing registry, or by hand).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::OnceCell;

use crate::{
    join_host_port, split_host_port, Discovery, DiscoveryError, Instance, Registration,
    RegistrationHandle,
};

const PROVIDER: &str = "dns";

/// Per-query timeout: a resolver answers from cache in microseconds and
/// recursively in well under a second; two seconds bounds a lost packet.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Tries per name server: one retry covers a dropped UDP datagram without
/// making an unreachable resolver cost more than a few seconds.
const DNS_ATTEMPTS: usize = 2;

/// The resolver used for `endpoint` in error messages without an address.
const SYSTEM_RESOLVER: &str = "the system resolver";

/// A DNS name to look instances up under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsName {
    /// A/AAAA records of `host`, each with `port`.
    Host { host: String, port: u16 },
    /// SRV records of `name` (`_service._proto.domain`).
    Srv { name: String },
}

impl DnsName {
    /// `_service._proto.domain` is an SRV name, `host:port` a host name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('_') {
            let labels: Vec<&str> = text.trim_end_matches('.').split('.').collect();
            let valid = labels.len() >= 3
                && labels[0].len() > 1
                && labels[1].len() > 1
                && labels[1].starts_with('_')
                && labels[2..]
                    .iter()
                    .all(|l| !l.is_empty() && !l.starts_with('_'))
                && labels.iter().all(|l| {
                    l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !valid {
                return Err(format!(
                    "{text:?} is not an SRV name of the form _service._proto.domain"
                ));
            }
            return Ok(DnsName::Srv {
                name: text.to_string(),
            });
        }
        let (host, port) = split_host_port(text)
            .map_err(|e| format!("{e} (use host:port, or _service._proto.domain for SRV)"))?;
        Ok(DnsName::Host { host, port })
    }
}

impl std::fmt::Display for DnsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsName::Host { host, port } => f.write_str(&join_host_port(host, *port)),
            DnsName::Srv { name } => f.write_str(name),
        }
    }
}

/// One SRV record, before its target is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot, lower case.
    pub target: String,
}

/// RFC 2782 order for a list: lowest priority first; within a priority,
/// heaviest first (callers that balance by weight pick among equals);
/// then by target for a stable order. `.` targets are removed.
pub(crate) fn order_srv(mut records: Vec<SrvTarget>) -> Vec<SrvTarget> {
    records.retain(|r| !r.target.is_empty() && r.target != ".");
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(a.target.cmp(&b.target))
            .then(a.port.cmp(&b.port))
    });
    records.dedup();
    records
}

/// A DNS name as text: lower case, without the trailing dot.
fn name_text(name: &Name) -> String {
    name.to_utf8().trim_end_matches('.').to_ascii_lowercase()
}

/// Instances from DNS; see the module documentation.
pub struct DnsDiscovery {
    names: BTreeMap<String, DnsName>,
    resolver_addr: Option<SocketAddr>,
    resolver: OnceCell<TokioResolver>,
}

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("names", &self.names)
            .field("resolver", &self.resolver_addr)
            .finish()
    }
}

impl DnsDiscovery {
    /// `names` maps service names to DNS names (`host:port` or
    /// `_service._proto.domain`); `resolver` is the name server to ask
    /// (`None`: the system's).
    pub fn new(
        names: BTreeMap<String, String>,
        resolver: Option<SocketAddr>,
    ) -> Result<Self, DiscoveryError> {
        let names = names
            .into_iter()
            .map(|(service, name)| {
                DnsName::parse(&name)
                    .map(|parsed| (service.clone(), parsed))
                    .map_err(|message| DiscoveryError::InvalidSettings {
                        provider: PROVIDER,
                        message: format!("service {service:?}: {message}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(DnsDiscovery {
            names,
            resolver_addr: resolver,
            resolver: OnceCell::new(),
        })
    }

    fn endpoint(&self) -> String {
        self.resolver_addr
            .map_or_else(|| SYSTEM_RESOLVER.to_string(), |a| a.to_string())
    }

    fn unavailable(&self, name: &str, message: impl std::fmt::Display) -> DiscoveryError {
        DiscoveryError::Unavailable {
            provider: PROVIDER,
            endpoint: self.endpoint(),
            message: format!("looking up {name}: {message}"),
        }
    }

    /// The resolver, built on first use (it reads the system configuration
    /// when no address is given, and needs the runtime).
    async fn resolver(&self) -> Result<&TokioResolver, DiscoveryError> {
        self.resolver
            .get_or_try_init(|| async { build_resolver(self.resolver_addr) })
            .await
            .map_err(|e| DiscoveryError::InvalidSettings {
                provider: PROVIDER,
                message: format!("setting up the resolver: {e}"),
            })
    }

    async fn lookup_host(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DiscoveryError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if self.resolver_addr.is_none() {
            return match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => Ok(addrs.collect()),
                Err(e) => Err(self.unavailable(host, e)),
            };
        }
        let resolver = self.resolver().await?;
        match resolver.lookup_ip(host).await {
            Ok(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(self.unavailable(host, e)),
        }
    }

    async fn lookup_srv(&self, service: &str, name: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let resolver = self.resolver().await?;
        let lookup = match resolver.srv_lookup(name).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
            Err(e) => return Err(self.unavailable(name, e)),
        };
        let records: Vec<SrvTarget> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvTarget {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: name_text(&srv.target),
                }),
                _ => None,
            })
            .collect();
        let mut glue: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for record in lookup.additionals() {
            let ip = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            glue.entry(name_text(&record.name)).or_default().push(ip);
        }
        let mut instances = Vec::new();
        let mut seen = BTreeSet::new();
        for record in order_srv(records) {
            let ips = match glue.get(&record.target) {
                Some(ips) => ips.clone(),
                None => match resolver.lookup_ip(format!("{}.", record.target)).await {
                    Ok(found) => found.iter().collect(),
                    Err(e) if e.is_no_records_found() => {
                        tracing::warn!(srv = name, target = %record.target, "an SRV target has no addresses");
                        Vec::new()
                    }
                    Err(e) => return Err(self.unavailable(&record.target, e)),
                },
            };
            for ip in ips {
                let address = SocketAddr::new(ip, record.port).to_string();
                if !seen.insert(address.clone()) {
                    continue;
                }
                instances.push(Instance {
                    id: address.clone(),
                    service: service.to_string(),
                    address,
                    tags: Vec::new(),
                    healthy: true,
                    meta: BTreeMap::from([
                        ("srv".to_string(), name.to_string()),
                        ("target".to_string(), record.target.clone()),
                        ("priority".to_string(), record.priority.to_string()),
                        ("weight".to_string(), record.weight.to_string()),
                    ]),
                });
            }
        }
        Ok(instances)
    }
}

fn build_resolver(addr: Option<SocketAddr>) -> Result<TokioResolver, NetError> {
    let mut builder = match addr {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let mut config = ResolverConfig::default();
            config.name_servers = vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])];
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => Resolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.timeout = DNS_TIMEOUT;
    options.attempts = DNS_ATTEMPTS;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build()
}

#[async_trait]
impl Discovery for DnsDiscovery {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    /// A no-op: DNS records are managed outside Vega.
    async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError> {
        reg.validate()?;
        Ok(RegistrationHandle::noop(PROVIDER, &reg.instance_id))
    }

    async fn discover(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let name = match self.names.get(service) {
            Some(name) => name.clone(),
            None => DnsName::parse(service).map_err(|message| DiscoveryError::InvalidSettings {
                provider: PROVIDER,
                message: format!("service {service:?} has no DNS name configured and {message}"),
            })?,
        };
        match &name {
            DnsName::Host { host, port } => {
                let mut seen = BTreeSet::new();
                Ok(self
                    .lookup_host(host, *port)
                    .await?
                    .into_iter()
                    .filter(|addr| seen.insert(*addr))
                    .map(|addr| Instance {
                        id: addr.to_string(),
                        service: service.to_string(),
                        address: addr.to_string(),
                        tags: Vec::new(),
                        healthy: true,
                        meta: BTreeMap::from([("host".to_string(), host.clone())]),
                    })
                    .collect())
            }
            DnsName::Srv { name } => self.lookup_srv(service, name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 8080,
            target: target.into(),
        }
    }

    #[test]
    fn srv_and_host_names_are_told_apart() {
        assert_eq!(
            DnsName::parse("_vega._tcp.example.test").unwrap(),
            DnsName::Srv {
                name: "_vega._tcp.example.test".into()
            }
        );
        assert_eq!(
            DnsName::parse("_vega._tcp.example.test.")
                .unwrap()
                .to_string(),
            "_vega._tcp.example.test."
        );
        assert_eq!(
            DnsName::parse("worker.example:9000").unwrap(),
            DnsName::Host {
                host: "worker.example".into(),
                port: 9000
            }
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "_vega.example.test",
            "_vega._tcp",
            "_._tcp.example",
            "_vega._tcp._x",
            "_vega._tcp.exa mple",
            "worker.example",
        ] {
            assert!(DnsName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn srv_records_order_by_priority_then_weight() {
        let ordered = order_srv(vec![
            srv(20, 100, "c"),
            srv(10, 5, "b"),
            srv(10, 50, "a"),
            srv(10, 50, "a"),
            srv(0, 0, "."),
        ]);
        let targets: Vec<_> = ordered.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["a", "b", "c"]);
    }

    #[test]
    fn unmapped_services_that_are_not_dns_names_are_invalid_settings() {
        let discovery = DnsDiscovery::new(BTreeMap::new(), None).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(discovery.discover("vega-worker"))
            .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::InvalidSettings { .. }),
            "{err}"
        );
    }
}

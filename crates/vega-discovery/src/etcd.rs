//! [`EtcdDiscovery`] (`etcd`): instances as keys in etcd v3, through its
//! JSON gateway (`/v3/...`, served by etcd 3.4 and later on the client
//! port).
//!
//! Layout: the key `<prefix><service>/<instance id>` holds the
//! [`Instance`] as JSON, attached to a lease. Keys and values travel base64
//! encoded, as the gateway requires for `bytes` fields; 64-bit ids travel
//! as strings, as the gateway writes them.
//!
//! - register: `POST /v3/lease/grant` with the TTL (etcd may grant a longer
//!   one than asked: its minimum is about two seconds), then
//!   `POST /v3/kv/put` with the lease. The handle sends
//!   `POST /v3/lease/keepalive` every third of the granted TTL; when etcd
//!   answers that the lease is gone (expired during a partition, or the
//!   cluster was restored), it grants a new lease and puts the key again.
//! - deregister: `POST /v3/kv/deleterange` of the key, then
//!   `POST /v3/lease/revoke`.
//! - discover: `POST /v3/kv/range` from `<prefix><service>/` to the end of
//!   that prefix.
//!
//! Several endpoints (members of one cluster) are tried in turn; the one
//! that answered last is tried first next time. A member that cannot be
//! reached or answers 5xx moves on to the next; when none answers, the
//! error is [`DiscoveryError::Unavailable`] with each endpoint's failure.
//! etcd authentication is not supported (a cluster with auth on answers
//! `Unauthenticated`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::http::{base_url, client, excerpt, transport_error};
use crate::{Discovery, DiscoveryError, Instance, Registration, RegistrationHandle};

const PROVIDER: &str = "etcd";

/// The key prefix when none is configured: one directory per service under
/// a Vega-owned root, so other users of the cluster are not mixed in.
pub const DEFAULT_ETCD_PREFIX: &str = "/vega/services/";

/// Keep-alives per TTL: three tries before the lease runs out, so one lost
/// request (or one endpoint failing over) does not drop the instance.
const KEEPALIVES_PER_TTL: u32 = 3;

/// gRPC status codes the gateway reports in `code`.
const GRPC_DEADLINE_EXCEEDED: i64 = 4;
const GRPC_PERMISSION_DENIED: i64 = 7;
const GRPC_UNAVAILABLE: i64 = 14;
const GRPC_UNAUTHENTICATED: i64 = 16;

/// The gateway's answer to a keep-alive of a lease that no longer exists.
const LEASE_NOT_FOUND: &str = "requested lease not found";

/// Instances as keys under leases in etcd; see the module documentation.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    client: Arc<EtcdClient>,
    prefix: String,
    lease_ttl: Option<Duration>,
}

impl EtcdDiscovery {
    /// `endpoints`: client URLs of the cluster's members (`http://host:port`
    /// or `host:port`). `prefix`: the key prefix (a `/` is added when it does
    /// not end with one; empty means [`DEFAULT_ETCD_PREFIX`]). `lease_ttl`:
    /// the lease TTL; `None` uses the registration's `ttl`.
    pub fn new(
        endpoints: &[String],
        prefix: &str,
        lease_ttl: Option<Duration>,
    ) -> Result<Self, DiscoveryError> {
        if endpoints.is_empty() {
            return Err(DiscoveryError::InvalidSettings {
                provider: PROVIDER,
                message: "no endpoints".into(),
            });
        }
        if lease_ttl.is_some_and(|t| t < Duration::from_secs(1)) {
            return Err(DiscoveryError::InvalidSettings {
                provider: PROVIDER,
                message: "lease_ttl is below one second (leases count whole seconds)".into(),
            });
        }
        let endpoints = endpoints
            .iter()
            .map(|e| base_url(PROVIDER, e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut prefix = if prefix.is_empty() {
            DEFAULT_ETCD_PREFIX.to_string()
        } else {
            prefix.to_string()
        };
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(EtcdDiscovery {
            client: Arc::new(EtcdClient {
                endpoints,
                http: client(PROVIDER)?,
                preferred: AtomicUsize::new(0),
            }),
            prefix,
            lease_ttl,
        })
    }

    /// The key of an instance.
    fn key(&self, service: &str, instance_id: &str) -> String {
        format!("{}{service}/{instance_id}", self.prefix)
    }
}

#[async_trait]
impl Discovery for EtcdDiscovery {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn register(&self, reg: &Registration) -> Result<RegistrationHandle, DiscoveryError> {
        reg.validate()?;
        let ttl = self.lease_ttl.unwrap_or(reg.ttl);
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let mut meta = BTreeMap::new();
        if let Some(url) = &reg.health_url {
            meta.insert("health_url".to_string(), url.clone());
        }
        let instance = Instance {
            id: reg.instance_id.clone(),
            service: reg.service_name.clone(),
            address: reg.address.clone(),
            tags: reg.tags.clone(),
            healthy: true,
            meta,
        };
        let value = serde_json::to_vec(&instance).map_err(|e| {
            DiscoveryError::InvalidRegistration(format!("encoding the instance: {e}"))
        })?;
        let key = self.key(&reg.service_name, &reg.instance_id).into_bytes();
        let (lease, granted) = self
            .client
            .put_under_new_lease(&key, &value, ttl_secs)
            .await?;
        let lease = Arc::new(AtomicI64::new(lease));
        let interval = Duration::from_secs(granted.max(1)) / KEEPALIVES_PER_TTL;

        let (client, refresh_lease, refresh_key) =
            (self.client.clone(), lease.clone(), key.clone());
        let refresh = move || {
            let (client, lease, key, value) = (
                client.clone(),
                refresh_lease.clone(),
                refresh_key.clone(),
                value.clone(),
            );
            async move {
                if client.keep_alive(lease.load(Ordering::SeqCst)).await? {
                    return Ok(());
                }
                tracing::info!(key = %String::from_utf8_lossy(&key), "the etcd lease is gone; registering again");
                let (new_lease, _) = client.put_under_new_lease(&key, &value, ttl_secs).await?;
                lease.store(new_lease, Ordering::SeqCst);
                Ok(())
            }
        };
        let client = self.client.clone();
        let deregister = move || async move {
            client
                .call("/v3/kv/deleterange", &json!({"key": base64_encode(&key)}))
                .await?;
            client.revoke(lease.load(Ordering::SeqCst)).await
        };
        Ok(RegistrationHandle::keep_alive(
            PROVIDER,
            &reg.instance_id,
            interval,
            refresh,
            deregister,
        ))
    }

    async fn discover(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let prefix = format!("{}{service}/", self.prefix).into_bytes();
        let answer = self
            .client
            .call(
                "/v3/kv/range",
                &json!({
                    "key": base64_encode(&prefix),
                    "range_end": base64_encode(&prefix_end(&prefix)),
                }),
            )
            .await?;
        let kvs = match answer.get("kvs") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(kvs)) => kvs,
            Some(_) => return Err(self.client.bad_response("`kvs` is not an array")),
        };
        let mut instances = Vec::new();
        for kv in kvs {
            let key = kv["key"]
                .as_str()
                .and_then(base64_decode)
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or_default();
            let instance = kv["value"]
                .as_str()
                .and_then(base64_decode)
                .ok_or_else(|| "the value is not base64".to_string())
                .and_then(|v| serde_json::from_slice::<Instance>(&v).map_err(|e| e.to_string()));
            match instance {
                Ok(instance) if instance.healthy => instances.push(instance),
                Ok(_) => {}
                // Someone else's key under our prefix; skip, do not fail
                // discovery of the good ones.
                Err(error) => {
                    tracing::warn!(%key, %error, "skipping an etcd entry that is not an instance")
                }
            }
        }
        Ok(instances)
    }
}

/// The gateway client: endpoints tried in turn.
#[derive(Debug)]
struct EtcdClient {
    endpoints: Vec<String>,
    http: reqwest::Client,
    /// The endpoint that answered last, tried first.
    preferred: AtomicUsize,
}

impl EtcdClient {
    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, DiscoveryError> {
        let count = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for i in 0..count {
            let index = (start + i) % count;
            let endpoint = &self.endpoints[index];
            let error = match self.call_one(endpoint, path, body).await {
                Ok(value) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(error) => error,
            };
            match error {
                DiscoveryError::Unavailable { message, .. } => {
                    failures.push(format!("{endpoint}: {message}"));
                }
                other => return Err(other),
            }
        }
        Err(DiscoveryError::Unavailable {
            provider: PROVIDER,
            endpoint: self.endpoints.join(", "),
            message: failures.join("; "),
        })
    }

    async fn call_one(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, DiscoveryError> {
        let response = self
            .http
            .post(format!("{endpoint}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(PROVIDER, endpoint, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(PROVIDER, endpoint, &e))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| DiscoveryError::BadResponse {
                provider: PROVIDER,
                endpoint: endpoint.to_string(),
                message: format!("{path}: {e}: {}", excerpt(&text)),
            });
        }
        Err(gateway_error(endpoint, status.as_u16(), &text))
    }

    fn bad_response(&self, message: &str) -> DiscoveryError {
        DiscoveryError::BadResponse {
            provider: PROVIDER,
            endpoint: self.endpoints.join(", "),
            message: message.to_string(),
        }
    }

    /// Grants a lease of `ttl_secs` and puts `key` = `value` under it;
    /// returns the lease id and the granted TTL in seconds.
    async fn put_under_new_lease(
        &self,
        key: &[u8],
        value: &[u8],
        ttl_secs: u64,
    ) -> Result<(i64, u64), DiscoveryError> {
        let grant = self
            .call("/v3/lease/grant", &json!({"TTL": ttl_secs.to_string()}))
            .await?;
        let lease =
            int64(&grant["ID"]).ok_or_else(|| self.bad_response("lease grant without an ID"))?;
        let granted = int64(&grant["TTL"])
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(ttl_secs);
        let put = self
            .call(
                "/v3/kv/put",
                &json!({
                    "key": base64_encode(key),
                    "value": base64_encode(value),
                    "lease": lease.to_string(),
                }),
            )
            .await;
        if let Err(error) = put {
            // The lease would expire anyway; revoking frees it now.
            let _ = self.revoke(lease).await;
            return Err(error);
        }
        Ok((lease, granted))
    }

    /// Refreshes the lease; `false` when etcd no longer has it.
    async fn keep_alive(&self, lease: i64) -> Result<bool, DiscoveryError> {
        let answer = match self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await
        {
            Ok(answer) => answer,
            Err(DiscoveryError::Rejected { status: 404, .. }) => return Ok(false),
            Err(error) => return Err(error),
        };
        // A streaming call: the gateway wraps the answer in `result`, or
        // reports an error in `error` with status 200.
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            if error.to_string().contains(LEASE_NOT_FOUND) {
                return Ok(false);
            }
            return Err(self.bad_response(&format!(
                "keep-alive failed: {}",
                excerpt(&error.to_string())
            )));
        }
        // An expired lease answers without a TTL (zero is omitted).
        Ok(int64(&answer["result"]["TTL"]).is_some_and(|ttl| ttl > 0))
    }

    /// Revokes the lease (deleting its keys); a lease already gone is fine.
    async fn revoke(&self, lease: i64) -> Result<(), DiscoveryError> {
        match self
            .call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .await
        {
            Ok(_) | Err(DiscoveryError::Rejected { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Maps the gateway's error answer (`{"error", "message", "code"}` with
/// the gRPC code) to a [`DiscoveryError`].
fn gateway_error(endpoint: &str, status: u16, body: &str) -> DiscoveryError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let code = parsed.as_ref().and_then(|v| v["code"].as_i64());
    let message = parsed
        .as_ref()
        .and_then(|v| v["message"].as_str().or(v["error"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| excerpt(body));
    match code {
        Some(GRPC_UNAUTHENTICATED) => DiscoveryError::Unauthenticated {
            provider: PROVIDER,
            message,
        },
        Some(GRPC_PERMISSION_DENIED) => DiscoveryError::Forbidden {
            provider: PROVIDER,
            message,
        },
        Some(GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED) => DiscoveryError::Unavailable {
            provider: PROVIDER,
            endpoint: endpoint.to_string(),
            message,
        },
        _ if status >= 500 || status == 429 => DiscoveryError::Unavailable {
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

/// An int64 as the gateway writes it: a JSON string, or a number.
fn int64(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The smallest key after every key starting with `prefix` (etcd's
/// `range_end` for a prefix): the last byte below 0xff incremented, what
/// follows dropped; `\0` (to the end of the keyspace) when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not (protobuf JSON
/// parsers accept both); `None` when malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::{alphabet, Engine as _};
    const ANY_PADDING: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes_like_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(
            base64_encode(b"/vega/services/api/"),
            "L3ZlZ2Evc2VydmljZXMvYXBpLw=="
        );
    }

    #[test]
    fn base64_decodes_padded_unpadded_and_url_safe() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\xfd\x00"] {
            assert_eq!(base64_decode(&base64_encode(input)).unwrap(), input);
        }
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64_decode("__-_").unwrap(), b"\xff\xff\xbf");
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
    }

    #[test]
    fn prefix_ends_bound_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/vega/services/api/"), b"/vega/services/api0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn int64s_are_read_from_strings_and_numbers() {
        assert_eq!(
            int64(&json!("7587866238767000000")),
            Some(7587866238767000000)
        );
        assert_eq!(int64(&json!(2)), Some(2));
        assert_eq!(int64(&json!(null)), None);
    }

    #[test]
    fn gateway_errors_map_to_classes() {
        let e = gateway_error(
            "http://e",
            401,
            r#"{"error":"x","message":"etcdserver: invalid auth token","code":16}"#,
        );
        assert!(matches!(e, DiscoveryError::Unauthenticated { .. }), "{e}");
        let e = gateway_error(
            "http://e",
            503,
            r#"{"error":"x","message":"etcdserver: no leader","code":14}"#,
        );
        assert!(matches!(e, DiscoveryError::Unavailable { .. }), "{e}");
        let e = gateway_error("http://e", 502, "<html>bad gateway</html>");
        assert!(matches!(e, DiscoveryError::Unavailable { .. }), "{e}");
        let e = gateway_error(
            "http://e",
            404,
            r#"{"error":"x","message":"etcdserver: requested lease not found","code":5}"#,
        );
        assert!(
            matches!(e, DiscoveryError::Rejected { status: 404, .. }),
            "{e}"
        );
    }

    #[test]
    fn prefixes_get_a_trailing_slash_and_a_default() {
        let endpoints = ["127.0.0.1:2379".to_string()];
        let d = EtcdDiscovery::new(&endpoints, "/x", None).unwrap();
        assert_eq!(d.key("api", "n1"), "/x/api/n1");
        let d = EtcdDiscovery::new(&endpoints, "", None).unwrap();
        assert_eq!(d.key("api", "n1"), "/vega/services/api/n1");
        assert!(EtcdDiscovery::new(&[], "", None).is_err());
    }
}

//! The result cache of `POST /api/v1/query`: encoded answers in memory,
//! bounded by bytes (least recently used go first) and by a TTL.
//!
//! The key is the sha256 of the query's [`ReadSet`] — its normalized parse
//! tree and the version and data generation of every asset it reads —
//! plus the answer's format and row limit. A new version, new files in the
//! same version and streamed rows arriving all change an asset's
//! generation, so an answer is never served for data it did not see.
//! Statements that call the clock or random functions are not cached.
//!
//! Clearing (`DELETE /api/v1/cache`) is cluster-wide: the node clears its
//! own entries and writes a new marker to the catalog setting
//! [`CLEAR_SETTING`]; every other node sees the marker change on its next
//! catalog look (one heartbeat) and clears too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use vega_query::ReadSet;

use crate::metrics::{Metrics, ReasonLabels};

/// The catalog setting whose value changes whenever any node clears.
pub const CLEAR_SETTING: &str = "cache.cleared";

/// How the cache is sized.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_bytes: u64,
    pub ttl: Duration,
    pub max_entry_bytes: u64,
}

impl From<&vega_config::CacheConfig> for CacheSettings {
    fn from(c: &vega_config::CacheConfig) -> Self {
        Self {
            enabled: c.enabled,
            max_bytes: c.max_bytes.as_u64(),
            ttl: c.ttl.into(),
            max_entry_bytes: c.max_entry_bytes.as_u64(),
        }
    }
}

/// The identity of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of an answer to a statement with `read` in `format` with at
    /// most `max_rows` rows; `None` when the statement must not be cached.
    pub fn new(read: &ReadSet, format: &str, max_rows: usize) -> Option<Self> {
        if read.volatile {
            return None;
        }
        let mut h = Sha256::new();
        h.update(read.normalized.as_bytes());
        h.update([0]);
        h.update(format.as_bytes());
        h.update([0]);
        h.update((max_rows as u64).to_le_bytes());
        for asset in &read.assets {
            h.update(asset.name.as_bytes());
            h.update([0]);
            h.update(asset.version.to_le_bytes());
            h.update(asset.generation.to_le_bytes());
        }
        Some(Self(h.finalize().into()))
    }
}

/// One cached answer, exactly as it was sent.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub content_type: &'static str,
    pub body: Bytes,
    pub truncated: bool,
    /// When it was computed.
    pub created: Instant,
    /// The engine that computed it.
    pub engine: &'static str,
}

impl CachedAnswer {
    fn size(&self) -> u64 {
        // The body plus a fixed allowance for the entry's bookkeeping.
        self.body.len() as u64 + 128
    }
}

struct Entry {
    answer: CachedAnswer,
    /// Position in the recency order.
    tick: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<CacheKey, Entry>,
    /// Recency order: the smallest tick is the least recently used.
    order: BTreeMap<u64, CacheKey>,
    next_tick: u64,
    bytes: u64,
    /// The last clear marker seen in the catalog (outer `None`: not looked
    /// yet; inner `None`: no node has ever cleared).
    clear_marker: Option<Option<serde_json::Value>>,
}

impl State {
    fn remove(&mut self, key: &CacheKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.tick);
        self.bytes -= entry.answer.size();
        Some(entry)
    }

    fn bump(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

/// The cache's own view of its metrics.
#[derive(Clone)]
struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    evictions: Family<ReasonLabels, Counter>,
    bytes: Gauge,
    entries: Gauge,
    hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
}

pub struct ResultCache {
    settings: CacheSettings,
    state: Mutex<State>,
    metrics: CacheMetrics,
}

/// What a look-up found.
#[derive(Debug)]
pub enum Lookup {
    Hit(CachedAnswer),
    Miss,
}

impl ResultCache {
    pub fn new(settings: CacheSettings, metrics: &Metrics) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
            metrics: CacheMetrics {
                hits: metrics.cache_hits.clone(),
                misses: metrics.cache_misses.clone(),
                evictions: metrics.cache_evictions.clone(),
                bytes: metrics.cache_bytes.clone(),
                entries: metrics.cache_entries.clone(),
                hit_ratio: metrics.cache_hit_ratio.clone(),
            },
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer for `key`, if one younger than the TTL is kept.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Lookup {
        let mut state = self.lock();
        let fresh = state
            .entries
            .get(key)
            .map(|entry| now.duration_since(entry.answer.created) < self.settings.ttl);
        let lookup = match fresh {
            None => Lookup::Miss,
            Some(false) => {
                state.remove(key);
                self.evicted("expired", 1);
                Lookup::Miss
            }
            Some(true) => {
                let tick = state.bump();
                let entry = state.entries.get_mut(key).expect("entry present");
                let old = std::mem::replace(&mut entry.tick, tick);
                let answer = entry.answer.clone();
                state.order.remove(&old);
                state.order.insert(tick, *key);
                Lookup::Hit(answer)
            }
        };
        match lookup {
            Lookup::Hit(_) => self.metrics.hits.inc(),
            Lookup::Miss => self.metrics.misses.inc(),
        };
        self.publish(&state);
        lookup
    }

    /// Keeps an answer, evicting the least recently used to make room.
    /// Answers larger than `max_entry_bytes` are not kept.
    pub fn put(&self, key: CacheKey, answer: CachedAnswer) {
        let size = answer.size();
        if !self.settings.enabled || size > self.settings.max_entry_bytes {
            return;
        }
        let mut state = self.lock();
        state.remove(&key);
        let mut evicted = 0;
        while state.bytes + size > self.settings.max_bytes {
            let Some((_, oldest)) = state.order.pop_first() else {
                break;
            };
            if let Some(entry) = state.entries.remove(&oldest) {
                state.bytes -= entry.answer.size();
                evicted += 1;
            }
        }
        self.evicted("capacity", evicted);
        let tick = state.bump();
        state.order.insert(tick, key);
        state.entries.insert(key, Entry { answer, tick });
        state.bytes += size;
        self.publish(&state);
    }

    /// Drops every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut state = self.lock();
        let n = state.entries.len();
        state.entries.clear();
        state.order.clear();
        state.bytes = 0;
        self.publish(&state);
        n
    }

    /// Applies the catalog's clear marker: clears when it differs from the
    /// last one seen (another node cleared). The first look only records it.
    pub fn observe_clear_marker(&self, marker: Option<serde_json::Value>) -> bool {
        let changed = {
            let mut state = self.lock();
            let changed = match &state.clear_marker {
                None => false,
                Some(last) => marker.is_some() && *last != marker,
            };
            if marker.is_some() || state.clear_marker.is_none() {
                state.clear_marker = Some(marker);
            }
            changed
        };
        if changed {
            let n = self.clear();
            tracing::info!(entries = n, "result cache cleared by another node");
        }
        changed
    }

    /// Records a marker this node wrote itself, so its own look does not
    /// clear a second time.
    pub fn record_clear_marker(&self, marker: serde_json::Value) {
        self.lock().clear_marker = Some(Some(marker));
    }

    /// Bytes held now (bodies plus bookkeeping).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evicted(&self, reason: &str, n: u64) {
        if n > 0 {
            self.metrics
                .evictions
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
    }

    fn publish(&self, state: &State) {
        self.metrics.bytes.set(state.bytes as i64);
        self.metrics.entries.set(state.entries.len() as i64);
        let hits = self.metrics.hits.get() as f64;
        let total = hits + self.metrics.misses.get() as f64;
        if total > 0.0 {
            self.metrics.hit_ratio.set(hits / total);
        }
    }
}

#[cfg(test)]
mod tests {
    use vega_query::AssetState;

    use super::*;

    fn settings(max_bytes: u64) -> CacheSettings {
        CacheSettings {
            enabled: true,
            max_bytes,
            ttl: Duration::from_secs(60),
            max_entry_bytes: max_bytes,
        }
    }

    fn read(sql: &str, version: u32, generation: u64) -> ReadSet {
        ReadSet {
            normalized: sql.into(),
            assets: vec![AssetState {
                name: "s.t".into(),
                version,
                generation,
            }],
            volatile: false,
        }
    }

    fn answer(body: &str, created: Instant) -> CachedAnswer {
        CachedAnswer {
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
            truncated: false,
            created,
            engine: "duckdb",
        }
    }

    fn key(sql: &str) -> CacheKey {
        CacheKey::new(&read(sql, 1, 1), "json", 100).unwrap()
    }

    #[test]
    fn the_key_covers_statement_format_limit_and_every_asset_state() {
        let base = key("q");
        assert_eq!(base, key("q"));
        assert_ne!(base, key("r"));
        assert_ne!(base, CacheKey::new(&read("q", 2, 1), "json", 100).unwrap());
        assert_ne!(base, CacheKey::new(&read("q", 1, 2), "json", 100).unwrap());
        assert_ne!(base, CacheKey::new(&read("q", 1, 1), "csv", 100).unwrap());
        assert_ne!(base, CacheKey::new(&read("q", 1, 1), "json", 10).unwrap());
        let mut volatile = read("q", 1, 1);
        volatile.volatile = true;
        assert!(CacheKey::new(&volatile, "json", 100).is_none());
    }

    #[test]
    fn hit_after_put_and_miss_after_ttl() {
        let metrics = Metrics::new();
        let cache = ResultCache::new(settings(1 << 20), &metrics);
        let now = Instant::now();
        assert!(matches!(cache.get(&key("q"), now), Lookup::Miss));
        cache.put(key("q"), answer("{}", now));
        match cache.get(&key("q"), now + Duration::from_secs(1)) {
            Lookup::Hit(a) => assert_eq!(&a.body[..], b"{}"),
            Lookup::Miss => panic!("expected a hit"),
        }
        assert!(matches!(
            cache.get(&key("q"), now + Duration::from_secs(61)),
            Lookup::Miss
        ));
        assert!(cache.is_empty());
        assert_eq!(metrics.cache_hits.get(), 1);
        assert_eq!(metrics.cache_misses.get(), 2);
        let expired = metrics.cache_evictions.get_or_create(&ReasonLabels {
            reason: "expired".into(),
        });
        assert_eq!(expired.get(), 1);
    }

    #[test]
    fn the_least_recently_used_goes_first_and_bytes_stay_bounded() {
        let metrics = Metrics::new();
        // Room for two answers of 100 bytes (plus bookkeeping) but not three.
        let cache = ResultCache::new(settings(500), &metrics);
        let now = Instant::now();
        let body = "x".repeat(100);
        cache.put(key("a"), answer(&body, now));
        cache.put(key("b"), answer(&body, now));
        // Using a makes b the least recently used.
        assert!(matches!(cache.get(&key("a"), now), Lookup::Hit(_)));
        cache.put(key("c"), answer(&body, now));
        assert!(cache.bytes() <= 500);
        assert!(matches!(cache.get(&key("b"), now), Lookup::Miss));
        assert!(matches!(cache.get(&key("a"), now), Lookup::Hit(_)));
        assert!(matches!(cache.get(&key("c"), now), Lookup::Hit(_)));
        let capacity = metrics.cache_evictions.get_or_create(&ReasonLabels {
            reason: "capacity".into(),
        });
        assert_eq!(capacity.get(), 1);
        assert_eq!(metrics.cache_bytes.get() as u64, cache.bytes());
    }

    #[test]
    fn answers_above_the_entry_limit_are_not_kept() {
        let metrics = Metrics::new();
        let mut s = settings(1 << 20);
        s.max_entry_bytes = 200;
        let cache = ResultCache::new(s, &metrics);
        cache.put(key("big"), answer(&"x".repeat(500), Instant::now()));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_clear_marker_clears_but_the_first_look_does_not() {
        let metrics = Metrics::new();
        let now = Instant::now();
        let m = |s: &str| Some(serde_json::json!(s));

        // A node that starts after a clear only records the marker.
        let late = ResultCache::new(settings(1 << 20), &metrics);
        late.put(key("a"), answer("1", now));
        assert!(!late.observe_clear_marker(m("m1")));
        assert!(!late.observe_clear_marker(m("m1")));
        assert_eq!(late.len(), 1);
        assert!(late.observe_clear_marker(m("m2")));
        assert!(late.is_empty());

        // No node has cleared yet; then one does.
        let early = ResultCache::new(settings(1 << 20), &metrics);
        early.put(key("a"), answer("1", now));
        assert!(!early.observe_clear_marker(None));
        assert!(early.observe_clear_marker(m("m1")));
        assert!(early.is_empty());

        // A marker this node wrote itself is not a change.
        early.put(key("a"), answer("1", now));
        early.record_clear_marker(serde_json::json!("m3"));
        assert!(!early.observe_clear_marker(m("m3")));
        assert_eq!(early.len(), 1);
    }
}

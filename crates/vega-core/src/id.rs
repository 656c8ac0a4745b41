//! Prefixed, time-ordered ids: `con_…`, `ast_…`, `job_…`, `key_…`, `bak_…`,
//! `node_…`. The part after the prefix is 26 characters of Crockford base32
//! (48 bits of milliseconds, 80 random bits), so ids sort by creation time.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Which kind of object an id names; decides the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Connection,
    Asset,
    Job,
    ApiKey,
    Backup,
    Node,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Connection => "con",
            IdKind::Asset => "ast",
            IdKind::Job => "job",
            IdKind::ApiKey => "key",
            IdKind::Backup => "bak",
            IdKind::Node => "node",
        }
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A prefixed id. Cheap to clone; compared as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// A new id of the given kind, ordered after ids made earlier.
    pub fn new(kind: IdKind, now_ms: u64) -> Self {
        let mut random = [0u8; 10];
        rand::thread_rng().fill_bytes(&mut random);
        let mut value: u128 = (u128::from(now_ms & 0xFFFF_FFFF_FFFF)) << 80;
        for (i, b) in random.iter().enumerate() {
            value |= u128::from(*b) << (8 * (9 - i));
        }
        let mut body = [0u8; 26];
        for (i, slot) in body.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = CROCKFORD[((value >> shift) & 0x1F) as usize];
        }
        let body = std::str::from_utf8(&body).expect("base32 alphabet is ascii");
        Id(format!("{}_{}", kind.prefix(), body))
    }

    /// A new id stamped with the current wall-clock time.
    pub fn generate(kind: IdKind) -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self::new(kind, ms)
    }

    /// Accepts text as an id of `kind` if it has the right prefix and shape.
    pub fn parse(kind: IdKind, s: &str) -> Option<Self> {
        let body = s.strip_prefix(kind.prefix())?.strip_prefix('_')?;
        if body.len() == 26 && body.bytes().all(|b| CROCKFORD.contains(&b)) {
            Some(Id(s.to_string()))
        } else {
            None
        }
    }

    /// Wraps text read back from the catalog, which only holds valid ids.
    pub fn from_trusted(s: impl Into<String>) -> Self {
        Id(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_parse_back() {
        let id = Id::new(IdKind::Asset, 1_700_000_000_000);
        assert!(id.as_str().starts_with("ast_"));
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(Id::parse(IdKind::Asset, id.as_str()), Some(id.clone()));
        assert_eq!(Id::parse(IdKind::Connection, id.as_str()), None);
        assert_eq!(Id::parse(IdKind::Asset, "ast_short"), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let a = Id::new(IdKind::Job, 1000);
        let b = Id::new(IdKind::Job, 2000);
        assert!(a < b);
    }
}

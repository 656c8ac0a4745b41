//! The write-ahead-log record of one write: the asset it is for, an
//! optional delivery key (MQTT redelivery detection), and its points.
//!
//! Layout (little endian): `u8 version=1`, asset id (`u32` length + UTF-8),
//! `u8` key flag then two `u64` when set, `u32` point count, then per point
//! `u16` tag count, tags as pairs of strings, `u16` field count, fields as
//! key string + `u8` type + value, and `i64` time in nanoseconds.
//! Decoding checks every length against the remaining bytes, so a damaged
//! record is an error, never a panic.

use vega_core::{FieldValue, Id, IdKind, Point};

const VERSION: u8 = 1;

/// Identifies a message across redeliveries (see the MQTT consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// Stable per (client id, packet id).
    pub session: u64,
    /// Stable per (topic, payload).
    pub content: u64,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct WalEntry {
    pub asset: Id,
    pub key: Option<DedupKey>,
    pub points: Vec<Point>,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable write-ahead-log record: {0}")]
pub struct DecodeError(String);

pub fn encode(asset: &Id, key: Option<DedupKey>, points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + points.len() * 64);
    out.push(VERSION);
    put_str(&mut out, asset.as_str());
    match key {
        Some(k) => {
            out.push(1);
            out.extend_from_slice(&k.session.to_le_bytes());
            out.extend_from_slice(&k.content.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for p in points {
        out.extend_from_slice(&(p.tags.len() as u16).to_le_bytes());
        for (k, v) in &p.tags {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&(p.fields.len() as u16).to_le_bytes());
        for (k, v) in &p.fields {
            put_str(&mut out, k);
            match v {
                FieldValue::Float(f) => {
                    out.push(0);
                    out.extend_from_slice(&f.to_le_bytes());
                }
                FieldValue::Integer(i) => {
                    out.push(1);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                FieldValue::UInteger(u) => {
                    out.push(2);
                    out.extend_from_slice(&u.to_le_bytes());
                }
                FieldValue::String(s) => {
                    out.push(3);
                    put_str(&mut out, s);
                }
                FieldValue::Boolean(b) => {
                    out.push(4);
                    out.push(u8::from(*b));
                }
            }
        }
        out.extend_from_slice(&p.time_ns.to_le_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<WalEntry, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError(format!("unknown record version {version}")));
    }
    let asset = r.string()?;
    let asset = Id::parse(IdKind::Asset, &asset)
        .ok_or_else(|| DecodeError(format!("bad asset id {asset:?}")))?;
    let key = match r.u8()? {
        0 => None,
        1 => Some(DedupKey {
            session: r.u64()?,
            content: r.u64()?,
        }),
        other => return Err(DecodeError(format!("bad key flag {other}"))),
    };
    let count = r.u32()? as usize;
    let mut points = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let ntags = r.u16()? as usize;
        let mut tags = Vec::with_capacity(ntags);
        for _ in 0..ntags {
            tags.push((r.string()?, r.string()?));
        }
        let nfields = r.u16()? as usize;
        let mut fields = Vec::with_capacity(nfields);
        for _ in 0..nfields {
            let k = r.string()?;
            let v = match r.u8()? {
                0 => FieldValue::Float(f64::from_le_bytes(r.array()?)),
                1 => FieldValue::Integer(i64::from_le_bytes(r.array()?)),
                2 => FieldValue::UInteger(r.u64()?),
                3 => FieldValue::String(r.string()?),
                4 => FieldValue::Boolean(r.u8()? != 0),
                other => return Err(DecodeError(format!("bad field type {other}"))),
            };
            fields.push((k, v));
        }
        let time_ns = i64::from_le_bytes(r.array()?);
        points.push(Point {
            tags,
            fields,
            time_ns,
        });
    }
    if r.at != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes",
            bytes.len() - r.at
        )));
    }
    Ok(WalEntry { asset, key, points })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Point> {
        vec![
            Point {
                tags: vec![("host".into(), "a b".into())],
                fields: vec![
                    ("f".into(), FieldValue::Float(-1.5)),
                    ("i".into(), FieldValue::Integer(i64::MIN)),
                    ("u".into(), FieldValue::UInteger(u64::MAX)),
                    ("s".into(), FieldValue::String("x\"y\n".into())),
                    ("b".into(), FieldValue::Boolean(true)),
                ],
                time_ns: -5,
            },
            Point {
                tags: vec![],
                fields: vec![("f".into(), FieldValue::Float(2.0))],
                time_ns: i64::MAX,
            },
        ]
    }

    #[test]
    fn round_trips_every_field_type_and_the_key() {
        let asset = Id::new(IdKind::Asset, 1_700_000_000_000);
        let key = DedupKey {
            session: 7,
            content: 9,
        };
        for k in [None, Some(key)] {
            let bytes = encode(&asset, k, &sample());
            let entry = decode(&bytes).unwrap();
            assert_eq!(entry.asset, asset);
            assert_eq!(entry.key, k);
            assert_eq!(entry.points, sample());
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&Id::new(IdKind::Asset, 1_700_000_000_000), None, &sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

//! The on-disk format: file names and record framing (see the crate docs).

use std::ops::Range;

/// Bytes of a record header: payload length, checksum, sequence number.
pub(crate) const HEADER_BYTES: usize = 16;

/// The largest payload the framing can describe (the length is a `u32`).
pub(crate) const MAX_PAYLOAD_BYTES: usize = u32::MAX as usize;

/// Name of the lock file in the log directory (not a log file).
pub(crate) const LOCK_FILE_NAME: &str = "wal.lock";

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
const DIGITS: usize = 20;

/// The name of the log file whose first record has sequence number `first_seq`.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// The first sequence number encoded in a log file name, or `None` when the
/// name is not exactly `wal-<20 digits>.log`.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checksum stored in a record header: CRC-32 of the little-endian
/// sequence number followed by the payload.
pub(crate) fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one framed record to `buf`. The caller has checked that the
/// payload fits [`MAX_PAYLOAD_BYTES`].
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    let len = payload.len() as u32;
    buf.reserve(HEADER_BYTES + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// A record read back from a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) seq: u64,
    /// Where the payload is in the buffer.
    pub(crate) payload: Range<usize>,
    /// Offset of the byte after the record.
    pub(crate) end: usize,
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Decodes the record starting at `offset`, checking that it is complete and
/// that its checksum matches. The error says why the bytes are not a record.
pub(crate) fn decode(buf: &[u8], offset: usize) -> Result<Decoded, String> {
    let available = buf.len().saturating_sub(offset);
    if available < HEADER_BYTES {
        return Err(format!(
            "incomplete record header ({available} of {HEADER_BYTES} bytes)"
        ));
    }
    let len = read_u32(buf, offset) as usize;
    let stored = read_u32(buf, offset + 4);
    let seq = read_u64(buf, offset + 8);
    let start = offset + HEADER_BYTES;
    if len > buf.len() - start {
        return Err(format!(
            "incomplete record (header announces {len} payload bytes, {} present)",
            buf.len() - start
        ));
    }
    let payload = start..start + len;
    let computed = checksum(seq, &buf[payload.clone()]);
    if computed != stored {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Ok(Decoded {
        seq,
        end: payload.end,
        payload,
    })
}

/// What reading one log file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The valid records, in file order (sequence numbers `first_seq`,
    /// `first_seq + 1`, …).
    pub(crate) records: Vec<Decoded>,
    /// The first bytes that are not a valid record, if any.
    pub(crate) damage: Option<Damage>,
}

/// Bytes that are not the expected next record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Where the bad record starts (also the length of the valid prefix).
    pub(crate) offset: usize,
    pub(crate) reason: String,
    /// The bytes are a complete record with a valid checksum but the wrong
    /// sequence number: not something a torn write produces.
    pub(crate) misnumbered: bool,
    /// The offset of a valid record found after the damage: if there is one,
    /// the damage is not a torn tail.
    pub(crate) valid_record_after: Option<usize>,
}

/// Reads the records of a file whose first record must have sequence number
/// `first_seq`; within a file sequence numbers are dense, so record `k` must
/// carry `first_seq + k`. Stops at the first bytes that are not that record
/// and looks for any valid record after them.
pub(crate) fn scan(buf: &[u8], first_seq: u64) -> Scan {
    let mut records = Vec::new();
    let mut offset = 0;
    let mut expected = first_seq;
    while offset < buf.len() {
        let (reason, misnumbered) = match decode(buf, offset) {
            Ok(record) if record.seq == expected => {
                offset = record.end;
                expected = expected.saturating_add(1);
                records.push(record);
                continue;
            }
            Ok(record) => (
                format!(
                    "record has sequence number {} where {expected} was expected",
                    record.seq
                ),
                true,
            ),
            Err(reason) => (reason, false),
        };
        return Scan {
            records,
            damage: Some(Damage {
                offset,
                reason,
                misnumbered,
                valid_record_after: find_valid_record(buf, offset, expected),
            }),
        };
    }
    Scan {
        records,
        damage: None,
    }
}

/// Looks for a valid record after damaged bytes at `damaged`, where record
/// `expected` should have started. A record that was there before the damage
/// and comes `n` records later starts at least `n * HEADER_BYTES` bytes
/// later, so a candidate at `p` must carry a sequence number in
/// `expected ..= expected + (p - damaged) / HEADER_BYTES`: this cheap filter
/// comes before the checksum, keeping the search linear in practice.
fn find_valid_record(buf: &[u8], damaged: usize, expected: u64) -> Option<usize> {
    let last_start = buf.len().checked_sub(HEADER_BYTES)?;
    (damaged + 1..=last_start).find(|&p| {
        let seq = read_u64(buf, p + 8);
        let most = expected.saturating_add(((p - damaged) / HEADER_BYTES) as u64);
        (expected..=most).contains(&seq) && decode(buf, p).is_ok_and(|record| record.seq == seq)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(first_seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            encode(&mut buf, first_seq + i as u64, payload);
        }
        buf
    }

    #[test]
    fn file_names_round_trip_and_sort_numerically() {
        assert_eq!(file_name(7), "wal-00000000000000000007.log");
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        for bad in [
            "wal-7.log",
            "wal-0000000000000000007.log",
            "wal-000000000000000000007.log",
            "wal-0000000000000000000x.log",
            "wal-00000000000000000007.log.tmp",
            "wal-99999999999999999999.log",
            "wal.lock",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let buf = framed(5, &[b"a", b"", b"hello world"]);
        assert_eq!(buf.len(), 3 * HEADER_BYTES + 12);
        let scan = scan(&buf, 5);
        assert_eq!(scan.damage, None);
        let got: Vec<(u64, &[u8])> = scan
            .records
            .iter()
            .map(|r| (r.seq, &buf[r.payload.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![(5, &b"a"[..]), (6, &b""[..]), (7, &b"hello world"[..])]
        );
    }

    #[test]
    fn header_layout_is_little_endian() {
        let buf = framed(0x0102_0304_0506_0708, &[b"xyz"]);
        assert_eq!(&buf[0..4], &3u32.to_le_bytes());
        assert_eq!(
            &buf[4..8],
            &checksum(0x0102_0304_0506_0708, b"xyz").to_le_bytes()
        );
        assert_eq!(&buf[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&buf[16..], b"xyz");
    }

    #[test]
    fn torn_tail_is_damage_without_a_following_record() {
        let full = framed(1, &[b"one", b"two", b"three"]);
        let two = framed(1, &[b"one", b"two"]).len();
        for cut in two + 1..full.len() {
            let scan = scan(&full[..cut], 1);
            assert_eq!(scan.records.len(), 2, "cut at {cut}");
            let damage = scan.damage.expect("damage");
            assert_eq!(damage.offset, two);
            assert_eq!(damage.valid_record_after, None, "cut at {cut}");
        }
        let mut flipped = full.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let damage = scan(&flipped, 1).damage.expect("damage");
        assert!(damage.reason.contains("checksum"), "{}", damage.reason);
        assert_eq!(damage.valid_record_after, None);
    }

    #[test]
    fn damage_in_the_middle_finds_the_next_record() {
        let buf = framed(1, &[b"one", b"two", b"three", b"four"]);
        let second = framed(1, &[b"one"]).len();
        let third = framed(1, &[b"one", b"two"]).len();
        // Payload byte of record 2.
        let mut bad = buf.clone();
        bad[second + HEADER_BYTES] ^= 0xff;
        let damage = scan(&bad, 1).damage.expect("damage");
        assert_eq!(damage.offset, second);
        assert_eq!(damage.valid_record_after, Some(third));
        // Length field of record 2, pointing past the end of the file.
        let mut bad = buf.clone();
        bad[second + 3] = 0x7f;
        let damage = scan(&bad, 1).damage.expect("damage");
        assert!(damage.reason.contains("incomplete"), "{}", damage.reason);
        assert_eq!(damage.valid_record_after, Some(third));
    }

    #[test]
    fn wrong_sequence_number_is_damage() {
        let mut buf = framed(1, &[b"one", b"two"]);
        let stale = framed(1, &[b"old"]);
        buf.extend_from_slice(&stale);
        let scan = scan(&buf, 1);
        assert_eq!(scan.records.len(), 2);
        let damage = scan.damage.expect("damage");
        assert!(damage.reason.contains("sequence number 1 where 3"));
        assert!(damage.misnumbered);
        assert_eq!(damage.valid_record_after, None);
        assert_eq!(super::scan(&framed(4, &[b"x"]), 3).records.len(), 0);
    }

    #[test]
    fn zero_filled_tail_is_damage() {
        let mut buf = framed(1, &[b"one"]);
        let len = buf.len();
        buf.resize(len + 4096, 0);
        let scan = scan(&buf, 1);
        assert_eq!(scan.records.len(), 1);
        let damage = scan.damage.expect("damage");
        assert_eq!(damage.offset, len);
        assert_eq!(damage.valid_record_after, None);
    }
}

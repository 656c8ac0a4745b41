//! Reopening after crashes: torn tails are cut off, other damage is an error.

use std::fs;
use std::path::Path;

use super::*;
use crate::format::{self, HEADER_BYTES};
use crate::WalError;

/// Writes `count` records of 20 bytes into a fresh log and closes it.
/// Returns the payloads and the offset of the last record.
async fn five_records(dir: &Path) -> (Vec<Vec<u8>>, u64) {
    let (wal, _) = open(options(dir));
    let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 20]).collect();
    append_all(&wal, &payloads).await;
    wal.close().await.unwrap();
    (payloads, 4 * (HEADER_BYTES as u64 + 20))
}

fn only_file(dir: &Path) -> std::path::PathBuf {
    let files = log_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_numbering_continues() {
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 4] = [
        ("last byte missing", |b| {
            b.pop();
        }),
        ("only part of the header", |b| b.truncate(4 * 36 + 5)),
        ("payload missing", |b| b.truncate(4 * 36 + HEADER_BYTES)),
        ("checksum mismatch", |b| *b.last_mut().unwrap() ^= 0x40),
    ];
    for (name, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (payloads, last_offset) = five_records(dir.path()).await;
        let file = only_file(dir.path());
        let mut bytes = fs::read(&file).unwrap();
        damage(&mut bytes);
        fs::write(&file, &bytes).unwrap();

        let (wal, found) = open(options(dir.path()));
        assert_eq!(found, records(1, &payloads[..4]), "{name}");
        assert_eq!(file_len(&file), last_offset, "{name}");
        assert_eq!(wal.stats().next_seq, 5, "{name}");
        assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 5, "{name}");
        wal.close().await.unwrap();

        let (wal, found) = open(options(dir.path()));
        let mut expected = records(1, &payloads[..4]);
        expected.push(Record {
            seq: 5,
            payload: b"after".to_vec(),
        });
        assert_eq!(found, expected, "{name}");
        wal.close().await.unwrap();
    }
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_off() {
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..3000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push((x >> 24) as u8);
    }
    let tails: [(&str, Vec<u8>); 3] = [
        ("zeros", vec![0; 4096]),
        ("noise", noise),
        ("one byte", vec![1]),
    ];
    for (name, tail) in tails {
        let dir = tempfile::tempdir().unwrap();
        let (payloads, _) = five_records(dir.path()).await;
        let file = only_file(dir.path());
        let good_len = file_len(&file);
        let mut bytes = fs::read(&file).unwrap();
        bytes.extend_from_slice(&tail);
        fs::write(&file, &bytes).unwrap();

        let (wal, found) = open(options(dir.path()));
        assert_eq!(found, records(1, &payloads), "{name}");
        assert_eq!(file_len(&file), good_len, "{name}");
        assert_eq!(wal.append(b"x".to_vec()).await.unwrap(), 6, "{name}");
        wal.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_newest_file_torn_to_nothing_keeps_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        segment_bytes: 50,
        ..options(dir.path())
    });
    append_all(&wal, &vec![vec![b'p'; 40]; 3]).await;
    wal.close().await.unwrap();
    // Each record filled a file: wal-1, wal-2, wal-3 and the empty wal-4.
    let files = log_files(dir.path());
    assert_eq!(files.len(), 4);
    // A crash while writing the first record of wal-4.
    let mut torn = Vec::new();
    format::encode(&mut torn, 4, b"never acknowledged");
    fs::write(&files[3], &torn[..torn.len() - 3]).unwrap();

    let (wal, found) = open(options(dir.path()));
    assert_eq!(found.len(), 3);
    assert_eq!(file_len(&files[3]), 0);
    assert_eq!(wal.append(b"x".to_vec()).await.unwrap(), 4);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn damage_in_the_middle_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let file = only_file(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    // A payload byte of the second record.
    let second = HEADER_BYTES + 20;
    bytes[second + HEADER_BYTES + 3] ^= 1;
    fs::write(&file, &bytes).unwrap();

    for _ in 0..2 {
        match Wal::open(options(dir.path())) {
            Err(e @ WalError::Corrupt { .. }) => {
                let WalError::Corrupt {
                    file: f,
                    offset,
                    reason,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(f, &file);
                assert_eq!(*offset, second as u64);
                assert!(reason.contains("checksum"), "{reason}");
                assert!(reason.contains("valid record follows"), "{reason}");
                let text = e.to_string();
                assert!(text.contains(&file.display().to_string()), "{text}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read(&file).unwrap(), bytes, "the file was modified");
    }
}

#[tokio::test]
async fn a_corrupt_length_in_the_middle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let file = only_file(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    // The third record claims a payload running past the end of the file.
    let third = 2 * (HEADER_BYTES + 20);
    bytes[third + 2] = 0x10;
    fs::write(&file, &bytes).unwrap();
    match Wal::open(options(dir.path())) {
        Err(WalError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, third as u64);
            assert!(reason.contains("incomplete"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::read(&file).unwrap(), bytes);
}

#[tokio::test]
async fn damage_in_an_older_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        segment_bytes: 100,
        ..options(dir.path())
    });
    append_all(&wal, &vec![vec![b'p'; 40]; 6]).await;
    wal.close().await.unwrap();
    // Two records per file.
    let files = log_files(dir.path());
    assert_eq!(files.len(), 4, "{files:?}");
    let first = &files[0];
    let mut bytes = fs::read(first).unwrap();
    bytes.pop();
    fs::write(first, &bytes).unwrap();
    match Wal::open(options(dir.path())) {
        Err(WalError::Corrupt { file, reason, .. }) => {
            assert_eq!(&file, first);
            assert!(reason.contains("not the newest"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::read(first).unwrap(), bytes);
}

#[tokio::test]
async fn a_valid_record_with_the_wrong_number_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let file = only_file(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    format::encode(&mut bytes, 2, b"duplicate number");
    fs::write(&file, &bytes).unwrap();
    match Wal::open(options(dir.path())) {
        Err(WalError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 5 * 36);
            assert!(reason.contains("sequence number 2 where 6"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn overlapping_files_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let mut bytes = Vec::new();
    format::encode(&mut bytes, 3, b"three again");
    let second = dir.path().join(format::file_name(3));
    fs::write(&second, &bytes).unwrap();
    match Wal::open(options(dir.path())) {
        Err(WalError::Corrupt { file, reason, .. }) => {
            assert_eq!(file, second);
            assert!(
                reason.contains("already holds sequence number 5"),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_newest_file_gives_the_next_number() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format::file_name(42)), b"").unwrap();
    let (wal, found) = open(options(dir.path()));
    assert!(found.is_empty());
    assert_eq!(wal.append(b"x".to_vec()).await.unwrap(), 42);
    wal.close().await.unwrap();
    assert_eq!(log_files(dir.path()).len(), 1);
}

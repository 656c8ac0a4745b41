//! The mirror: a second copy of every batch before it is acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::{decode_records, WalError, WalMirror};

/// Keeps mirrored batches in memory; refuses them while `fail` is set.
#[derive(Default)]
struct MemoryMirror {
    batches: Mutex<Vec<(u64, u64, Vec<u8>)>>,
    truncated: Mutex<Vec<u64>>,
    fail: AtomicBool,
}

impl MemoryMirror {
    fn records(&self) -> Vec<Record> {
        let batches = self.batches.lock().unwrap();
        batches
            .iter()
            .flat_map(|(first, last, bytes)| {
                let records = decode_records(bytes, *first).expect("a mirrored batch decodes");
                assert_eq!(records.last().map(|r| r.seq), Some(*last));
                records
            })
            .collect()
    }
}

impl WalMirror for MemoryMirror {
    fn put(&self, first_seq: u64, last_seq: u64, bytes: &[u8]) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("the bucket is unreachable".into());
        }
        self.batches
            .lock()
            .unwrap()
            .push((first_seq, last_seq, bytes.to_vec()));
        Ok(())
    }

    fn truncate_through(&self, seq: u64) -> Result<(), String> {
        self.truncated.lock().unwrap().push(seq);
        self.batches
            .lock()
            .unwrap()
            .retain(|(_, last, _)| *last > seq);
        Ok(())
    }
}

fn mirrored(dir: &Path, mirror: &Arc<MemoryMirror>) -> WalOptions {
    WalOptions {
        mirror: Some(mirror.clone()),
        ..options(dir)
    }
}

#[tokio::test]
async fn every_acknowledged_record_is_in_the_mirror_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Arc::new(MemoryMirror::default());
    let (wal, _) = open(mirrored(dir.path(), &mirror));
    let written = payloads(0..20);
    let seqs = append_all(&wal, &written).await;
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    assert_eq!(mirror.records(), records(1, &written));
    wal.close().await.unwrap();
    // The local copy holds the same records.
    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, records(1, &written));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_mirror_write_fails_the_batch_and_gives_up_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Arc::new(MemoryMirror::default());
    let (wal, _) = open(mirrored(dir.path(), &mirror));
    let before = payloads(0..3);
    append_all(&wal, &before).await;

    mirror.fail.store(true, Ordering::SeqCst);
    match wal.append(b"refused".to_vec()).await {
        Err(WalError::Mirror {
            first_seq: 4,
            last_seq: 4,
            message,
        }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a mirror error, got {other:?}"),
    }
    let stats = wal.stats();
    assert_eq!((stats.next_seq, stats.durable_seq), (5, 3));

    mirror.fail.store(false, Ordering::SeqCst);
    assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 5);
    wal.close().await.unwrap();
    // Neither copy holds the refused record; both hold the rest.
    let mut expected = records(1, &before);
    expected.push(Record {
        seq: 5,
        payload: b"after".to_vec(),
    });
    assert_eq!(mirror.records(), expected);
    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, expected);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn truncation_reaches_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Arc::new(MemoryMirror::default());
    let (wal, _) = open(mirrored(dir.path(), &mirror));
    append_all(&wal, &payloads(0..5)).await;
    wal.truncate_through(3).unwrap();
    assert_eq!(*mirror.truncated.lock().unwrap(), vec![3]);
    let left: Vec<u64> = mirror.records().iter().map(|r| r.seq).collect();
    assert_eq!(left, vec![4, 5]);
    wal.close().await.unwrap();
}

#[test]
fn decoding_names_the_damage() {
    let mut bytes = Vec::new();
    crate::format::encode(&mut bytes, 7, b"one");
    crate::format::encode(&mut bytes, 8, b"two");
    let records = decode_records(&bytes, 7).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].payload, b"two");
    // Misnumbered: the batch does not start where its name says.
    let e = decode_records(&bytes, 6).unwrap_err();
    assert!(e.contains("at byte 0"), "{e}");
    // Cut short.
    let e = decode_records(&bytes[..bytes.len() - 1], 7).unwrap_err();
    assert!(e.contains("incomplete"), "{e}");
}

//! Many appenders at once, and group commit.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_unique_dense_numbers_and_survive_reopen() {
    const TASKS: usize = 16;
    const EACH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        fsync_interval: Duration::from_millis(1),
        // Rotation while appending.
        segment_bytes: 8 << 10,
        ..options(dir.path())
    };
    let (wal, _) = open(opts.clone());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..EACH {
                let payload = format!("task {t} append {i} {}", "x".repeat(i % 50)).into_bytes();
                let seq = wal.append(payload.clone()).await.expect("append");
                acked.push((seq, payload));
            }
            acked
        }));
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        for (seq, payload) in task.await.unwrap() {
            assert!(acked.insert(seq, payload).is_none(), "seq {seq} twice");
        }
    }
    let total = (TASKS * EACH) as u64;
    assert_eq!(acked.len() as u64, total);
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(wal.stats().durable_seq, total);
    assert_eq!(wal.stats().pending, 0);
    assert!(wal.stats().files > 1);
    wal.close().await.unwrap();

    let (wal, found) = open(opts);
    let found: BTreeMap<u64, Vec<u8>> = found.into_iter().map(|r| (r.seq, r.payload)).collect();
    assert_eq!(found, acked);
    wal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_syncs_many_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(Mutex::new(Vec::new()));
    let seen = syncs.clone();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_millis(20),
        on_fsync: Some(Arc::new(move |_latency, records, bytes| {
            seen.lock().unwrap().push((records, bytes));
        })),
        ..options(dir.path())
    });
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            wal.append(i.to_le_bytes().to_vec()).await
        }));
    }
    let mut seqs = HashSet::new();
    for task in tasks {
        assert!(seqs.insert(task.await.unwrap().unwrap()));
    }
    let syncs = syncs.lock().unwrap().clone();
    assert!(!syncs.is_empty());
    assert!(syncs.len() < 100, "{} fsyncs for 100 records", syncs.len());
    assert_eq!(syncs.iter().map(|s| s.0).sum::<usize>(), 100);
    assert_eq!(syncs.iter().map(|s| s.1).sum::<usize>(), 100 * 20);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_full_batch_is_committed_without_waiting_for_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = batches.clone();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_secs(30),
        max_batch_bytes: 1000,
        on_fsync: Some(Arc::new(move |_latency, records, _bytes| {
            seen.lock().unwrap().push(records);
        })),
        ..options(dir.path())
    });
    let started = Instant::now();
    // 416 bytes each: a batch is full with its third record.
    let appends: Vec<_> = (0..9).map(|_| wal.append(vec![0; 400])).collect();
    for (i, append) in appends.into_iter().enumerate() {
        assert_eq!(append.await.unwrap(), i as u64 + 1);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(*batches.lock().unwrap(), vec![3, 3, 3]);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_panicking_fsync_callback_does_not_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (wal, _) = open(WalOptions {
        on_fsync: Some(Arc::new(move |_, _, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("metrics bug");
        })),
        ..options(dir.path())
    });
    assert_eq!(wal.append(b"a".to_vec()).await.unwrap(), 1);
    assert_eq!(wal.append(b"b".to_vec()).await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    wal.close().await.unwrap();
}

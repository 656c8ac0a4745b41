//! Appending, reopening, numbering, options and closing.

use std::time::{Duration, Instant};

use super::*;
use crate::WalError;

#[tokio::test]
async fn appends_are_read_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, found) = open(options(dir.path()));
    assert!(found.is_empty());
    let stats = wal.stats();
    assert_eq!((stats.next_seq, stats.durable_seq, stats.files), (1, 0, 1));

    let first = payloads(0..5);
    assert_eq!(append_all(&wal, &first).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(wal.stats().durable_seq, 5);
    wal.close().await.unwrap();

    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, records(1, &first));
    assert_eq!(wal.stats().next_seq, 6);
    assert_eq!(wal.stats().durable_seq, 5);
    let second = payloads(5..8);
    assert_eq!(append_all(&wal, &second).await, vec![6, 7, 8]);
    wal.close().await.unwrap();

    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, records(1, &[first, second].concat()));
    // Reopening continued the same file.
    assert_eq!(log_files(dir.path()).len(), 1);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn numbering_starts_at_min_next_seq_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        min_next_seq: 100,
        ..options(dir.path())
    });
    assert_eq!(wal.stats().next_seq, 100);
    assert_eq!(wal.stats().durable_seq, 99);
    assert_eq!(wal.append(b"a".to_vec()).await.unwrap(), 100);
    wal.close().await.unwrap();

    // A lower floor does not move numbering back.
    let (wal, found) = open(options(dir.path()));
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![100]);
    assert_eq!(wal.append(b"b".to_vec()).await.unwrap(), 101);
    wal.close().await.unwrap();

    // A higher floor jumps ahead, in a new file (numbers are dense within a
    // file).
    let (wal, _) = open(WalOptions {
        min_next_seq: 500,
        ..options(dir.path())
    });
    assert_eq!(wal.append(b"c".to_vec()).await.unwrap(), 500);
    wal.close().await.unwrap();
    let names: Vec<String> = log_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "wal-00000000000000000100.log",
            "wal-00000000000000000500.log"
        ]
    );
    let (wal, found) = open(options(dir.path()));
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![100, 101, 500]
    );
    assert_eq!(wal.append(b"d".to_vec()).await.unwrap(), 501);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn too_large_payloads_are_refused_without_using_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        max_record_bytes: 10,
        ..options(dir.path())
    });
    match wal.append(vec![0; 11]).await {
        Err(WalError::TooLarge { bytes: 11, max: 10 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(wal.append(vec![0; 10]).await.unwrap(), 1);
    assert_eq!(wal.append(Vec::new()).await.unwrap(), 2);
    wal.close().await.unwrap();
    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, records(1, &[vec![0; 10], Vec::new()]));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_closed_log_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    let other = wal.clone();
    wal.append(b"x".to_vec()).await.unwrap();
    wal.close().await.unwrap();
    assert!(matches!(
        other.append(b"y".to_vec()).await,
        Err(WalError::Closed)
    ));
    assert!(matches!(wal.truncate_through(1), Err(WalError::Closed)));
    other.close().await.unwrap();
    assert_eq!(wal.stats().files, 1);
    assert_eq!(wal.stats().pending, 0);
}

#[tokio::test]
async fn close_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_secs(30),
        ..options(dir.path())
    });
    let started = Instant::now();
    let appends: Vec<_> = (0..10).map(|i| wal.append(vec![i])).collect();
    wal.close().await.unwrap();
    // Close did not wait for the 30 s window.
    assert!(started.elapsed() < Duration::from_secs(10));
    for (i, append) in appends.into_iter().enumerate() {
        assert_eq!(append.await.unwrap(), i as u64 + 1);
    }
    let (wal, found) = open(options(dir.path()));
    assert_eq!(found.len(), 10);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_directory_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    match Wal::open(options(dir.path())) {
        Err(e @ WalError::Locked { .. }) => {
            assert!(e.to_string().contains(&dir.path().display().to_string()))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    wal.close().await.unwrap();
    // The lock is released by close even while the handle lives.
    let (again, _) = open(options(dir.path()));
    again.close().await.unwrap();
    drop(wal);
}

#[tokio::test]
async fn dropping_every_handle_commits_queued_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_millis(50),
        ..options(dir.path())
    });
    let appends: Vec<_> = (0..5).map(|i| wal.append(vec![i])).collect();
    drop(wal);
    for (i, append) in appends.into_iter().enumerate() {
        assert_eq!(append.await.unwrap(), i as u64 + 1);
    }
    // The committer releases the directory as it stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (wal, found) = loop {
        match Wal::open(options(dir.path())) {
            Ok(opened) => break opened,
            Err(WalError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("open failed: {e}"),
        }
    };
    assert_eq!(found.len(), 5);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn records_are_numbered_in_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_millis(5),
        ..options(dir.path())
    });
    let a = wal.append(b"a".to_vec());
    let b = wal.append(b"b".to_vec());
    let c = wal.append(b"c".to_vec());
    assert_eq!(c.await.unwrap(), 3);
    assert_eq!(b.await.unwrap(), 2);
    assert_eq!(a.await.unwrap(), 1);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn stats_count_files_bytes_and_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        fsync_interval: Duration::from_millis(200),
        ..options(dir.path())
    });
    let append = wal.append(vec![7; 100]);
    assert_eq!(wal.stats().pending, 1);
    assert_eq!(append.await.unwrap(), 1);
    let stats = wal.stats();
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.files, 1);
    assert_eq!(stats.bytes, 116);
    assert_eq!(stats.next_seq, 2);
    assert_eq!(stats.durable_seq, 1);
    assert_eq!(file_len(&log_files(dir.path())[0]), 116);
    // A dropped append stops counting as pending.
    drop(wal.append(vec![1]));
    assert_eq!(wal.stats().pending, 0);
    wal.close().await.unwrap();
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, WalOptions)> = vec![
        ("dir", WalOptions::new("")),
        (
            "max_batch_bytes",
            WalOptions {
                max_batch_bytes: 0,
                ..options(dir.path())
            },
        ),
        (
            "segment_bytes",
            WalOptions {
                segment_bytes: 0,
                ..options(dir.path())
            },
        ),
        (
            "max_record_bytes",
            WalOptions {
                max_record_bytes: u32::MAX as usize + 1,
                ..options(dir.path())
            },
        ),
        (
            "min_next_seq",
            WalOptions {
                min_next_seq: u64::MAX,
                ..options(dir.path())
            },
        ),
    ];
    for (field, options) in cases {
        match Wal::open(options) {
            Err(WalError::InvalidOption { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidOption, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn open_creates_the_directory_and_ignores_other_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("wal");
    let (wal, _) = open(options(&dir));
    wal.append(b"x".to_vec()).await.unwrap();
    wal.close().await.unwrap();
    std::fs::write(dir.join("notes.txt"), b"not a log").unwrap();
    std::fs::write(dir.join("wal-7.log"), b"not a log either").unwrap();
    let (wal, found) = open(options(&dir));
    assert_eq!(found, records(1, &[b"x".to_vec()]));
    wal.close().await.unwrap();
}

#[test]
fn wal_is_send_sync_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Wal>();
    send_sync::<WalError>();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    let append = wal.append(Vec::new());
    send_static(&append);
    let close = wal.close();
    send(&close);
    drop(append);
    drop(close);
}

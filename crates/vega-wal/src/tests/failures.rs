//! Injected write, fdatasync and truncate failures.

use super::*;
use crate::WalError;

fn expect_io(result: Result<u64, WalError>, action: &str) {
    match result {
        Err(WalError::Io {
            action: a, source, ..
        }) => {
            assert_eq!(a, action);
            assert_eq!(source.raw_os_error(), Some(libc::EIO));
        }
        other => panic!("expected an Io error from {action}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_write_fails_its_batch_and_the_next_batch_reuses_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    let before = payloads(0..3);
    append_all(&wal, &before).await;
    let file = log_files(dir.path())[0].clone();
    let durable_len = file_len(&file);

    wal.faults().writes.arm(1);
    // Half of the batch reaches the file before the failure.
    expect_io(wal.append(vec![9; 1000]).await, "write");
    assert_eq!(file_len(&file), durable_len, "not cut back");
    let stats = wal.stats();
    assert_eq!((stats.next_seq, stats.durable_seq, stats.files), (4, 3, 1));

    assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 4);
    wal.close().await.unwrap();
    let (wal, found) = open(options(dir.path()));
    let mut expected = records(1, &before);
    expected.push(Record {
        seq: 4,
        payload: b"after".to_vec(),
    });
    assert_eq!(found, expected);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_failed_fsync_seals_the_file_and_skips_the_batch_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    let before = payloads(0..3);
    append_all(&wal, &before).await;
    let first = log_files(dir.path())[0].clone();
    let durable_len = file_len(&first);

    wal.faults().syncs.arm(1);
    expect_io(wal.append(b"lost".to_vec()).await, "fdatasync");
    // The untrusted file was cut back and sealed; numbering moved on.
    assert_eq!(file_len(&first), durable_len);
    let stats = wal.stats();
    assert_eq!((stats.next_seq, stats.durable_seq, stats.files), (5, 3, 1));

    assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 5);
    let files = log_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(files[1].ends_with("wal-00000000000000000005.log"));
    wal.close().await.unwrap();

    let (wal, found) = open(options(dir.path()));
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 5]
    );
    assert_eq!(found[3].payload, b"after");
    assert_eq!(wal.append(b"more".to_vec()).await.unwrap(), 6);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_failed_cut_is_retried_before_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    append_all(&wal, &payloads(0..3)).await;
    let first = log_files(dir.path())[0].clone();
    let durable_len = file_len(&first);

    wal.faults().writes.arm(1);
    wal.faults().truncates.arm(1);
    expect_io(wal.append(vec![9; 1000]).await, "write");
    // The half-written batch is still there; the file is sealed.
    assert!(file_len(&first) > durable_len);
    assert_eq!(wal.stats().next_seq, 5);

    assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 5);
    assert_eq!(file_len(&first), durable_len, "cut not retried");
    wal.close().await.unwrap();
    let (wal, found) = open(options(dir.path()));
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 5]
    );
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_sealed_file_that_cannot_be_cut_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    append_all(&wal, &payloads(0..3)).await;
    let first = log_files(dir.path())[0].clone();

    wal.faults().writes.arm(1);
    wal.faults().truncates.arm(usize::MAX);
    expect_io(wal.append(vec![9; 1000]).await, "write");
    // The log keeps working in a new file.
    assert_eq!(wal.append(b"after".to_vec()).await.unwrap(), 5);
    wal.close().await.unwrap();

    // The damaged tail is in a file that is not the newest: open refuses to
    // guess rather than drop anything.
    match Wal::open(options(dir.path())) {
        Err(WalError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, first);
            assert_eq!(offset, 3 * 24);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_write_in_a_fresh_file_keeps_the_file_name_right() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(WalOptions {
        segment_bytes: 50,
        ..options(dir.path())
    });
    // 56 bytes framed: each record fills a file.
    append_all(&wal, &[vec![1; 40], vec![2; 40]]).await;
    assert_eq!(log_files(dir.path()).len(), 3);
    wal.faults().writes.arm(1);
    expect_io(wal.append(vec![3; 40]).await, "write");
    assert_eq!(wal.append(vec![4; 40]).await.unwrap(), 3);
    wal.close().await.unwrap();
    let (wal, found) = open(options(dir.path()));
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(found[2].payload, vec![4; 40]);
    wal.close().await.unwrap();
}

//! Rotation by size and truncation of flushed records.

use super::*;

fn names(dir: &Path) -> Vec<String> {
    log_files(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// 40-byte payloads: 56 bytes framed, so a 100-byte segment takes two.
fn two_per_file(dir: &Path) -> WalOptions {
    WalOptions {
        segment_bytes: 100,
        ..options(dir)
    }
}

fn payload(i: u8) -> Vec<u8> {
    vec![i; 40]
}

#[tokio::test]
async fn files_rotate_past_segment_bytes_and_are_named_by_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(two_per_file(dir.path()));
    let all: Vec<Vec<u8>> = (1..=6).map(payload).collect();
    assert_eq!(append_all(&wal, &all).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        names(dir.path()),
        vec![
            "wal-00000000000000000001.log",
            "wal-00000000000000000003.log",
            "wal-00000000000000000005.log",
            "wal-00000000000000000007.log",
        ]
    );
    let stats = wal.stats();
    assert_eq!(stats.files, 4);
    assert_eq!(stats.bytes, 6 * 56);
    wal.close().await.unwrap();

    let (wal, found) = open(two_per_file(dir.path()));
    assert_eq!(found, records(1, &all));
    assert_eq!(wal.append(payload(7)).await.unwrap(), 7);
    wal.close().await.unwrap();
    // Record 7 went into the empty newest file.
    assert_eq!(names(dir.path()).len(), 4);
}

#[tokio::test]
async fn truncate_through_deletes_only_files_fully_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(two_per_file(dir.path()));
    let all: Vec<Vec<u8>> = (1..=6).map(payload).collect();
    append_all(&wal, &all).await;

    // Record 4 shares wal-3 with record 3, so only wal-1 goes.
    assert_eq!(wal.truncate_through(3).unwrap(), 1);
    assert_eq!(names(dir.path())[0], "wal-00000000000000000003.log");
    assert_eq!(wal.truncate_through(3).unwrap(), 0);
    assert_eq!(wal.truncate_through(4).unwrap(), 1);
    assert_eq!(wal.stats().files, 2);
    assert_eq!(wal.stats().bytes, 2 * 56);
    wal.close().await.unwrap();

    let (wal, found) = open(two_per_file(dir.path()));
    assert_eq!(found, records(5, &all[4..]));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn truncating_everything_rotates_and_keeps_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    append_all(&wal, &payloads(0..10)).await;
    assert_eq!(names(dir.path()), vec!["wal-00000000000000000001.log"]);

    // Records 1..=5 share the active file with 6..=10: nothing goes.
    assert_eq!(wal.truncate_through(5).unwrap(), 0);
    assert_eq!(names(dir.path()), vec!["wal-00000000000000000001.log"]);

    // All of them are covered: the active file is sealed and removed, the new
    // empty file carries the next number.
    assert_eq!(wal.truncate_through(10).unwrap(), 1);
    assert_eq!(names(dir.path()), vec!["wal-00000000000000000011.log"]);
    // The newest file is never removed.
    assert_eq!(wal.truncate_through(u64::MAX).unwrap(), 0);
    assert_eq!(wal.stats().files, 1);
    assert_eq!(wal.stats().bytes, 0);
    wal.close().await.unwrap();

    let (wal, found) = open(options(dir.path()));
    assert!(found.is_empty());
    assert_eq!(wal.append(b"next".to_vec()).await.unwrap(), 11);
    assert_eq!(wal.truncate_through(10).unwrap(), 0);
    wal.close().await.unwrap();

    let (wal, found) = open(options(dir.path()));
    assert_eq!(found, records(11, &[b"next".to_vec()]));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn appends_continue_after_truncation_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(options(dir.path()));
    for round in 0..5u64 {
        let seqs = append_all(&wal, &payloads(0..3)).await;
        assert_eq!(seqs, vec![round * 3 + 1, round * 3 + 2, round * 3 + 3]);
        assert_eq!(wal.truncate_through(round * 3 + 3).unwrap(), 1);
    }
    assert_eq!(names(dir.path()), vec!["wal-00000000000000000016.log"]);
    wal.close().await.unwrap();
}

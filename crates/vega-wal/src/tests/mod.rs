//! Tests of the write-ahead log against real files.

mod basic;
mod concurrency;
mod crash;
mod disk_full;
mod failures;
mod mirror;
mod recovery;
mod truncate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Record, Wal, WalOptions};

/// Options for a test log in `dir`: no group-commit wait.
fn options(dir: &Path) -> WalOptions {
    WalOptions {
        fsync_interval: Duration::ZERO,
        ..WalOptions::new(dir)
    }
}

fn open(options: WalOptions) -> (Wal, Vec<Record>) {
    match Wal::open(options) {
        Ok(opened) => opened,
        Err(e) => panic!("open failed: {e}"),
    }
}

/// Appends one record after another, returning their sequence numbers.
async fn append_all(wal: &Wal, payloads: &[Vec<u8>]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for payload in payloads {
        seqs.push(wal.append(payload.clone()).await.expect("append"));
    }
    seqs
}

fn payloads(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("record {i}").into_bytes()).collect()
}

fn records(first_seq: u64, payloads: &[Vec<u8>]) -> Vec<Record> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| Record {
            seq: first_seq + i as u64,
            payload: payload.clone(),
        })
        .collect()
}

/// The log files of `dir`, oldest first.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(crate::format::parse_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

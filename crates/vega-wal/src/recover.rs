//! Reading the log back at open: every file in order, with the torn tail of
//! the newest file cut off and any other damage reported.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use crate::format::{self, Damage};
use crate::state::FileInfo;
use crate::{Record, WalError};

/// The log's contents as found on disk.
pub(crate) struct Recovered {
    /// Every record, in sequence order.
    pub(crate) records: Vec<Record>,
    /// Every log file, oldest first, with its length after any repair.
    pub(crate) files: Vec<FileInfo>,
}

/// Reads every log file of `dir`. Files that are not named like log files
/// are ignored.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, WalError> {
    scan_dir(dir, true)
}

/// Every record of the log in `dir`, read without taking the log's lock and
/// without repairing anything: for another node taking over a log whose
/// owner may still hold it open. A torn tail of the newest file (a write in
/// progress, never acknowledged) is left out; other damage is an error.
pub fn read_records(dir: &Path) -> Result<Vec<Record>, WalError> {
    Ok(scan_dir(dir, false)?.records)
}

/// Reads every log file of `dir`; with `repair`, syncs each file and cuts a
/// torn tail off.
fn scan_dir(dir: &Path, repair: bool) -> Result<Recovered, WalError> {
    let io = |action, path: &Path, e| WalError::io(action, path, dir, e);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let Some(first_seq) = entry.file_name().to_str().and_then(format::parse_file_name) else {
            continue;
        };
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io("inspect", &path, e))?;
        if !file_type.is_file() {
            return Err(WalError::Corrupt {
                file: path,
                offset: 0,
                reason: "named like a log file but not a regular file".into(),
            });
        }
        found.push((first_seq, path));
    }
    found.sort();

    let mut records = Vec::new();
    let mut files = Vec::with_capacity(found.len());
    let mut last_seq: Option<u64> = None;
    let count = found.len();
    for (index, (first_seq, path)) in found.into_iter().enumerate() {
        if let Some(previous) = last_seq {
            if first_seq <= previous {
                return Err(WalError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: format!(
                        "the file starts at sequence number {first_seq} but an older file \
                         already holds sequence number {previous}"
                    ),
                });
            }
        }
        let bytes = fs::read(&path).map_err(|e| io("read", &path, e))?;
        let scan = format::scan(&bytes, first_seq);
        let mut len = bytes.len() as u64;
        let newest = index + 1 == count;
        match scan.damage {
            None if repair => sync_file(&path, dir)?,
            None => {}
            Some(damage) if !repair => {
                check_torn_tail(&path, &damage, newest)?;
                len = damage.offset as u64;
            }
            Some(damage) => {
                check_torn_tail(&path, &damage, newest)?;
                tracing::warn!(
                    file = %path.display(),
                    offset = damage.offset,
                    dropped_bytes = bytes.len() - damage.offset,
                    reason = %damage.reason,
                    "cutting off a torn record at the end of the write-ahead log"
                );
                cut_file(&path, damage.offset as u64, dir)?;
                len = damage.offset as u64;
            }
        }
        let file_last_seq = scan.records.last().map(|r| r.seq);
        records.extend(scan.records.into_iter().map(|r| Record {
            seq: r.seq,
            payload: bytes[r.payload].to_vec(),
        }));
        if file_last_seq.is_some() {
            last_seq = file_last_seq;
        }
        files.push(FileInfo {
            path,
            first_seq,
            len,
            last_seq: file_last_seq,
            needs_cut: false,
        });
    }
    Ok(Recovered { records, files })
}

/// Damage is a torn tail only at the end of the newest file, with no valid
/// record after it, and only if it is not a complete record carrying the
/// wrong sequence number; anything else is corruption.
fn check_torn_tail(path: &Path, damage: &Damage, newest: bool) -> Result<(), WalError> {
    let reason = if let Some(valid) = damage.valid_record_after {
        format!(
            "{}, and a valid record follows at byte {valid} (damage in the middle of the log, \
             not a torn tail)",
            damage.reason
        )
    } else if damage.misnumbered {
        format!(
            "{} (a complete record with a valid checksum cannot come from a torn write)",
            damage.reason
        )
    } else if !newest {
        format!(
            "{} in a file that is not the newest (only the newest file can have a torn tail)",
            damage.reason
        )
    } else {
        return Ok(());
    };
    Err(WalError::Corrupt {
        file: path.to_path_buf(),
        offset: damage.offset as u64,
        reason,
    })
}

/// Syncs a file found on disk, so every record `open` returns is durable
/// even if the process that wrote it died before its fdatasync.
fn sync_file(path: &Path, dir: &Path) -> Result<(), WalError> {
    File::open(path)
        .and_then(|f| f.sync_data())
        .map_err(|e| WalError::io("fdatasync", path, dir, e))
}

/// Cuts a torn tail off: ftruncate, then fdatasync.
fn cut_file(path: &Path, len: u64, dir: &Path) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open", path, dir, e))?;
    file.set_len(len)
        .map_err(|e| WalError::io("truncate", path, dir, e))?;
    file.sync_data()
        .map_err(|e| WalError::io("fdatasync", path, dir, e))
}

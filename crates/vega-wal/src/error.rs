//! Errors of the write-ahead log, each naming the file or directory involved.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong in the write-ahead log.
///
/// The error is `Clone` because one failed commit answers every append of
/// its batch with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// The file system holding the log is full (`ENOSPC`) or the quota is
    /// exhausted (`EDQUOT`). Nothing of the failed batch was acknowledged;
    /// later appends are tried again normally, so ingest resumes by itself
    /// once space is freed.
    #[error("no space left for the write-ahead log in '{dir}': {message}")]
    DiskFull { dir: PathBuf, message: String },

    /// Any other file-system operation failed.
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// A log file holds damaged data that is not a torn tail: a bad record
    /// followed by valid ones, or a bad record in a file that is not the
    /// newest. The log refuses to open rather than drop records silently.
    #[error("write-ahead log file '{file}' is damaged at byte {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A payload larger than `max_record_bytes`; nothing was written.
    #[error("record of {bytes} bytes is larger than the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },

    /// Another open log (in this process or another one) holds the
    /// directory's lock.
    #[error("write-ahead log directory '{dir}' is already in use by another writer")]
    Locked { dir: PathBuf },

    /// An option that cannot be used.
    #[error("invalid write-ahead log option {field}: {message}")]
    InvalidOption {
        field: &'static str,
        message: String,
    },

    /// The log's mirror (the second copy in an object store) did not store
    /// a batch; nothing of it was acknowledged. Later appends are tried
    /// again normally.
    #[error(
        "the write-ahead log's mirror did not store records {first_seq}..={last_seq}: {message}"
    )]
    Mirror {
        first_seq: u64,
        last_seq: u64,
        message: String,
    },

    /// The log was closed (or its committer stopped); the record was not
    /// written.
    #[error("the write-ahead log is closed")]
    Closed,
}

impl WalError {
    /// Whether the error means the disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::DiskFull { .. })
    }

    /// Maps an I/O error of `action` on `path` (inside the log directory
    /// `dir`) to `DiskFull` when it is `ENOSPC`/`EDQUOT`, else to `Io`.
    pub(crate) fn io(action: &'static str, path: &Path, dir: &Path, source: io::Error) -> Self {
        if is_disk_full(&source) {
            WalError::DiskFull {
                dir: dir.to_path_buf(),
                message: format!("cannot {action} '{}': {source}", path.display()),
            }
        } else {
            WalError::Io {
                action,
                path: path.to_path_buf(),
                source: Arc::new(source),
            }
        }
    }
}

fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || error.kind() == io::ErrorKind::StorageFull
        || error.kind() == io::ErrorKind::QuotaExceeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_disk_full() {
        let dir = Path::new("/data/wal");
        let file = dir.join("wal-00000000000000000001.log");
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = WalError::io("write", &file, dir, io::Error::from_raw_os_error(errno));
            assert!(e.is_disk_full(), "{e}");
            let text = e.to_string();
            assert!(text.contains("/data/wal"), "{text}");
            assert!(text.contains("wal-00000000000000000001.log"), "{text}");
        }
        let e = WalError::io("write", &file, dir, io::Error::from_raw_os_error(libc::EIO));
        assert!(!e.is_disk_full());
        let text = e.to_string();
        assert!(text.starts_with("cannot write '/data/wal/wal-"), "{text}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn corrupt_names_file_offset_and_reason() {
        let e = WalError::Corrupt {
            file: PathBuf::from("/data/wal/wal-00000000000000000007.log"),
            offset: 42,
            reason: "checksum mismatch".into(),
        };
        assert_eq!(
            e.to_string(),
            "write-ahead log file '/data/wal/wal-00000000000000000007.log' is damaged at byte 42: checksum mismatch"
        );
    }
}

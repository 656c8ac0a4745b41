//! The state shared by the handles and the committer thread: the open log
//! files, the next sequence number and the counters behind `stats`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::format;
use crate::{FsyncCallback, WalError, WalMirror};

/// Everything the committer and the handles share.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) on_fsync: Option<FsyncCallback>,
    pub(crate) mirror: Option<Arc<dyn WalMirror>>,
    /// The files. The committer holds the lock while it writes and syncs a
    /// batch; `truncate_through` holds it while it rotates and deletes.
    state: Mutex<State>,
    /// Read by `stats` without taking the state lock (which may be held
    /// through a slow fsync).
    pub(crate) counters: Counters,
    /// The directory lock, held until the log is closed.
    lock_file: Mutex<Option<File>>,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        segment_bytes: u64,
        on_fsync: Option<FsyncCallback>,
        mirror: Option<Arc<dyn WalMirror>>,
        state: State,
        lock_file: File,
    ) -> Shared {
        let durable_seq = state.next_seq.saturating_sub(1);
        let shared = Shared {
            dir,
            segment_bytes,
            on_fsync,
            mirror,
            counters: Counters::default(),
            state: Mutex::new(state),
            lock_file: Mutex::new(Some(lock_file)),
            #[cfg(test)]
            faults: Faults::default(),
        };
        shared
            .counters
            .durable_seq
            .store(durable_seq, Ordering::Release);
        shared.publish(&shared.lock_state());
        shared
    }

    /// Locks the state. A panic while the lock was held cannot leave a
    /// half-updated file list (every update is a single assignment after the
    /// I/O), so a poisoned lock is used as is.
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the file list's totals into the counters.
    pub(crate) fn publish(&self, state: &State) {
        let c = &self.counters;
        c.next_seq.store(state.next_seq, Ordering::Release);
        let files = state.sealed.len() + usize::from(state.active.is_some());
        c.files.store(files, Ordering::Release);
        let bytes = state.sealed.iter().map(|f| f.len).sum::<u64>()
            + state.active.as_ref().map_or(0, |a| a.info.len);
        c.bytes.store(bytes, Ordering::Release);
    }

    /// Releases the directory lock (after the last write).
    pub(crate) fn release_lock(&self) {
        let file = self
            .lock_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(file);
    }

    pub(crate) fn io_error(&self, action: &'static str, path: &Path, e: io::Error) -> WalError {
        WalError::io(action, path, &self.dir, e)
    }

    /// Creates the log file for `first_seq` and makes its directory entry
    /// durable. An empty file of that name left by an earlier failed attempt
    /// is reused; a non-empty one is an error (names are never reused).
    pub(crate) fn create_file(&self, first_seq: u64) -> Result<ActiveFile, WalError> {
        let path = self.dir.join(format::file_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io_error("create", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| self.io_error("inspect", &path, e))?
            .len();
        if len != 0 {
            return Err(WalError::Io {
                action: "create",
                path,
                source: std::sync::Arc::new(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("a log file of that name already holds {len} bytes"),
                )),
            });
        }
        sync_dir(&self.dir)?;
        tracing::debug!(file = %path.display(), "created write-ahead log file");
        Ok(ActiveFile {
            file,
            info: FileInfo {
                path,
                first_seq,
                len: 0,
                last_seq: None,
                needs_cut: false,
            },
        })
    }

    /// Retries cutting sealed files back to their durable length after a
    /// failed batch whose own cut failed, so that a restart does not find
    /// their damaged tails (which, in a file that is not the newest, `open`
    /// reports as corruption).
    pub(crate) fn retry_cuts(&self, state: &mut State) {
        for info in state.sealed.iter_mut().filter(|f| f.needs_cut) {
            let cut = OpenOptions::new()
                .write(true)
                .open(&info.path)
                .and_then(|file| {
                    self.truncate(&file, info.len)?;
                    self.sync(&file)
                });
            match cut {
                Ok(()) => {
                    info.needs_cut = false;
                    tracing::info!(file = %info.path.display(), len = info.len,
                        "cut a sealed write-ahead log file back to its durable length");
                }
                Err(e) => tracing::warn!(file = %info.path.display(), error = %e,
                    "still cannot cut a sealed write-ahead log file back to its durable length"),
            }
        }
    }

    /// Writes `buf` at `offset`.
    pub(crate) fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.writes.hit() {
            // A failure half-way through, like a disk filling up mid-batch.
            file.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        file.write_all_at(buf, offset)
    }

    /// `fdatasync`.
    pub(crate) fn sync(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.syncs.hit() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        file.sync_data()
    }

    /// `ftruncate`.
    pub(crate) fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.truncates.hit() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        file.set_len(len)
    }
}

/// `fsync` of a directory, so that created, renamed or removed entries are
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("sync directory", dir, dir, e))
}

/// The file list. Files are ordered by first sequence number; the active
/// file, when there is one, is the newest.
pub(crate) struct State {
    /// The file the committer appends to. `None` after an fsync failure (or
    /// when open did not continue the newest file) until the next batch
    /// creates a new one.
    pub(crate) active: Option<ActiveFile>,
    /// Older files, oldest first; never written again.
    pub(crate) sealed: Vec<FileInfo>,
    /// The sequence number of the next record.
    pub(crate) next_seq: u64,
    /// Set when the log is closed.
    pub(crate) shut: bool,
}

/// The file being appended to.
pub(crate) struct ActiveFile {
    pub(crate) file: File,
    pub(crate) info: FileInfo,
}

/// What the log knows about one of its files.
#[derive(Debug, Clone)]
pub(crate) struct FileInfo {
    pub(crate) path: PathBuf,
    /// The sequence number in the file name.
    pub(crate) first_seq: u64,
    /// Length of the durable contents (for the active file, up to the last
    /// successful fdatasync).
    pub(crate) len: u64,
    /// Sequence number of the last durable record, `None` when the file holds
    /// none.
    pub(crate) last_seq: Option<u64>,
    /// A sealed file whose bytes after `len` (from a failed batch) could not
    /// be cut off yet; the cut is retried before each batch.
    pub(crate) needs_cut: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) next_seq: AtomicU64,
    pub(crate) durable_seq: AtomicU64,
    pub(crate) files: AtomicUsize,
    pub(crate) bytes: AtomicU64,
    pub(crate) pending: AtomicUsize,
}

/// Injected I/O failures for tests: each counter is the number of coming
/// calls of that kind that fail with `EIO`.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) writes: Fault,
    pub(crate) syncs: Fault,
    pub(crate) truncates: Fault,
}

#[cfg(test)]
#[derive(Default)]
pub(crate) struct Fault(AtomicUsize);

#[cfg(test)]
impl Fault {
    pub(crate) fn arm(&self, times: usize) {
        self.0.store(times, Ordering::SeqCst);
    }

    fn hit(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

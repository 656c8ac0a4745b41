//! The write-ahead log behind streaming ingest.
//!
//! Ingest acknowledges a write (HTTP 204, MQTT PUBACK) only after
//! [`Wal::append`] has returned its sequence number, and `append` returns
//! only after the record is written and `fdatasync`ed. Records are opaque
//! byte payloads; the caller encodes them. After a crash, [`Wal::open`]
//! returns every acknowledged record that was not yet truncated away, and the
//! caller replays them.
//!
//! # Format
//!
//! The log is a directory of files named `wal-<first seq>.log`, the first
//! sequence number written as 20 zero-padded decimal digits, so name order is
//! sequence order. A file is a plain concatenation of records:
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 of (u64 LE seq ++ payload)][u64 LE seq][payload]
//! ```
//!
//! Within a file sequence numbers are dense: the first record carries the
//! number in the file name, each next record one more. Across files they
//! strictly increase, with a gap only where a failed batch's numbers were
//! given up (see below). A directory also holds `wal.lock`, which an open log
//! keeps locked (`flock`) so that two writers never share a directory.
//!
//! # Durability argument
//!
//! 1. One committer thread owns the files. Appenders send their payload and a
//!    one-shot reply channel; the committer gathers a batch (the group-commit
//!    window, [`WalOptions::fsync_interval`]), writes all of it with one
//!    positioned write after the last durable byte, calls `fdatasync`, and
//!    only when that succeeds answers the batch's appenders. So a sequence
//!    number is returned only for a record whose bytes (and the file length
//!    covering them) reached the disk.
//! 2. A new file's directory entry is made durable (`fsync` of the
//!    directory) before any record is written to it, so a synced record can
//!    never sit in a file that disappears after a crash.
//! 3. Nothing acknowledged is ever rewritten: writes only go after the
//!    durable length, and the only cuts are back to that length.
//! 4. At open, every file is read in order and synced, so every record
//!    returned is durable even when the process that wrote it died between
//!    its write and its `fdatasync`. A bad record at the very end of the
//!    newest file (incomplete, failing its checksum or carrying the wrong
//!    sequence number) with no valid record after it is a torn tail: a batch
//!    the crash interrupted, never acknowledged. It is cut off (`ftruncate`
//!    and `fdatasync`) and logged. Any other damage — a bad record followed
//!    by a valid one, or a bad record in an older file — is
//!    [`WalError::Corrupt`]: the log refuses to open rather than drop records
//!    that may have been acknowledged.
//! 5. Files are deleted only by [`Wal::truncate_through`], only when every
//!    record they hold is at or below the sequence number the caller says is
//!    safe elsewhere, and never the newest file, whose name keeps numbering
//!    going when it holds no record.
//!
//! # Failures
//!
//! - A failed write (for example `ENOSPC`, reported as
//!   [`WalError::DiskFull`]) fails every append of the batch; the file is
//!   cut back to its durable length and synced, so no garbage sits before
//!   later records, and the batch's sequence numbers are used again. The
//!   next batch is tried normally, so ingest resumes by itself when space
//!   returns.
//! - A failed `fdatasync` means the page cache may have dropped dirty pages
//!   while reporting the error only once: the file cannot be trusted. It is
//!   cut back to its durable length, sealed, and the next batch starts a new
//!   file. The failed batch's sequence numbers are skipped, so even if some
//!   of its bytes survive in the sealed file they never collide with later
//!   records. The same happens when a cut after a failed write fails.
//! - With a mirror ([`WalMirror`]: a copy of every batch in an object
//!   store), a batch is acknowledged only after the mirror stored it too;
//!   a refused batch is handled like a failed `fdatasync` (cut back,
//!   sealed, numbers given up), so a copy the mirror may have kept anyway
//!   never shares numbers with a later record.
//! - A record that was not acknowledged (error, cancelled append, crash)
//!   may or may not be found at the next open.
//!
//! # Invariants
//!
//! - Sequence numbers strictly increase, across restarts too: the next one
//!   after open is the largest of the last record's plus one, the newest
//!   file's name and [`WalOptions::min_next_seq`]. Within one process run
//!   acknowledged numbers are dense, except for numbers given up after an
//!   `fdatasync` failure.
//! - Every record returned by `open` or acknowledged by `append` is on disk
//!   until `truncate_through` covers it.

mod committer;
mod error;
mod format;
mod recover;
mod state;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use committer::{Append, Committer, Msg};
use state::{ActiveFile, FileInfo, Shared, State};

pub use error::WalError;
pub use recover::read_records;

/// Called after each successful `fdatasync` of a batch with the sync's
/// latency, the batch's record count and its bytes (framing included).
pub type FsyncCallback = Arc<dyn Fn(Duration, usize, usize) + Send + Sync>;

/// A second durable home for the log's records (an object store), so that
/// another node can replay them when this node's disk is gone.
///
/// [`WalMirror::put`] runs on the committer thread after a batch's local
/// `fdatasync` and before its appenders are answered: a record is
/// acknowledged only once both copies are durable. A failed `put` fails the
/// batch exactly as a failed `fdatasync` does (the file is cut back and
/// sealed, the batch's sequence numbers are given up, so a copy the mirror
/// may have kept never collides with a later record).
pub trait WalMirror: Send + Sync {
    /// Stores `bytes` — the framed records `first_seq..=last_seq`, exactly
    /// as written to the log file — durably. Blocking.
    fn put(&self, first_seq: u64, last_seq: u64, bytes: &[u8]) -> Result<(), String>;
    /// Records up to and including `seq` are safe elsewhere: copies that
    /// hold only such records may go. Blocking; a failure is logged, never
    /// fatal (a copy left behind is skipped by whoever replays it, as its
    /// records are below the flushed watermark).
    fn truncate_through(&self, seq: u64) -> Result<(), String>;
}

/// The records framed in `bytes` (a log file's contents or a mirrored
/// batch), which must be the dense sequence `first_seq, first_seq + 1, …`
/// and whole: any damage is an error naming the offset.
pub fn decode_records(bytes: &[u8], first_seq: u64) -> Result<Vec<Record>, String> {
    let scan = format::scan(bytes, first_seq);
    if let Some(damage) = scan.damage {
        return Err(format!("at byte {}: {}", damage.offset, damage.reason));
    }
    Ok(scan
        .records
        .into_iter()
        .map(|r| Record {
            seq: r.seq,
            payload: bytes[r.payload].to_vec(),
        })
        .collect())
}

/// The largest `min_next_seq` accepted, leaving the sequence space room.
const MAX_START_SEQ: u64 = 1 << 62;

/// How to open a log.
#[derive(Clone)]
pub struct WalOptions {
    /// The log directory, created if missing.
    pub dir: PathBuf,
    /// Group commit window: after the first pending record arrives, the
    /// committer collects more records for at most this long (or until
    /// `max_batch_bytes`), writes them all, fdatasyncs once, then
    /// acknowledges all of them. Zero = commit as soon as possible (still
    /// grouping whatever queued up during the previous fsync). Default 5 ms.
    pub fsync_interval: Duration,
    /// A batch is committed as soon as its payloads reach this many bytes
    /// (one record larger than this is committed alone). Default 8 MiB.
    pub max_batch_bytes: usize,
    /// A file that reaches this size is sealed and the next batch goes to a
    /// new file. Default 64 MiB.
    pub segment_bytes: u64,
    /// Larger payloads are refused with [`WalError::TooLarge`]. At most
    /// `u32::MAX`. Default 64 MiB.
    pub max_record_bytes: usize,
    /// The next sequence number handed out is at least this value, even if
    /// the directory was emptied. Pass one more than the highest sequence
    /// number known to be flushed elsewhere, so numbers never go back and
    /// a new record never shares a number with a flushed one. Default 0.
    pub min_next_seq: u64,
    /// Called after each fsync with (latency, records, bytes) — for metrics.
    /// Runs on the committer thread: keep it quick.
    pub on_fsync: Option<FsyncCallback>,
    /// A second durable copy of every batch, made before it is
    /// acknowledged (see [`WalMirror`]). Default none.
    pub mirror: Option<Arc<dyn WalMirror>>,
}

impl WalOptions {
    /// The defaults for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> WalOptions {
        WalOptions {
            dir: dir.into(),
            fsync_interval: Duration::from_millis(5),
            max_batch_bytes: 8 << 20,
            segment_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
            min_next_seq: 0,
            on_fsync: None,
            mirror: None,
        }
    }

    fn validate(&self) -> Result<(), WalError> {
        let invalid = |field, message: &str| {
            Err(WalError::InvalidOption {
                field,
                message: message.to_string(),
            })
        };
        if self.dir.as_os_str().is_empty() {
            return invalid("dir", "must not be empty");
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes", "must be greater than zero");
        }
        if self.segment_bytes == 0 {
            return invalid("segment_bytes", "must be greater than zero");
        }
        if self.max_record_bytes > format::MAX_PAYLOAD_BYTES {
            return invalid("max_record_bytes", "must be at most 4294967295");
        }
        if self.min_next_seq > MAX_START_SEQ {
            return invalid("min_next_seq", "must be at most 2^62");
        }
        Ok(())
    }
}

impl fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalOptions")
            .field("dir", &self.dir)
            .field("fsync_interval", &self.fsync_interval)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("segment_bytes", &self.segment_bytes)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("min_next_seq", &self.min_next_seq)
            .field("on_fsync", &self.on_fsync.as_ref().map(|_| "<callback>"))
            .field("mirror", &self.mirror.as_ref().map(|_| "<mirror>"))
            .finish()
    }
}

/// A record read back at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// A snapshot of the log's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    /// Log files on disk.
    pub files: usize,
    /// Their total durable size.
    pub bytes: u64,
    /// The sequence number the next record will get (unless its batch
    /// fails).
    pub next_seq: u64,
    /// The highest acknowledged sequence number; right after open, one less
    /// than `next_seq`.
    pub durable_seq: u64,
    /// Appends waiting for their record to become durable.
    pub pending: usize,
}

/// An open write-ahead log. Cheap to clone (the clones share one log);
/// `Send + Sync`.
///
/// Dropping the last handle without [`Wal::close`] lets the committer
/// finish what is queued and stop in the background; call `close` to know
/// when that is done (and before opening the directory again).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    sender: Sender<Msg>,
    closing: AtomicBool,
    max_record_bytes: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    /// Opens (creating the directory), reads every file in order and returns
    /// the records found, in sequence order.
    ///
    /// A torn tail — an incomplete or checksum-failing last record of the
    /// last file — is cut off with ftruncate + fsync and logged with a
    /// warning. A bad record followed by good ones (corruption in the
    /// middle), or a bad record in a file that is not the last, is
    /// [`WalError::Corrupt`]: data is never dropped silently. Every record
    /// returned is durable.
    ///
    /// Fails with [`WalError::Locked`] when another open log uses the
    /// directory. Does blocking file I/O.
    pub fn open(options: WalOptions) -> Result<(Wal, Vec<Record>), WalError> {
        options.validate()?;
        let dir = options.dir.clone();
        create_dir(&dir)?;
        let lock_file = lock_dir(&dir)?;
        let recovered = recover::recover(&dir)?;
        state::sync_dir(&dir)?;

        let mut files = recovered.files;
        let last_record = files.iter().rev().find_map(|f| f.last_seq);
        let next_seq = [
            last_record.map_or(0, |seq| seq.saturating_add(1)),
            files.last().map_or(0, |f| f.first_seq),
            options.min_next_seq,
            1,
        ]
        .into_iter()
        .max()
        .unwrap_or(1);
        if next_seq > u64::MAX / 2 {
            let file = files.last().map_or_else(|| dir.clone(), |f| f.path.clone());
            return Err(WalError::Corrupt {
                file,
                offset: 0,
                reason: format!("sequence number {next_seq} leaves no room for more records"),
            });
        }

        // Continue the newest file only when its next record is `next_seq`
        // (numbers are dense within a file) and it has room.
        let continues = files.last().is_some_and(|f| {
            f.last_seq.map_or(f.first_seq, |seq| seq + 1) == next_seq
                && f.len < options.segment_bytes
        });
        let active = match files.pop() {
            Some(info) if continues => Some(open_active(info, &dir)?),
            Some(info) => {
                files.push(info);
                None
            }
            None => None,
        };
        let state = State {
            active,
            sealed: files,
            next_seq,
            shut: false,
        };
        let shared = Arc::new(Shared::new(
            dir.clone(),
            options.segment_bytes,
            options.on_fsync.clone(),
            options.mirror.clone(),
            state,
            lock_file,
        ));
        {
            // Start the new file now if possible, so the newest file's name
            // carries `next_seq`; if that fails the first batch retries.
            let mut state = shared.lock_state();
            if state.active.is_none() {
                match shared.create_file(next_seq) {
                    Ok(file) => state.active = Some(file),
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot create a write-ahead log file yet")
                    }
                }
                shared.publish(&state);
            }
        }

        let (sender, rx) = mpsc::channel();
        let committer = Committer {
            shared: shared.clone(),
            rx,
            interval: options.fsync_interval,
            max_batch_bytes: options.max_batch_bytes,
        };
        let thread = std::thread::Builder::new()
            .name("vega-wal-commit".into())
            .spawn(move || committer.run())
            .map_err(|e| WalError::io("start the committer thread for", &dir, &dir, e))?;
        tracing::info!(
            dir = %dir.display(),
            records = recovered.records.len(),
            next_seq,
            "write-ahead log opened"
        );
        let wal = Wal {
            inner: Arc::new(Inner {
                shared,
                sender,
                closing: AtomicBool::new(false),
                max_record_bytes: options.max_record_bytes,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((wal, recovered.records))
    }

    /// Appends a record; resolves when it is durable (written and
    /// fdatasync'd) with its sequence number. Numbers strictly increase and
    /// are dense within a process run (except after an fdatasync failure).
    ///
    /// The record is queued when `append` is called, not when the future is
    /// first polled, so records are numbered in call order. On error nothing
    /// was acknowledged and the log stays usable. Dropping the future does
    /// not withdraw the record: it may still become durable.
    pub fn append(
        &self,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<u64, WalError>> + Send + 'static {
        let queued = self.enqueue(payload);
        async move {
            let (reply, _pending) = queued?;
            reply.await.unwrap_or(Err(WalError::Closed))
        }
    }

    fn enqueue(&self, payload: Vec<u8>) -> Result<(Reply, PendingGuard), WalError> {
        let inner = &*self.inner;
        if payload.len() > inner.max_record_bytes {
            return Err(WalError::TooLarge {
                bytes: payload.len(),
                max: inner.max_record_bytes,
            });
        }
        if inner.closing.load(Ordering::Acquire) {
            return Err(WalError::Closed);
        }
        let (reply, receiver) = oneshot::channel();
        let pending = PendingGuard::new(inner.shared.clone());
        inner
            .sender
            .send(Msg::Append(Append { payload, reply }))
            .map_err(|_| WalError::Closed)?;
        Ok((receiver, pending))
    }

    /// Deletes the sealed files all of whose records have `seq` or a lower
    /// sequence number (the caller flushed them elsewhere). When the active
    /// file holds only such records it is sealed first (a new, empty file
    /// takes over), so it can go too. Never deletes the newest file. Returns
    /// the number of files removed.
    ///
    /// Does blocking file I/O and waits for a commit in progress.
    pub fn truncate_through(&self, seq: u64) -> Result<usize, WalError> {
        let shared = &*self.inner.shared;
        let mut state = shared.lock_state();
        if state.shut {
            return Err(WalError::Closed);
        }
        let rotate = match &state.active {
            Some(active) => active.info.last_seq.is_some_and(|last| last <= seq),
            None => true,
        };
        if rotate {
            let next = shared.create_file(state.next_seq)?;
            if let Some(old) = state.active.replace(next) {
                state.sealed.push(old.info);
            }
            shared.publish(&state);
        }

        let mut removed = 0;
        let mut result = Ok(());
        let mut kept = Vec::with_capacity(state.sealed.len());
        for file in std::mem::take(&mut state.sealed) {
            let covered = file.last_seq.is_none_or(|last| last <= seq);
            if !covered || result.is_err() {
                kept.push(file);
                continue;
            }
            match fs::remove_file(&file.path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => removed += 1,
                Err(e) => {
                    result = Err(shared.io_error("remove", &file.path, e));
                    kept.push(file);
                }
            }
        }
        state.sealed = kept;
        shared.publish(&state);
        drop(state);
        if removed > 0 {
            tracing::debug!(dir = %shared.dir.display(), through = seq, files = removed,
                "truncated the write-ahead log");
            state::sync_dir(&shared.dir)?;
        }
        if let Some(mirror) = &shared.mirror {
            if let Err(message) = mirror.truncate_through(seq) {
                tracing::warn!(through = seq, error = %message,
                    "removing mirrored write-ahead log records failed; they are removed with a later truncation");
            }
        }
        result.map(|()| removed)
    }

    /// The current counters. Never waits for a commit.
    pub fn stats(&self) -> WalStats {
        let c = &self.inner.shared.counters;
        WalStats {
            files: c.files.load(Ordering::Acquire),
            bytes: c.bytes.load(Ordering::Acquire),
            next_seq: c.next_seq.load(Ordering::Acquire),
            durable_seq: c.durable_seq.load(Ordering::Acquire),
            pending: c.pending.load(Ordering::Acquire),
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Commits whatever is pending, stops the committer thread, waits for it
    /// and releases the directory. Later appends fail with
    /// [`WalError::Closed`]. Returns the error of the last commit, if it
    /// failed (its appenders got the same error). Closing twice is fine.
    pub async fn close(&self) -> Result<(), WalError> {
        let inner = &*self.inner;
        inner.closing.store(true, Ordering::Release);
        let (reply, receiver) = oneshot::channel();
        let result = match inner.sender.send(Msg::Close(reply)) {
            Ok(()) => receiver.await.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let thread = inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The committer has answered, so it is returning: this join is short.
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the write-ahead log committer thread panicked");
            }
        }
        result
    }

    /// The injected I/O failures of this log.
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &state::Faults {
        &self.inner.shared.faults
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

type Reply = oneshot::Receiver<Result<u64, WalError>>;

/// Counts an append as pending until its future completes or is dropped.
struct PendingGuard(Arc<Shared>);

impl PendingGuard {
    fn new(shared: Arc<Shared>) -> PendingGuard {
        shared.counters.pending.fetch_add(1, Ordering::AcqRel);
        PendingGuard(shared)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.counters.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Creates the log directory if missing, making its entry durable.
fn create_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, dir, e))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    state::sync_dir(parent)
}

/// Takes the directory's exclusive lock (`flock` on `wal.lock`).
fn lock_dir(dir: &Path) -> Result<fs::File, WalError> {
    let path = dir.join(format::LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WalError::io("open", &path, dir, e))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for
    // the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(WalError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        return Err(WalError::io("lock", &path, dir, e));
    }
    Ok(file)
}

/// Opens a file found at open as the active file.
fn open_active(info: FileInfo, dir: &Path) -> Result<ActiveFile, WalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
        .map_err(|e| WalError::io("open", &info.path, dir, e))?;
    Ok(ActiveFile { file, info })
}

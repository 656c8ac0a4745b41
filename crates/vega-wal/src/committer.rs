//! The committer thread: collects appends into batches, writes each batch
//! with one write and one fdatasync, and only then acknowledges it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::format;
use crate::state::{ActiveFile, Shared, State};
use crate::WalError;

/// A message from the handles to the committer.
pub(crate) enum Msg {
    Append(Append),
    /// Commit what is pending, stop, and report the last commit's result.
    Close(oneshot::Sender<Result<(), WalError>>),
}

/// One record waiting to be made durable.
pub(crate) struct Append {
    pub(crate) payload: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<u64, WalError>>,
}

/// A batch buffer above this capacity is released after use, so one huge
/// batch does not pin its memory for the life of the log.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

pub(crate) struct Committer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) interval: Duration,
    pub(crate) max_batch_bytes: usize,
}

impl Committer {
    /// The thread's body: runs until a `Close` arrives or every handle is
    /// gone, committing what was received before either.
    pub(crate) fn run(self) {
        let mut buf = Vec::new();
        loop {
            let (batch, stop) = self.collect();
            let result = if batch.is_empty() {
                Ok(())
            } else {
                self.commit(batch, &mut buf)
            };
            if buf.capacity() > KEEP_BUFFER_BYTES {
                buf = Vec::new();
            }
            match stop {
                Stop::No => {}
                Stop::Close(reply) => {
                    self.shut_down();
                    let _ = reply.send(result);
                    return;
                }
                Stop::Disconnected => {
                    self.shut_down();
                    return;
                }
            }
        }
    }

    /// Waits for the first message, then gathers more for at most the
    /// group-commit window or until the batch reaches `max_batch_bytes`.
    /// With a zero window it takes only what is already queued.
    fn collect(&self) -> (Vec<Append>, Stop) {
        let mut batch = Vec::new();
        let first = match self.rx.recv() {
            Ok(msg) => msg,
            Err(_) => return (batch, Stop::Disconnected),
        };
        let mut bytes = 0usize;
        match first {
            Msg::Append(append) => {
                bytes += append.payload.len() + format::HEADER_BYTES;
                batch.push(append);
            }
            Msg::Close(reply) => return (batch, Stop::Close(reply)),
        }
        let deadline = Instant::now() + self.interval;
        while bytes < self.max_batch_bytes {
            let msg = if self.interval.is_zero() {
                match self.rx.try_recv() {
                    Ok(msg) => msg,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return (batch, Stop::Disconnected),
                }
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.rx.recv_timeout(left) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return (batch, Stop::Disconnected),
                }
            };
            match msg {
                Msg::Append(append) => {
                    bytes += append.payload.len() + format::HEADER_BYTES;
                    batch.push(append);
                }
                Msg::Close(reply) => return (batch, Stop::Close(reply)),
            }
        }
        (batch, Stop::No)
    }

    /// Makes the batch durable and answers every append in it: all with
    /// their sequence numbers, or all with the same error.
    fn commit(&self, batch: Vec<Append>, buf: &mut Vec<u8>) -> Result<(), WalError> {
        match self.write_batch(&batch, buf) {
            Ok(first_seq) => {
                for (i, append) in batch.into_iter().enumerate() {
                    // A dropped receiver is an appender that stopped waiting;
                    // its record is durable all the same.
                    let _ = append.reply.send(Ok(first_seq + i as u64));
                }
                Ok(())
            }
            Err(error) => {
                for append in batch {
                    let _ = append.reply.send(Err(error.clone()));
                }
                Err(error)
            }
        }
    }

    /// Writes and syncs the batch; returns the first sequence number.
    ///
    /// On a failed write the file is cut back to its durable length and
    /// synced; when that works nothing of the batch is on disk and its
    /// sequence numbers are used again by the next batch. When the cut or an
    /// fdatasync fails, the file's page cache can no longer be trusted: the
    /// file is cut back as far as possible and sealed, the batch's sequence
    /// numbers are skipped, and the next batch starts a new file.
    fn write_batch(&self, batch: &[Append], buf: &mut Vec<u8>) -> Result<u64, WalError> {
        let shared = &*self.shared;
        let mut state = shared.lock_state();
        if state.shut {
            return Err(WalError::Closed);
        }
        shared.retry_cuts(&mut state);
        let mut active = self.take_active(&mut state)?;
        // From here on, every path puts `active` back (as active or sealed).

        let first_seq = state.next_seq;
        let count = batch.len() as u64;
        let last_seq = first_seq + count - 1;
        buf.clear();
        for (i, append) in batch.iter().enumerate() {
            format::encode(buf, first_seq + i as u64, &append.payload);
        }
        let path = active.info.path.clone();

        if let Err(e) = shared.write_at(&active.file, buf, active.info.len) {
            let error = shared.io_error("write", &path, e);
            tracing::warn!(file = %path.display(), records = batch.len(), error = %error,
                "write-ahead log write failed; nothing of the batch was acknowledged");
            match self.cut_back(&active) {
                Ok(()) => state.active = Some(active),
                Err(cut_error) => {
                    tracing::error!(file = %path.display(), error = %cut_error,
                        "cannot cut the write-ahead log file back after a failed write; sealing it");
                    state.next_seq = last_seq + 1;
                    active.info.needs_cut = true;
                    state.sealed.push(active.info);
                }
            }
            shared.publish(&state);
            return Err(error);
        }

        let started = Instant::now();
        if let Err(e) = shared.sync(&active.file) {
            let error = shared.io_error("fdatasync", &path, e);
            tracing::error!(file = %path.display(), records = batch.len(), error = %error,
                "write-ahead log fdatasync failed; sealing the file and continuing in a new one");
            if let Err(cut_error) = self.cut_back(&active) {
                tracing::error!(file = %path.display(), error = %cut_error,
                    "cannot cut the write-ahead log file back after a failed fdatasync");
                active.info.needs_cut = true;
            }
            state.next_seq = last_seq + 1;
            state.sealed.push(active.info);
            shared.publish(&state);
            return Err(error);
        }
        let latency = started.elapsed();

        // The second copy, before anything is acknowledged. A batch the
        // mirror refused is handled like one whose fdatasync failed: cut
        // back, sealed, its numbers given up (a copy the mirror may have
        // kept despite the error then never collides with a later record).
        if let Some(mirror) = &shared.mirror {
            let stored = catch_unwind(AssertUnwindSafe(|| mirror.put(first_seq, last_seq, buf)))
                .unwrap_or_else(|_| Err("the mirror panicked".into()));
            if let Err(message) = stored {
                let error = WalError::Mirror {
                    first_seq,
                    last_seq,
                    message,
                };
                tracing::warn!(file = %path.display(), records = batch.len(), error = %error,
                    "write-ahead log mirror failed; nothing of the batch was acknowledged");
                if let Err(cut_error) = self.cut_back(&active) {
                    tracing::error!(file = %path.display(), error = %cut_error,
                        "cannot cut the write-ahead log file back after a failed mirror write");
                    active.info.needs_cut = true;
                }
                state.next_seq = last_seq + 1;
                state.sealed.push(active.info);
                shared.publish(&state);
                return Err(error);
            }
        }

        active.info.len += buf.len() as u64;
        active.info.last_seq = Some(last_seq);
        state.next_seq = last_seq + 1;
        shared
            .counters
            .durable_seq
            .store(last_seq, std::sync::atomic::Ordering::Release);
        if active.info.len >= shared.segment_bytes {
            match shared.create_file(state.next_seq) {
                Ok(next) => state.sealed.push(std::mem::replace(&mut active, next).info),
                // The full file stays active; rotation is tried again before
                // the next batch.
                Err(error) => tracing::warn!(error = %error, "cannot rotate the write-ahead log"),
            }
        }
        state.active = Some(active);
        shared.publish(&state);
        drop(state);

        if let Some(on_fsync) = &shared.on_fsync {
            let call = AssertUnwindSafe(|| on_fsync(latency, batch.len(), buf.len()));
            if catch_unwind(call).is_err() {
                tracing::error!("the write-ahead log fsync callback panicked");
            }
        }
        Ok(first_seq)
    }

    /// Takes the file to write the next batch to out of the state: the
    /// active file, a new one when there is none, or a new one when the
    /// active file is past `segment_bytes` (if that creation fails, the old
    /// file is used once more).
    fn take_active(&self, state: &mut State) -> Result<ActiveFile, WalError> {
        let shared = &*self.shared;
        match state.active.take() {
            None => shared.create_file(state.next_seq),
            Some(active) if active.info.len >= shared.segment_bytes => {
                match shared.create_file(state.next_seq) {
                    Ok(next) => {
                        state.sealed.push(active.info);
                        Ok(next)
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot rotate the write-ahead log");
                        Ok(active)
                    }
                }
            }
            Some(active) => Ok(active),
        }
    }

    /// Cuts the file back to its durable length and syncs the cut.
    fn cut_back(&self, active: &ActiveFile) -> Result<(), WalError> {
        let shared = &*self.shared;
        let path = &active.info.path;
        shared
            .truncate(&active.file, active.info.len)
            .map_err(|e| shared.io_error("truncate", path, e))?;
        shared
            .sync(&active.file)
            .map_err(|e| shared.io_error("fdatasync", path, e))
    }

    /// Marks the log closed, closes the active file, answers appends that
    /// raced with the close, and releases the directory lock.
    fn shut_down(&self) {
        {
            let mut state = self.shared.lock_state();
            state.shut = true;
            self.shared.retry_cuts(&mut state);
            if let Some(active) = state.active.take() {
                state.sealed.push(active.info);
            }
            self.shared.publish(&state);
        }
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Append(append) => {
                    let _ = append.reply.send(Err(WalError::Closed));
                }
                Msg::Close(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        self.shared.release_lock();
        tracing::debug!(dir = %self.shared.dir.display(), "write-ahead log closed");
    }
}

/// Why collecting stopped, besides a full batch or an expired window.
enum Stop {
    No,
    Close(oneshot::Sender<Result<(), WalError>>),
    Disconnected,
}

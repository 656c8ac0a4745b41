//! A progress counter a CLI or the server can poll while a backup, a
//! verification or a restore runs: bytes and objects done out of a total.
//! Shared as `Arc<Progress>`; all fields are atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes and objects done so far, out of a total that may grow while the
/// work runs (a writer learns each file's size when it adds the file,
/// unless told the total up front).
#[derive(Debug, Default)]
pub struct Progress {
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    objects_total: AtomicU64,
    objects_done: AtomicU64,
}

impl Progress {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes to process in all, as far as known.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }

    /// Bytes processed (uploaded, found already stored, checked or
    /// restored).
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Objects to process in all, as far as known.
    pub fn objects_total(&self) -> u64 {
        self.objects_total.load(Ordering::Relaxed)
    }

    /// Objects completely processed.
    pub fn objects_done(&self) -> u64 {
        self.objects_done.load(Ordering::Relaxed)
    }

    /// `bytes_done / bytes_total` in `0.0..=1.0` (1.0 when nothing is to do).
    pub fn fraction(&self) -> f64 {
        let total = self.bytes_total();
        if total == 0 {
            1.0
        } else {
            (self.bytes_done() as f64 / total as f64).min(1.0)
        }
    }

    /// Adds to the totals (a caller restoring a manifest's objects one by
    /// one announces their sum first).
    pub fn add_total(&self, bytes: u64, objects: u64) {
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.objects_total.fetch_add(objects, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_object(&self) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
    }
}

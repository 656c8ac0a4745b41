//! Reading the logs of the servers the testkit starts, for failure
//! messages.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The last 16 KiB of the log at `path` (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

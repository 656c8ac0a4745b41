//! A real full disk: a small tmpfs filled up (needs the right to mount; the
//! test is skipped with a notice without it).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::*;

/// A tmpfs mounted for the test, unmounted on drop (also when the test
/// fails).
struct TmpfsMount {
    target: CString,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (mount option syntax) on `target`; `None`
    /// when the process may not mount.
    fn mount(target: &Path, size: &str) -> Option<TmpfsMount> {
        let c = |s: &[u8]| CString::new(s).expect("no NUL");
        let target = c(target.as_os_str().as_bytes());
        let data = c(format!("size={size}").as_bytes());
        let (source, fstype) = (c(b"tmpfs"), c(b"tmpfs"));
        // SAFETY: every pointer is a NUL-terminated string that outlives the
        // call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc == 0 {
            return Some(TmpfsMount { target });
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EPERM) {
            return None;
        }
        panic!("cannot mount a tmpfs: {error}");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // SAFETY: `target` is a NUL-terminated string. A lazy unmount works
        // even if a failed test left files open.
        let rc = unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!(
                "cannot unmount the test tmpfs: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = File::create(path).unwrap();
    let chunk = vec![0xAB; 64 << 10];
    loop {
        match file.write(&chunk) {
            Ok(0) => panic!("write returned 0"),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
}

#[tokio::test]
async fn a_full_disk_fails_appends_until_space_returns() {
    let root = tempfile::tempdir().unwrap();
    let Some(_mount) = TmpfsMount::mount(root.path(), "1m") else {
        eprintln!("skipping the disk-full test: not allowed to mount a tmpfs (EPERM)");
        return;
    };
    let dir: PathBuf = root.path().join("wal");
    let (wal, _) = open(options(&dir));
    let before: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
    append_all(&wal, &before).await;
    let file = log_files(&dir)[0].clone();
    let durable_len = file_len(&file);

    let filler = root.path().join("filler");
    fill(&filler);
    // Larger than the slack in the log file's last page.
    let big = vec![0xEE; 64 << 10];
    for _ in 0..2 {
        let error = wal.append(big.clone()).await.unwrap_err();
        assert!(error.is_disk_full(), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains("No space left"), "{text}");
        // Cut back: nothing of the failed batch precedes later records.
        assert_eq!(file_len(&file), durable_len);
        let stats = wal.stats();
        assert_eq!((stats.durable_seq, stats.next_seq), (10, 11));
    }
    wal.close().await.unwrap();

    // Everything acknowledged survives a reopen on the full disk.
    let (wal, found) = open(options(&dir));
    assert_eq!(found, records(1, &before));
    assert!(wal.append(big.clone()).await.unwrap_err().is_disk_full());

    // Space returns: appends succeed again, with no gap in the numbers.
    fs::remove_file(&filler).unwrap();
    assert_eq!(wal.append(big.clone()).await.unwrap(), 11);
    assert_eq!(wal.append(b"small".to_vec()).await.unwrap(), 12);
    wal.close().await.unwrap();

    let (wal, found) = open(options(&dir));
    let mut expected = records(1, &before);
    expected.push(Record {
        seq: 11,
        payload: big,
    });
    expected.push(Record {
        seq: 12,
        payload: b"small".to_vec(),
    });
    assert_eq!(found, expected);
    wal.close().await.unwrap();
}

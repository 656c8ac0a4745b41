//! The segment store: a root directory of Parquet segments, with the checks
//! that a manifest matches the files, orphan collection and disk readiness.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
use vega_core::{Id, Manifest};

use crate::error::StorageError;
use crate::options::WriteOptions;
use crate::stage::StagedVersion;

/// Suffix of files still being written; never referenced by a manifest.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Distinguishes probe files of concurrent readiness checks in one process.
static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Parquet segments under one root directory.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    root: PathBuf,
    /// Directories of versions being written by any writer of this process
    /// (a flush of streamed rows, say): never swept as orphans while held.
    held: Arc<Mutex<HashMap<String, usize>>>,
    /// Unreferenced files younger than this are never swept: on a root
    /// shared by several nodes, another node may be writing them.
    orphan_grace: Duration,
    /// The object store holding every segment too, if any.
    pub(crate) remote: Option<crate::remote::RemoteSegments>,
}

/// Keeps a staging directory out of [`SegmentStore::remove_orphans`] until
/// dropped (after the version that names its files is committed, or the
/// files are discarded).
#[derive(Debug)]
pub struct HoldGuard {
    held: Arc<Mutex<HashMap<String, usize>>>,
    prefix: String,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.prefix) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.prefix);
            }
        }
    }
}

/// What [`SegmentStore::remove_orphans`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Files deleted (unreferenced segments and leftover `*.tmp` files).
    pub files_removed: u64,
    /// Total size of the deleted files.
    pub bytes_removed: u64,
    /// Directories deleted because they had become empty.
    pub dirs_removed: u64,
}

/// Space on the file system holding the root, and the share used by segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Space available to unprivileged writers.
    pub available_bytes: u64,
    /// Bytes of all files under the root.
    pub used_by_root_bytes: u64,
}

impl SegmentStore {
    /// Opens the store at `root`, creating the directory if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StorageError::io("create directory", &root, e))?;
        Ok(Self {
            root,
            held: Arc::default(),
            orphan_grace: Duration::ZERO,
            remote: None,
        })
    }

    /// Opens a root that other nodes write too: unreferenced files younger
    /// than `grace` (at least the longest a writer takes between creating
    /// a file and committing the version that names it) are never swept.
    pub fn open_shared(root: impl Into<PathBuf>, grace: Duration) -> Result<Self, StorageError> {
        let mut store = Self::open(root)?;
        store.orphan_grace = grace;
        Ok(store)
    }

    /// Keeps `prefix` (`<asset_id>/<staging_id>`) from being swept as an
    /// orphan while the guard lives.
    pub fn hold(&self, prefix: &str) -> HoldGuard {
        let prefix = prefix.trim_end_matches('/').to_string();
        *self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(prefix.clone())
            .or_default() += 1;
        HoldGuard {
            held: self.held.clone(),
            prefix,
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Turns a manifest path (relative, `/`-separated) into a path on disk.
    ///
    /// Refuses empty paths, absolute paths and any `.`, `..` or empty
    /// component, so a manifest can never name a file outside the root.
    pub fn absolute(&self, relative: &str) -> Result<PathBuf, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidPath {
            path: relative.to_string(),
            reason: reason.to_string(),
        };
        if relative.is_empty() {
            return Err(invalid("is empty"));
        }
        if relative.starts_with('/') || Path::new(relative).is_absolute() {
            return Err(invalid("must be relative to the storage root"));
        }
        if relative.contains('\0') || relative.contains('\\') {
            return Err(invalid("must not contain NUL or '\\'"));
        }
        let mut path = self.root.clone();
        for part in relative.split('/') {
            match part {
                "" => return Err(invalid("must not contain empty components")),
                "." | ".." => return Err(invalid("must not contain '.' or '..' components")),
                _ => path.push(part),
            }
        }
        Ok(path)
    }

    /// Starts writing a new version of `asset_id` into
    /// `<asset_id>/<staging_id>/`. The staging directory must not already
    /// hold files.
    pub fn stage(
        &self,
        asset_id: &Id,
        staging_id: &str,
        schema: SchemaRef,
        options: WriteOptions,
    ) -> Result<StagedVersion, StorageError> {
        if options.rows_per_segment == 0 {
            return Err(StorageError::InvalidOption {
                field: "rows_per_segment",
                message: "must be at least 1".to_string(),
            });
        }
        check_dir_name("asset id", asset_id.as_str())?;
        check_dir_name("staging id", staging_id)?;
        let relative_dir = format!("{}/{}", asset_id.as_str(), staging_id);
        let dir = self.absolute(&relative_dir)?;
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
        let mut entries =
            fs::read_dir(&dir).map_err(|e| StorageError::io("list directory", &dir, e))?;
        if entries.next().is_some() {
            return Err(StorageError::StagingExists { path: relative_dir });
        }
        Ok(StagedVersion::new(
            self.root.clone(),
            relative_dir,
            dir,
            schema,
            options,
        ))
    }

    /// Checks that every segment of `manifest` exists with the recorded
    /// size, has a readable Parquet footer, holds the recorded number of rows
    /// and carries the manifest's schema. Does not read the data pages; see
    /// [`SegmentStore::verify_checksums`] for that.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let schema = schema_from_manifest(manifest)?;
        if manifest.segments.is_empty() {
            return Err(StorageError::EmptyManifest);
        }
        for segment in &manifest.segments {
            let path = self.absolute(&segment.path)?;
            let invalid = |problem: String| StorageError::SegmentInvalid {
                path: segment.path.clone(),
                problem,
            };
            let file = open_segment(&path, &segment.path)?;
            let size = file
                .metadata()
                .map_err(|e| StorageError::io("read metadata of", &path, e))?
                .len();
            if size != segment.bytes {
                return Err(invalid(format!(
                    "file is {size} bytes, manifest says {}",
                    segment.bytes
                )));
            }
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| invalid(format!("parquet footer is not readable: {e}")))?;
            let rows = builder.metadata().file_metadata().num_rows();
            if u64::try_from(rows).ok() != Some(segment.rows) {
                return Err(invalid(format!(
                    "file has {rows} rows, manifest says {}",
                    segment.rows
                )));
            }
            if let Some(difference) = schema_difference(&schema, builder.schema()) {
                return Err(invalid(format!(
                    "schema differs from the manifest: {difference}"
                )));
            }
        }
        Ok(())
    }

    /// Hashes every segment of `manifest` and compares with the recorded
    /// sha256; the error names the first file that does not match.
    pub fn verify_checksums(&self, manifest: &Manifest) -> Result<(), StorageError> {
        for segment in &manifest.segments {
            let path = self.absolute(&segment.path)?;
            let file = open_segment(&path, &segment.path)?;
            let (actual, _) = sha256_of(file, &path)?;
            if !actual.eq_ignore_ascii_case(&segment.sha256) {
                return Err(StorageError::ChecksumMismatch {
                    path: segment.path.clone(),
                    expected: segment.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Deletes every file under the root that is not in `referenced`
    /// (relative, `/`-separated paths), except under `keep_prefixes` (the
    /// directories of versions still being written, e.g.
    /// `ast_…/job_…`). Leftover `*.tmp` files outside those prefixes are
    /// deleted even if referenced. Directories left empty are removed,
    /// except the root, kept directories and their ancestors. An empty
    /// prefix keeps everything.
    pub fn remove_orphans(
        &self,
        referenced: &HashSet<String>,
        keep_prefixes: &[String],
    ) -> Result<OrphanReport, StorageError> {
        let held: Vec<String> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let prefixes: Vec<&str> = keep_prefixes
            .iter()
            .chain(held.iter())
            .map(|p| p.trim_end_matches('/'))
            .collect();
        let sweep = Sweep {
            referenced,
            prefixes: &prefixes,
            grace: self.orphan_grace,
        };
        let mut report = OrphanReport::default();
        sweep.dir(&self.root, "", &mut report)?;
        if report.files_removed > 0 || report.dirs_removed > 0 {
            tracing::info!(
                files = report.files_removed,
                bytes = report.bytes_removed,
                dirs = report.dirs_removed,
                "removed orphaned segment files"
            );
        }
        Ok(report)
    }

    /// Writes, fsyncs and removes a small probe file under the root: the
    /// storage part of readiness.
    pub fn check_writable(&self) -> Result<(), StorageError> {
        let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join(format!(".probe-{}-{n}{TMP_SUFFIX}", std::process::id()));
        let result = (|| {
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| StorageError::io("create", &path, e))?;
            file.write_all(b"vega storage probe\n")
                .map_err(|e| StorageError::io("write", &path, e))?;
            file.sync_all()
                .map_err(|e| StorageError::io("fsync", &path, e))
        })();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if result.is_ok() => return Err(StorageError::io("remove", &path, e)),
            Err(_) => {}
        }
        result
    }

    /// Size and free space of the file system holding the root, and the
    /// bytes of all files under the root.
    pub fn disk_usage(&self) -> Result<DiskUsage, StorageError> {
        let (total_bytes, available_bytes) = statvfs(&self.root)?;
        let used_by_root_bytes = bytes_under(&self.root)?;
        Ok(DiskUsage {
            total_bytes,
            available_bytes,
            used_by_root_bytes,
        })
    }
}

/// Reads the Arrow schema stored in a manifest.
pub fn schema_from_manifest(manifest: &Manifest) -> Result<Schema, StorageError> {
    serde_json::from_value(manifest.schema.clone()).map_err(|e| StorageError::ManifestSchema {
        message: e.to_string(),
    })
}

/// Serializes a schema the way manifests store it.
pub(crate) fn schema_to_manifest(schema: &Schema) -> Result<serde_json::Value, StorageError> {
    serde_json::to_value(schema).map_err(|e| StorageError::ManifestSchema {
        message: e.to_string(),
    })
}

/// Describes the first difference between two schemas, or `None` if equal.
pub(crate) fn schema_difference(expected: &Schema, actual: &Schema) -> Option<String> {
    if expected == actual {
        return None;
    }
    let describe = |f: &arrow::datatypes::Field| {
        format!(
            "'{}' {}{}",
            f.name(),
            f.data_type(),
            if f.is_nullable() {
                " (nullable)"
            } else {
                " (not null)"
            }
        )
    };
    for (i, (e, a)) in expected.fields().iter().zip(actual.fields()).enumerate() {
        if e != a {
            let mut text = format!(
                "column {} is {} but expected {}",
                i + 1,
                describe(a),
                describe(e)
            );
            if e.name() == a.name()
                && e.data_type() == a.data_type()
                && e.is_nullable() == a.is_nullable()
            {
                text.push_str(" (field metadata differs)");
            }
            return Some(text);
        }
    }
    let (n_expected, n_actual) = (expected.fields().len(), actual.fields().len());
    if n_expected != n_actual {
        let extra = if n_actual > n_expected {
            format!(
                "unexpected column {}",
                describe(&actual.fields()[n_expected])
            )
        } else {
            format!("missing column {}", describe(&expected.fields()[n_actual]))
        };
        return Some(format!(
            "{n_actual} columns but expected {n_expected}: {extra}"
        ));
    }
    Some("schema metadata differs".to_string())
}

/// Checks one path component we create ourselves (asset id, staging id).
fn check_dir_name(what: &'static str, value: &str) -> Result<(), StorageError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidOption {
            field: what,
            message: format!(
                "'{value}' must be 1-128 characters of a-z, A-Z, 0-9, '_', '-' or '.'"
            ),
        })
    }
}

fn open_segment(path: &Path, relative: &str) -> Result<File, StorageError> {
    File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            StorageError::SegmentMissing {
                path: relative.to_string(),
            }
        } else {
            StorageError::io("open", path, e)
        }
    })
}

/// Lower-case hex sha256 and length of everything `reader` yields.
pub(crate) fn sha256_of(mut reader: impl Read, path: &Path) -> Result<(String, u64), StorageError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), len))
}

/// Makes the entries of a directory (creations, renames) durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<(), StorageError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", path, e))
}

/// One orphan collection pass.
struct Sweep<'a> {
    referenced: &'a HashSet<String>,
    prefixes: &'a [&'a str],
    grace: Duration,
}

impl Sweep<'_> {
    /// Whether `relative` is inside (or is) a kept directory.
    fn is_kept(&self, relative: &str) -> bool {
        self.prefixes.iter().any(|p| {
            p.is_empty()
                || relative == *p
                || (relative.starts_with(p) && relative.as_bytes().get(p.len()) == Some(&b'/'))
        })
    }

    /// Whether `relative` is a directory above a kept directory.
    fn is_ancestor_of_kept(&self, relative: &str) -> bool {
        self.prefixes
            .iter()
            .any(|p| p.starts_with(relative) && p.as_bytes().get(relative.len()) == Some(&b'/'))
    }

    /// Whether a file is within the grace period (another writer's).
    fn is_young(&self, meta: &fs::Metadata) -> bool {
        if self.grace.is_zero() {
            return false;
        }
        match meta.modified().map(|m| m.elapsed()) {
            Ok(Ok(age)) => age < self.grace,
            // Modified "in the future" (clock skew between writers), or no
            // time available: keep it.
            _ => true,
        }
    }

    /// Sweeps `dir` (relative path `relative`, "" for the root). Returns
    /// whether the directory is now empty.
    fn dir(
        &self,
        dir: &Path,
        relative: &str,
        report: &mut OrphanReport,
    ) -> Result<bool, StorageError> {
        let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list directory", dir, e))?;
        let mut empty = true;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list directory", dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                // Not a name Vega writes; it cannot be referenced.
                empty = false;
                tracing::warn!(path = %path.display(), "skipping non-UTF-8 file name in segment root");
                continue;
            };
            let child = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("read metadata of", &path, e)),
            };
            if meta.is_dir() {
                if self.is_kept(&child) {
                    empty = false;
                    continue;
                }
                let now_empty = self.dir(&path, &child, report)?;
                if now_empty && !self.is_ancestor_of_kept(&child) {
                    match fs::remove_dir(&path) {
                        Ok(()) => report.dirs_removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        // Something was created meanwhile: leave it.
                        Err(_) => empty = false,
                    }
                } else {
                    empty = false;
                }
                continue;
            }
            let keep = self.is_kept(&child)
                || (!name.ends_with(TMP_SUFFIX) && self.referenced.contains(&child))
                || self.is_young(&meta);
            if keep {
                empty = false;
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.files_removed += 1;
                    report.bytes_removed += meta.len();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove", &path, e)),
            }
        }
        Ok(empty)
    }
}

/// Total bytes of regular files under `dir` (symlinks are not followed).
fn bytes_under(dir: &Path) -> Result<u64, StorageError> {
    let mut total = 0u64;
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list directory", dir, e))?;
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io("read metadata of", &path, e)),
        };
        if meta.is_dir() {
            total += bytes_under(&path)?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Total and available bytes of the file system holding `path`.
fn statvfs(path: &Path) -> Result<(u64, u64), StorageError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StorageError::io(
            "query file system of",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"),
        )
    })?;
    // SAFETY: `statvfs` is plain data, so all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid,
    // writable `statvfs` that outlives the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(StorageError::io(
            "query file system of",
            path,
            io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // field widths differ between platforms
    let fragment = stat.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    let (blocks, available) = (stat.f_blocks as u64, stat.f_bavail as u64);
    Ok((
        blocks.saturating_mul(fragment),
        available.saturating_mul(fragment),
    ))
}

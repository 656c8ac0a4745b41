//! Checking a backup: every blob it names (files and catalog snapshot) is
//! stored, has the right size, and its bytes — read back and hashed — match
//! the sha256 in the manifest. [`VerifyReport`] lists each problem with the
//! object's path; it does not stop at the first.

use std::collections::HashMap;

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use vega_core::Id;

use crate::error::BackupError;
use crate::manifest::ObjectRef;
use crate::progress::Progress;
use crate::repo::{BackupRepository, BlobState};

/// The path reported for the catalog snapshot.
pub const CATALOG_PATH: &str = "catalog";

/// What is wrong with one object of a backup (`expected` is the
/// manifest's value, `actual` the stored one).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// The blob is not in the repository.
    Missing,
    /// The blob has another size than the manifest says.
    SizeMismatch { expected: u64, actual: u64 },
    /// The blob's bytes hash to another sha256 than the manifest says.
    ChecksumMismatch { expected: String, actual: String },
}

/// One object of a backup that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object's path ([`crate::BackupObject::path`]), or
    /// [`CATALOG_PATH`] for the catalog snapshot.
    pub path: String,
    /// Whether this is the catalog snapshot.
    pub catalog: bool,
    /// The sha256 the manifest names.
    pub sha256: String,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ProblemKind::Missing => write!(f, "'{}': missing (sha256 {})", self.path, self.sha256),
            ProblemKind::SizeMismatch { expected, actual } => write!(
                f,
                "'{}': size mismatch: expected {expected} bytes, stored {actual}",
                self.path
            ),
            ProblemKind::ChecksumMismatch { expected, actual } => write!(
                f,
                "'{}': checksum mismatch: expected sha256 {expected}, stored bytes hash to {actual}",
                self.path
            ),
        }
    }
}

/// The result of [`BackupRepository::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The backup checked.
    pub id: Id,
    /// Objects of the manifest checked (files plus catalog snapshot).
    pub objects_checked: u64,
    /// Bytes read back and hashed.
    pub bytes_checked: u64,
    /// Every problem found, in manifest order (catalog first).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether every object is stored intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl BackupRepository {
    /// Checks every object of backup `id` (see the module docs).
    /// [`BackupError::NotFound`] for an unknown id,
    /// [`BackupError::CorruptManifest`] for a manifest that does not parse;
    /// damaged objects are reported, not returned as errors.
    pub async fn verify(&self, id: &str) -> Result<VerifyReport, BackupError> {
        self.verify_with_progress(id, &Progress::new()).await
    }

    /// [`BackupRepository::verify`], counting into `progress`.
    pub async fn verify_with_progress(
        &self,
        id: &str,
        progress: &Progress,
    ) -> Result<VerifyReport, BackupError> {
        let manifest = self.get(id).await?;
        let mut entries: Vec<(String, bool, ObjectRef)> = Vec::new();
        if let Some(catalog) = &manifest.catalog {
            entries.push((CATALOG_PATH.to_string(), true, catalog.clone()));
        }
        for object in &manifest.objects {
            entries.push((object.path.clone(), false, object.object_ref()));
        }
        progress.add_total(
            entries.iter().map(|(_, _, r)| r.bytes).sum(),
            entries.len() as u64,
        );

        let mut report = VerifyReport {
            id: manifest.id.clone(),
            objects_checked: 0,
            bytes_checked: 0,
            problems: Vec::new(),
        };
        // A blob shared by several paths is read once.
        let mut outcomes: HashMap<ObjectRef, Option<ProblemKind>> = HashMap::new();
        for (path, catalog, blob) in entries {
            let outcome = match outcomes.get(&blob) {
                Some(known) => {
                    progress.add_bytes(blob.bytes);
                    known.clone()
                }
                None => {
                    let (outcome, read) = self.check_blob(&blob, progress).await?;
                    report.bytes_checked += read;
                    outcomes.insert(blob.clone(), outcome.clone());
                    outcome
                }
            };
            report.objects_checked += 1;
            progress.add_object();
            if let Some(kind) = outcome {
                report.problems.push(Problem {
                    path,
                    catalog,
                    sha256: blob.sha256.clone(),
                    kind,
                });
            }
        }
        if !report.is_ok() {
            tracing::warn!(
                backup_id = %report.id,
                problems = report.problems.len(),
                "backup failed verification"
            );
        }
        Ok(report)
    }

    /// Checks one blob; returns its problem, if any, and the bytes read.
    async fn check_blob(
        &self,
        blob: &ObjectRef,
        progress: &Progress,
    ) -> Result<(Option<ProblemKind>, u64), BackupError> {
        match self.blob_state(blob).await? {
            BlobState::Missing => return Ok((Some(ProblemKind::Missing), 0)),
            BlobState::WrongSize(actual) => {
                return Ok((
                    Some(ProblemKind::SizeMismatch {
                        expected: blob.bytes,
                        actual,
                    }),
                    0,
                ))
            }
            BlobState::Present => {}
        }
        let key = self.blob_key(&blob.sha256);
        let result = match self.store.get(&self.blob_path(&blob.sha256)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok((Some(ProblemKind::Missing), 0))
            }
            Err(e) => return Err(BackupError::store("reading", &key, e)),
        };
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BackupError::store("reading", &key, e))?;
            hasher.update(&chunk);
            read += chunk.len() as u64;
            progress.add_bytes(chunk.len() as u64);
        }
        let actual = hex::encode(hasher.finalize());
        let problem = if read != blob.bytes {
            Some(ProblemKind::SizeMismatch {
                expected: blob.bytes,
                actual: read,
            })
        } else if actual != blob.sha256 {
            Some(ProblemKind::ChecksumMismatch {
                expected: blob.sha256.clone(),
                actual,
            })
        } else {
            None
        };
        Ok((problem, read))
    }
}

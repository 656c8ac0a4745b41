//! The backup repository against a local directory and against a real
//! S3-compatible server ([`TestS3`]): every scenario runs on both.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use vega_backup::{BackupError, BackupRepository, ProblemKind, RetentionPolicy, S3Options, Scope};
use vega_core::{Classify, ErrorClass, Id, IdKind, ManualClock};
use vega_testkit::s3::TestS3;

/// A repository plus raw access to what backs it, to damage it.
struct Fixture {
    repo: BackupRepository,
    /// The repository's directory (local) or `None` (S3).
    dir: Option<PathBuf>,
    /// The bucket, without the repository prefix (S3).
    raw: Option<Arc<dyn ObjectStore>>,
    /// Source files and restore destinations.
    work: tempfile::TempDir,
    _repo_dir: Option<tempfile::TempDir>,
    _s3: Option<TestS3>,
}

impl Fixture {
    fn local() -> Self {
        let repo_dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: `local` creates it.
        let dir = repo_dir.path().join("backups-repo");
        Fixture {
            repo: BackupRepository::local(&dir).unwrap(),
            dir: Some(dir),
            raw: None,
            work: tempfile::tempdir().unwrap(),
            _repo_dir: Some(repo_dir),
            _s3: None,
        }
    }

    /// Must run outside an async runtime (the server is started blocking).
    fn s3() -> Self {
        let s3 = TestS3::start();
        let options = S3Options {
            bucket: s3.bucket().to_string(),
            prefix: "vega/backups".into(),
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            access_key_id: Some(s3.access_key_id().into()),
            secret_access_key: Some(s3.secret_access_key().into()),
            allow_http: true,
        };
        let raw = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(s3.bucket())
            .with_region("us-east-1")
            .with_endpoint(s3.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(s3.access_key_id())
            .with_secret_access_key(s3.secret_access_key())
            .build()
            .unwrap();
        Fixture {
            repo: BackupRepository::s3(&options).unwrap(),
            dir: None,
            raw: Some(Arc::new(raw)),
            work: tempfile::tempdir().unwrap(),
            _repo_dir: None,
            _s3: Some(s3),
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.work.path().join("src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.work.path().join("restore").join(name)
    }

    /// Replaces the stored bytes under an object name.
    async fn overwrite(&self, key: &str, bytes: &[u8]) {
        match (&self.dir, &self.raw) {
            (Some(dir), _) => std::fs::write(dir.join(key), bytes).unwrap(),
            (None, Some(raw)) => {
                raw.put(&ObjectPath::from(key), PutPayload::from(bytes.to_vec()))
                    .await
                    .unwrap();
            }
            _ => unreachable!(),
        }
    }

    async fn remove(&self, key: &str) {
        match (&self.dir, &self.raw) {
            (Some(dir), _) => std::fs::remove_file(dir.join(key)).unwrap(),
            (None, Some(raw)) => raw.delete(&ObjectPath::from(key)).await.unwrap(),
            _ => unreachable!(),
        }
    }

    /// How many blobs the repository holds.
    async fn blob_count(&self) -> usize {
        let blobs = self.repo.blob_key(&"0".repeat(64));
        let objects_dir = blobs.rsplit_once("/00/").unwrap().0.to_string();
        match (&self.dir, &self.raw) {
            (Some(dir), _) => walk(&dir.join(&objects_dir)),
            (None, Some(raw)) => {
                use futures::TryStreamExt;
                let listed: Vec<_> = raw
                    .list(Some(&ObjectPath::from(objects_dir.as_str())))
                    .try_collect()
                    .await
                    .unwrap();
                listed.len()
            }
            _ => unreachable!(),
        }
    }
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { walk(&p) } else { 1 })
        .sum()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that do not repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn on_local<F, Fut>(scenario: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    runtime().block_on(scenario(Fixture::local()));
}

fn on_s3<F, Fut>(scenario: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let fixture = Fixture::s3();
    runtime().block_on(scenario(fixture));
}

/// One test per backend for each scenario.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn local() {
                    super::on_local(super::$scenario);
                }

                #[test]
                fn s3() {
                    super::on_s3(super::$scenario);
                }
            }
        )*
    };
}

on_both!(
    round_trip_and_deduplication,
    corrupted_blob_is_named_and_never_restored,
    missing_blob_is_reported,
    delete_keeps_shared_content,
    prune_by_count_and_age,
    large_file_goes_in_parts,
    unknown_ids_and_corrupt_manifests,
);

const CATALOG: &[u8] = br#"{"assets":[{"id":"ast_1"}]}"#;

async fn round_trip_and_deduplication(f: Fixture) {
    let a = noise(70_000, 1);
    let b = b"second segment".to_vec();
    let files = [
        ("ast_1/v1/part-00000.parquet", a.clone()),
        ("ast_1/v1/part-00001.parquet", b.clone()),
        // Same content as the first: stored once.
        ("ast_2/v1/part-00000.parquet", a.clone()),
        ("ast_2/v1/part-00001.parquet", Vec::new()),
    ];
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + CATALOG.len() as u64;

    let mut w = f
        .repo
        .begin(Scope::Full, None, Some("nightly"))
        .await
        .unwrap();
    let progress = w.progress();
    for (i, (path, bytes)) in files.iter().enumerate() {
        let local = f.file(path, bytes);
        // Half with the digest the catalog would give, half without.
        let expected = (i % 2 == 0).then(|| sha256(bytes));
        let obj = w.add_file(path, &local, expected.as_deref()).await.unwrap();
        assert_eq!(obj.sha256, sha256(bytes));
        assert_eq!(obj.bytes, bytes.len() as u64);
    }
    w.add_catalog(CATALOG.to_vec()).await.unwrap();
    let newest = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    w.set_newest_data_at(newest);
    let first = w.finish().await.unwrap();

    assert_eq!(progress.bytes_total(), total);
    assert_eq!(progress.bytes_done(), total);
    assert_eq!(progress.objects_done(), 5);
    assert_eq!(first.format, 1);
    assert_eq!(first.scope, Scope::Full);
    assert_eq!(first.description.as_deref(), Some("nightly"));
    assert_eq!(first.newest_data_at, Some(newest));
    assert!(first.id.as_str().starts_with("bak_"));
    assert_eq!(first.objects.len(), 4);
    assert_eq!(first.stats.bytes_total, total);
    assert_eq!(first.stats.objects_written, 4, "a, b, empty, catalog");
    assert_eq!(first.stats.objects_deduplicated, 1, "the copy of a");
    assert_eq!(first.stats.bytes_deduplicated, a.len() as u64);
    assert_eq!(first.stats.bytes_written, total - a.len() as u64);
    assert_eq!(f.blob_count().await, 4);

    // The manifest is stored as lower-case scope JSON.
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json["scope"], "full");

    assert_eq!(f.repo.get(first.id.as_str()).await.unwrap(), first);
    let report = f.repo.verify(first.id.as_str()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.objects_checked, 5);

    for obj in &first.objects {
        let dest = f.dest(&obj.path);
        f.repo.restore_file(obj, &dest).await.unwrap();
        let want = &files.iter().find(|(p, _)| *p == obj.path).unwrap().1;
        assert_eq!(&std::fs::read(&dest).unwrap(), want, "{}", obj.path);
        assert!(!PathBuf::from(format!("{}.tmp", dest.display())).exists());
    }
    assert_eq!(f.repo.read_catalog(&first).await.unwrap(), CATALOG);

    // The same files again: nothing but the manifest is written.
    let mut w = f.repo.begin(Scope::Full, None, None).await.unwrap();
    w.announce_total(total, 5);
    let progress = w.progress();
    for (path, bytes) in &files {
        w.add_file(path, &f.file(path, bytes), None).await.unwrap();
    }
    w.add_catalog(CATALOG.to_vec()).await.unwrap();
    let second = w.finish().await.unwrap();
    assert_eq!(progress.bytes_total(), total);
    assert_eq!(progress.bytes_done(), total);
    assert_eq!(second.stats.bytes_total, total);
    assert_eq!(second.stats.bytes_written, 0);
    assert_eq!(second.stats.objects_written, 0);
    assert_eq!(second.stats.bytes_deduplicated, total);
    assert_eq!(second.stats.objects_deduplicated, 5);
    assert_eq!(f.blob_count().await, 4);
    assert!(f.repo.verify(second.id.as_str()).await.unwrap().is_ok());

    let listed = f.repo.list().await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        vec![first.id.clone(), second.id.clone()]
    );
}

async fn corrupted_blob_is_named_and_never_restored(f: Fixture) {
    let good = noise(5_000, 2);
    let bad = noise(6_000, 3);
    let resized = noise(7_000, 4);
    let mut w = f.repo.begin(Scope::Full, None, None).await.unwrap();
    for (path, bytes) in [("a/good", &good), ("a/bad", &bad), ("a/resized", &resized)] {
        w.add_file(path, &f.file(path, bytes), None).await.unwrap();
    }
    w.add_catalog(CATALOG.to_vec()).await.unwrap();
    let m = w.finish().await.unwrap();
    let obj = |p: &str| m.objects.iter().find(|o| o.path == p).unwrap().clone();

    // Same size, other bytes; and other bytes of another size.
    let mut flipped = bad.clone();
    flipped[100] ^= 0xFF;
    f.overwrite(&f.repo.blob_key(&sha256(&bad)), &flipped).await;
    f.overwrite(&f.repo.blob_key(&sha256(&resized)), b"short")
        .await;
    f.overwrite(
        &f.repo.blob_key(&sha256(CATALOG)),
        b"{\"assets\":[{\"id\":\"ast_2\"}]}",
    )
    .await;

    let report = f.repo.verify(m.id.as_str()).await.unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
    let catalog = &report.problems[0];
    assert!(catalog.catalog);
    assert!(matches!(catalog.kind, ProblemKind::ChecksumMismatch { .. }));
    let p = report.problems.iter().find(|p| p.path == "a/bad").unwrap();
    assert_eq!(
        p.kind,
        ProblemKind::ChecksumMismatch {
            expected: sha256(&bad),
            actual: sha256(&flipped)
        }
    );
    assert!(p.to_string().contains("a/bad") && p.to_string().contains("checksum mismatch"));
    let p = report
        .problems
        .iter()
        .find(|p| p.path == "a/resized")
        .unwrap();
    assert_eq!(
        p.kind,
        ProblemKind::SizeMismatch {
            expected: 7_000,
            actual: 5
        }
    );

    let dest = f.dest("a/bad");
    let err = f.repo.restore_file(&obj("a/bad"), &dest).await.unwrap_err();
    assert!(
        matches!(&err, BackupError::ChecksumMismatch { path, .. } if path == "a/bad"),
        "{err}"
    );
    assert!(err.to_string().contains("a/bad"), "{err}");
    assert_eq!(err.class(), ErrorClass::RuleBroken);
    assert!(!dest.exists());
    assert!(!PathBuf::from(format!("{}.tmp", dest.display())).exists());

    let dest = f.dest("a/resized");
    let err = f
        .repo
        .restore_file(&obj("a/resized"), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::SizeMismatch { .. }), "{err}");
    assert!(!dest.exists());

    let err = f.repo.read_catalog(&m).await.unwrap_err();
    assert!(matches!(err, BackupError::ChecksumMismatch { .. }), "{err}");

    let dest = f.dest("a/good");
    f.repo.restore_file(&obj("a/good"), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), good);
}

async fn missing_blob_is_reported(f: Fixture) {
    let kept = noise(1_000, 5);
    let lost = noise(2_000, 6);
    let mut w = f
        .repo
        .begin(Scope::Asset, Some("ast_9"), None)
        .await
        .unwrap();
    w.add_file("ast_9/kept", &f.file("kept", &kept), None)
        .await
        .unwrap();
    w.add_file("ast_9/lost", &f.file("lost", &lost), None)
        .await
        .unwrap();
    let m = w.finish().await.unwrap();
    assert_eq!(m.asset_id.as_deref(), Some("ast_9"));
    assert_eq!(m.catalog, None);

    f.remove(&f.repo.blob_key(&sha256(&lost))).await;
    let report = f.repo.verify(m.id.as_str()).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].path, "ast_9/lost");
    assert_eq!(report.problems[0].kind, ProblemKind::Missing);

    let lost_obj = m.objects.iter().find(|o| o.path == "ast_9/lost").unwrap();
    let dest = f.dest("lost");
    let err = f.repo.restore_file(lost_obj, &dest).await.unwrap_err();
    assert!(
        matches!(&err, BackupError::ObjectMissing { path, .. } if path == "ast_9/lost"),
        "{err}"
    );
    assert!(!dest.exists());

    let err = f.repo.read_catalog(&m).await.unwrap_err();
    assert!(matches!(err, BackupError::NoCatalog { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::NotFound);
}

async fn delete_keeps_shared_content(f: Fixture) {
    let x = noise(3_000, 7);
    let y = noise(4_000, 8);
    let z = noise(5_000, 9);
    let backup = |files: Vec<(&'static str, Vec<u8>)>| {
        let f = &f;
        async move {
            let mut w = f.repo.begin(Scope::Full, None, None).await.unwrap();
            for (path, bytes) in files {
                w.add_file(path, &f.file(path, &bytes), None).await.unwrap();
            }
            w.add_catalog(CATALOG.to_vec()).await.unwrap();
            w.finish().await.unwrap()
        }
    };
    let a = backup(vec![("s/x", x.clone()), ("s/y", y.clone())]).await;
    let b = backup(vec![("s/y", y.clone()), ("s/z", z.clone())]).await;
    assert_eq!(f.blob_count().await, 4, "x, y, z, catalog");

    let report = f.repo.delete(a.id.as_str()).await.unwrap();
    assert_eq!(report.deleted, vec![a.id.clone()]);
    assert_eq!(report.freed_objects, 1, "{report:?}");
    assert_eq!(report.freed_bytes, x.len() as u64);
    assert_eq!(report.kept_shared_objects, 2, "y and the catalog");
    assert_eq!(
        report.kept_shared_bytes,
        y.len() as u64 + CATALOG.len() as u64
    );
    assert_eq!(f.blob_count().await, 3);
    assert!(f.repo.verify(b.id.as_str()).await.unwrap().is_ok());
    let err = f.repo.get(a.id.as_str()).await.unwrap_err();
    assert!(matches!(err, BackupError::NotFound { .. }), "{err}");
    let err = f.repo.delete(a.id.as_str()).await.unwrap_err();
    assert!(matches!(err, BackupError::NotFound { .. }), "{err}");

    let report = f.repo.delete(b.id.as_str()).await.unwrap();
    assert_eq!(report.freed_objects, 3);
    assert_eq!(
        report.freed_bytes,
        (y.len() + z.len() + CATALOG.len()) as u64
    );
    assert_eq!(report.kept_shared_objects, 0);
    assert_eq!(f.blob_count().await, 0);
    assert!(f.repo.list().await.unwrap().is_empty());
}

async fn prune_by_count_and_age(f: Fixture) {
    let day = |d: u32| Utc.with_ymd_and_hms(2024, 3, d, 2, 0, 0).unwrap();
    let clock = ManualClock::new(day(1));
    let repo = f.repo.clone().with_clock(Arc::new(clock.clone()));
    let mut full = Vec::new();
    for d in 1..=4u32 {
        clock.set(day(d));
        let mut w = repo.begin(Scope::Full, None, None).await.unwrap();
        let bytes = noise(1_000, u64::from(d));
        w.add_file("s/f", &f.file(&format!("f{d}"), &bytes), None)
            .await
            .unwrap();
        w.add_catalog(CATALOG.to_vec()).await.unwrap();
        full.push(w.finish().await.unwrap());
    }
    clock.set(day(1));
    let mut w = repo.begin(Scope::Asset, Some("ast_1"), None).await.unwrap();
    w.add_file("s/a", &f.file("a", b"asset"), None)
        .await
        .unwrap();
    let asset = w.finish().await.unwrap();

    // Keep the last 2 full backups; the only asset backup is the newest of
    // its series and stays.
    let policy = RetentionPolicy {
        keep_last: Some(2),
        max_age: None,
    };
    let deleted = repo.prune(&policy, None, day(5)).await.unwrap();
    assert_eq!(deleted, vec![full[0].id.clone(), full[1].id.clone()]);

    // Scope filter: an age limit on asset backups only spares the newest.
    let old = RetentionPolicy {
        keep_last: None,
        max_age: Some(std::time::Duration::from_secs(3600)),
    };
    assert!(repo
        .prune(&old, Some(Scope::Asset), day(20))
        .await
        .unwrap()
        .is_empty());

    // Max age of 36 hours on day 5: day 3 goes, day 4 stays.
    let policy = RetentionPolicy {
        keep_last: None,
        max_age: Some(std::time::Duration::from_secs(36 * 3600)),
    };
    let deleted = repo
        .prune(&policy, Some(Scope::Full), day(5))
        .await
        .unwrap();
    assert_eq!(deleted, vec![full[2].id.clone()]);

    let left: Vec<Id> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![asset.id.clone(), full[3].id.clone()]);
    for id in &left {
        assert!(repo.verify(id.as_str()).await.unwrap().is_ok());
    }
    assert_eq!(f.blob_count().await, 3, "f4, the catalog, the asset file");
}

async fn large_file_goes_in_parts(f: Fixture) {
    let big = noise(20 * 1024 * 1024 + 12_345, 11);
    let digest = sha256(&big);
    let local = f.file("big.parquet", &big);

    let mut w = f
        .repo
        .begin(Scope::Asset, Some("ast_big"), None)
        .await
        .unwrap();
    let progress = w.progress();
    let obj = w
        .add_file("ast_big/v1/part-00000.parquet", &local, None)
        .await
        .unwrap();
    let m = w.finish().await.unwrap();
    assert_eq!(obj.sha256, digest);
    assert_eq!(obj.bytes, big.len() as u64);
    assert_eq!(m.stats.bytes_written, big.len() as u64);
    assert_eq!(progress.bytes_done(), big.len() as u64);
    assert!(f.repo.verify(m.id.as_str()).await.unwrap().is_ok());
    if let Some(raw) = &f.raw {
        // S3 names a multipart object's ETag by its number of parts.
        let meta = raw
            .head(&ObjectPath::from(f.repo.blob_key(&digest).as_str()))
            .await
            .unwrap();
        let etag = meta.e_tag.unwrap_or_default();
        assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    }

    let dest = f.dest("big.parquet");
    f.repo.restore_file(&obj, &dest).await.unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == big,
        "restored bytes differ"
    );

    // Again with the digest: confirmed from the local file, not re-sent.
    let mut w = f
        .repo
        .begin(Scope::Asset, Some("ast_big"), None)
        .await
        .unwrap();
    w.add_file("ast_big/v1/part-00000.parquet", &local, Some(&digest))
        .await
        .unwrap();
    let again = w.finish().await.unwrap();
    assert_eq!(again.stats.bytes_written, 0);
    assert_eq!(again.stats.bytes_deduplicated, big.len() as u64);

    // A large file that is not what the caller says: refused, and the
    // aborted upload leaves nothing at the claimed address.
    let mut other = big.clone();
    other[20 * 1024 * 1024] ^= 1;
    let other_local = f.file("other.parquet", &other);
    let claimed = sha256(b"what the catalog says");
    let mut w = f
        .repo
        .begin(Scope::Asset, Some("ast_big"), None)
        .await
        .unwrap();
    let err = w
        .add_file(
            "ast_big/v2/part-00000.parquet",
            &other_local,
            Some(&claimed),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackupError::ChecksumMismatch { path, .. } if path.contains("ast_big/v2/part-00000.parquet")),
        "{err}"
    );
    assert_eq!(f.blob_count().await, 1);
    // And the same local file claimed as the stored digest (deduplicated
    // path): refused too.
    let err = w
        .add_file("ast_big/v2/part-00001.parquet", &other_local, Some(&digest))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::ChecksumMismatch { .. }), "{err}");
}

async fn unknown_ids_and_corrupt_manifests(f: Fixture) {
    let unknown = Id::generate(IdKind::Backup);
    for id in [unknown.as_str(), "nonsense", "../../etc/passwd"] {
        let err = f.repo.get(id).await.unwrap_err();
        assert!(matches!(err, BackupError::NotFound { .. }), "{id}: {err}");
        assert_eq!(err.class(), ErrorClass::NotFound);
        let err = f.repo.verify(id).await.unwrap_err();
        assert!(matches!(err, BackupError::NotFound { .. }), "{id}: {err}");
    }

    let mut w = f.repo.begin(Scope::Catalog, None, None).await.unwrap();
    w.add_catalog(CATALOG.to_vec()).await.unwrap();
    let good = w.finish().await.unwrap();

    let broken = Id::generate(IdKind::Backup);
    f.overwrite(
        &f.repo.manifest_key(broken.as_str()),
        b"{\"format\": 1, \"id\": ",
    )
    .await;
    let err = f.repo.get(broken.as_str()).await.unwrap_err();
    assert!(matches!(err, BackupError::CorruptManifest { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("corrupt manifest of backup '{broken}'")),
        "{err}"
    );
    let err = f.repo.verify(broken.as_str()).await.unwrap_err();
    assert!(matches!(err, BackupError::CorruptManifest { .. }), "{err}");
    let err = f.repo.list().await.unwrap_err();
    assert!(matches!(err, BackupError::CorruptManifest { .. }), "{err}");
    // While a manifest cannot be read, deleting another backup would
    // collect blobs it may reference: refused.
    let err = f.repo.delete(good.id.as_str()).await.unwrap_err();
    assert!(matches!(err, BackupError::CorruptManifest { .. }), "{err}");
    assert!(f.repo.verify(good.id.as_str()).await.unwrap().is_ok());

    // The corrupt one itself can be deleted.
    f.repo.delete(broken.as_str()).await.unwrap();
    assert_eq!(f.repo.list().await.unwrap().len(), 1);
}

/// Arguments the writer refuses, before any I/O of substance.
#[test]
fn invalid_arguments() {
    on_local(|f| async move {
        let err = f.repo.begin(Scope::Asset, None, None).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadInput, "{err}");
        let err = f
            .repo
            .begin(Scope::Full, Some("ast_1"), None)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadInput, "{err}");

        let local = f.file("x", b"x");
        let mut w = f.repo.begin(Scope::Full, None, None).await.unwrap();
        for bad in ["", "/abs", "a/../b", "a//b"] {
            let err = w.add_file(bad, &local, None).await.unwrap_err();
            assert!(matches!(err, BackupError::Invalid { .. }), "{bad}: {err}");
        }
        w.add_file("a/x", &local, None).await.unwrap();
        let err = w.add_file("a/x", &local, None).await.unwrap_err();
        assert!(err.to_string().contains("already in the backup"), "{err}");
        let err = w.add_file("a/y", &local, Some("nothex")).await.unwrap_err();
        assert!(matches!(err, BackupError::Invalid { .. }), "{err}");
        let err = w
            .add_file("a/y", &local, Some(&sha256(b"y")))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BackupError::ChecksumMismatch { path, .. } if path.contains("a/y")),
            "{err}"
        );
        let missing = f.work.path().join("nope");
        let err = w.add_file("a/z", &missing, None).await.unwrap_err();
        assert!(matches!(err, BackupError::Io { .. }), "{err}");
        // A full backup needs its catalog snapshot.
        let err = w.finish().await.unwrap_err();
        assert!(err.to_string().contains("catalog snapshot"), "{err}");
        assert!(f.repo.list().await.unwrap().is_empty());

        let mut w = f.repo.begin(Scope::Catalog, None, None).await.unwrap();
        let err = w.add_file("a/x", &local, None).await.unwrap_err();
        assert!(matches!(err, BackupError::Invalid { .. }), "{err}");
        w.add_catalog(CATALOG.to_vec()).await.unwrap();
        let err = w.add_catalog(CATALOG.to_vec()).await.unwrap_err();
        assert!(matches!(err, BackupError::Invalid { .. }), "{err}");
    });
}

/// Blobs of a backup that never finished are collected once older than
/// the grace period, not before.
#[test]
fn unfinished_backups_are_collected_after_the_grace_period() {
    on_local(|f| async move {
        let mut w = f.repo.begin(Scope::Full, None, None).await.unwrap();
        w.add_file("a/x", &f.file("x", b"left behind"), None)
            .await
            .unwrap();
        drop(w);
        assert!(f.repo.list().await.unwrap().is_empty());
        let report = f.repo.collect_garbage().await.unwrap();
        assert_eq!(report.freed_objects, 0);
        assert_eq!(f.blob_count().await, 1);

        let later = f.repo.clone().with_clock(Arc::new(ManualClock::new(
            Utc::now() + chrono::Duration::days(2),
        )));
        let report = later.collect_garbage().await.unwrap();
        assert_eq!(report.freed_objects, 1);
        assert_eq!(f.blob_count().await, 0);
    });
}

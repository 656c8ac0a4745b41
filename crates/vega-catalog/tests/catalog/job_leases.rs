//! Jobs owned by nodes under leases: renewal, claims of expired jobs (each
//! exactly once, even with claimers racing), the fencing check that refuses
//! the result of a job whose lease is gone, and restarts that fail only the
//! restarted node's own jobs.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use vega_catalog::{Catalog, CatalogError, ClaimedJob};
use vega_core::{Id, IdKind, Job, JobKind, JobState};

use crate::common::{manifest, t, Fixture};

const TTL: Duration = Duration::from_secs(10);

/// A new node id (ids carry random bits: keep the one you mean).
fn node(n: u64) -> Id {
    Id::new(IdKind::Node, 1_700_000_000_000 + n)
}

async fn owned(f: &Fixture, asset: &Id, owner: &Id, at: i64) -> Job {
    f.catalog
        .start_owned_job(JobKind::Sync, Some(asset), json!({}), owner, TTL, t(at))
        .await
        .unwrap()
}

fn interrupted(claimed: Vec<ClaimedJob>) -> Vec<Id> {
    claimed
        .into_iter()
        .map(|c| match c {
            ClaimedJob::Interrupted(j) => j.id,
            ClaimedJob::Completed(j) => panic!("{} was completed, not interrupted", j.id),
        })
        .collect()
}

#[tokio::test]
async fn an_owned_job_records_its_node_and_lease_and_renewal_extends_it() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let (n1, n2) = (node(1), node(2));
    let job = owned(&f, &a.id, &n1, 0).await;
    assert_eq!(job.owner.as_ref(), Some(&n1));
    assert_eq!(job.lease_expires_at, Some(t(10)));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), job);

    let held = f.catalog.renew_job_leases(&n1, TTL, t(5)).await.unwrap();
    assert_eq!(held, std::slice::from_ref(&job.id));
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().lease_expires_at,
        Some(t(15))
    );
    // Another node's renewal does not touch it.
    assert!(f
        .catalog
        .renew_job_leases(&n2, TTL, t(6))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().lease_expires_at,
        Some(t(15))
    );
}

#[tokio::test]
async fn only_expired_jobs_of_other_nodes_are_claimed_and_only_once() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "s", "a").await;
    let b = f.asset(&con, "s", "b").await;
    let c = f.asset(&con, "s", "c").await;
    let (n1, n2) = (node(1), node(2));
    let expired = owned(&f, &a.id, &n1, 0).await; // lease until t(10)
    let fresh = owned(&f, &b.id, &n1, 8).await; // lease until t(18)
    let mine = owned(&f, &c.id, &n2, 0).await; // n2's own

    // Not yet expired at t(10) (expires_at is inclusive).
    assert!(f
        .catalog
        .claim_orphaned_jobs(&n2, 10, t(10))
        .await
        .unwrap()
        .is_empty());
    let claimed = interrupted(f.catalog.claim_orphaned_jobs(&n2, 10, t(11)).await.unwrap());
    assert_eq!(claimed, std::slice::from_ref(&expired.id));
    let job = f.catalog.get_job(&expired.id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap();
    assert!(error.starts_with("interrupted:"), "{error}");
    assert!(
        error.contains(n1.as_str()) && error.contains(n2.as_str()),
        "{error}"
    );
    assert_eq!(job.finished_at, Some(t(11)));
    // Claimed once: a second claim finds nothing more.
    assert!(f
        .catalog
        .claim_orphaned_jobs(&n2, 10, t(12))
        .await
        .unwrap()
        .is_empty());
    for j in [&fresh, &mine] {
        assert_eq!(
            f.catalog.get_job(&j.id).await.unwrap().state,
            JobState::Running
        );
    }
    // The asset is free for the job to run again.
    owned(&f, &a.id, &n2, 12).await;
}

#[tokio::test]
async fn the_claim_limit_bounds_how_many_jobs_are_taken() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let (n1, n2) = (node(1), node(2));
    for i in 0..3 {
        let asset = f.asset(&con, "s", &format!("a{i}")).await;
        owned(&f, &asset.id, &n1, i).await;
    }
    let first = f.catalog.claim_orphaned_jobs(&n2, 2, t(30)).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = f.catalog.claim_orphaned_jobs(&n2, 2, t(30)).await.unwrap();
    assert_eq!(rest.len(), 1);
}

#[tokio::test]
async fn racing_claimers_take_each_job_exactly_once() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let dead = node(9);
    let mut expected = HashSet::new();
    for i in 0..12 {
        let asset = f.asset(&con, "s", &format!("a{i}")).await;
        expected.insert(owned(&f, &asset.id, &dead, 0).await.id);
    }
    // Four claimers at once, each on its own pooled connection.
    let claimer = |n: u64| {
        let catalog = &f.catalog;
        async move {
            let mut mine = Vec::new();
            for round in 0..6 {
                let claimed = catalog
                    .claim_orphaned_jobs(&node(n), 2, t(100 + round))
                    .await
                    .unwrap();
                mine.extend(interrupted(claimed));
            }
            mine
        }
    };
    let (c1, c2, c3, c4) = tokio::join!(claimer(1), claimer(2), claimer(3), claimer(4));
    let seen: Vec<Id> = [c1, c2, c3, c4].into_iter().flatten().collect();
    let unique: HashSet<Id> = seen.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        unique.len(),
        "a job was claimed twice: {seen:?}"
    );
    assert_eq!(unique, expected);
}

#[tokio::test]
async fn the_result_of_a_claimed_job_is_refused_and_changes_nothing() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let (n1, n2) = (node(1), node(2));
    let job = owned(&f, &a.id, &n1, 0).await;
    f.catalog.claim_orphaned_jobs(&n2, 1, t(11)).await.unwrap();
    // n1 comes back (it was only cut off) and tries to publish.
    let late = f
        .catalog
        .publish_version(&a.id, manifest("late", 1), Some(&job.id), t(12))
        .await;
    match late {
        Err(CatalogError::Fenced { what: j, message }) => {
            assert_eq!(j, job.id.to_string());
            assert!(message.contains("failed"), "{message}");
        }
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    assert!(f.catalog.list_versions(&a.id).await.unwrap().is_empty());
    assert_eq!(
        f.catalog.get_asset(&a.id).await.unwrap().active_version,
        None
    );
    // Appends are fenced the same way.
    let late = f
        .catalog
        .append_segments(
            &a.id,
            manifest("late", 0).schema,
            manifest("late", 1).segments,
            json!({"id": 1}),
            Some(&job.id),
            t(12),
        )
        .await;
    assert!(matches!(late, Err(CatalogError::Fenced { .. })), "{late:?}");
    let asset = f.catalog.get_asset(&a.id).await.unwrap();
    assert_eq!(asset.watermark, None);
    assert!(f.catalog.list_segment_paths().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_result_after_the_lease_expired_is_refused_even_before_a_claim() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let n1 = node(1);
    let job = owned(&f, &a.id, &n1, 0).await;
    let late = f
        .catalog
        .publish_version(&a.id, manifest("late", 1), Some(&job.id), t(11))
        .await;
    match late {
        Err(CatalogError::Fenced { message, .. }) => {
            assert!(message.contains("lease expired"), "{message}")
        }
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    assert!(f.catalog.list_versions(&a.id).await.unwrap().is_empty());
    // Within the lease it publishes, and the job records its result.
    let job = f.catalog.get_job(&job.id).await.unwrap();
    let held = f.catalog.renew_job_leases(&n1, TTL, t(11)).await.unwrap();
    assert_eq!(held, std::slice::from_ref(&job.id));
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().lease_expires_at,
        Some(t(21))
    );
    let v = f
        .catalog
        .publish_version(&a.id, manifest("ok", 1), Some(&job.id), t(12))
        .await
        .unwrap();
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().result_version,
        Some(v.number)
    );
}

#[tokio::test]
async fn a_job_that_published_before_its_node_stopped_is_claimed_as_completed() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job = owned(&f, &a.id, &node(1), 0).await;
    f.catalog
        .publish_version(&a.id, manifest("a", 1), Some(&job.id), t(5))
        .await
        .unwrap();
    // The node died between publishing and recording the job's end.
    let claimed = f
        .catalog
        .claim_orphaned_jobs(&node(2), 5, t(20))
        .await
        .unwrap();
    match claimed.as_slice() {
        [ClaimedJob::Completed(j)] => assert_eq!(j.id, job.id),
        other => panic!("expected one completed job, got {other:?}"),
    }
    let job = f.catalog.get_job(&job.id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result_version, Some(1));
}

#[tokio::test]
async fn a_restart_fails_only_its_own_and_unowned_jobs() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "s", "a").await;
    let b = f.asset(&con, "s", "b").await;
    let c = f.asset(&con, "s", "c").await;
    let (n1, n2) = (node(1), node(2));
    let own = owned(&f, &a.id, &n1, 0).await;
    let other = owned(&f, &b.id, &n2, 0).await;
    let unowned = f
        .catalog
        .start_job(JobKind::Sync, Some(&c.id), json!({}), t(0))
        .await
        .unwrap();
    let failed: Vec<Id> = f
        .catalog
        .fail_interrupted_jobs(Some(&n1), "restarted", t(3))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    let expected: HashSet<Id> = [own.id, unowned.id].into_iter().collect();
    assert_eq!(failed.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(
        f.catalog.get_job(&other.id).await.unwrap().state,
        JobState::Running
    );
}

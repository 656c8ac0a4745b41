//! Jobs: start, one-at-a-time per asset, read, list, progress, retried
//! attempts, finish, crash recovery and counts.

use serde_json::json;
use vega_catalog::{Catalog, CatalogError, JobFilter, JobOutcome, JobProgress};
use vega_core::{Id, IdKind, JobKind, JobState};

use crate::common::on_postgres;
use crate::common::{assert_conflict, assert_not_found, t, Fixture};

#[tokio::test]
async fn started_job_is_running_with_one_attempt() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({"mode": "full"}), t(5))
        .await
        .unwrap();
    assert!(job.id.as_str().starts_with("job_"));
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 1);
    assert_eq!((job.rows, job.bytes), (0, 0));
    assert_eq!(job.created_at, t(5));
    assert_eq!(job.started_at, Some(t(5)));
    assert_eq!(job.finished_at, None);
    assert_eq!(job.asset_id, Some(a.id));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), job);
}

#[tokio::test]
async fn second_running_job_for_an_asset_is_a_conflict_with_the_existing_job() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let first = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    let result = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(2))
        .await;
    let expected = format!("asset {} already has a running sync job {}", a.id, first.id);
    let existing = assert_conflict(result, &expected);
    assert_eq!(existing.as_deref(), Some(first.id.as_str()));
}

#[tokio::test]
async fn a_finished_job_does_not_block_the_next() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let first = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    f.catalog
        .finish_job(
            &first.id,
            JobOutcome::Failed {
                error: "boom".into(),
            },
            t(2),
        )
        .await
        .unwrap();
    f.catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(3))
        .await
        .unwrap();
}

#[tokio::test]
async fn running_jobs_on_different_assets_do_not_clash() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    for id in [&a.id, &b.id] {
        f.catalog
            .start_job(JobKind::Sync, Some(id), json!({}), t(1))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn jobs_without_an_asset_are_not_limited() {
    let f = Fixture::new().await;
    for i in 0..3 {
        let job = f
            .catalog
            .start_job(JobKind::Sync, None, json!({}), t(i))
            .await
            .unwrap();
        assert_eq!(job.asset_id, None);
    }
}

#[tokio::test]
async fn starting_a_job_for_an_unknown_asset_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Asset, 9);
    assert_not_found(
        f.catalog
            .start_job(JobKind::Sync, Some(&id), json!({}), t(1))
            .await,
        "asset",
        id.as_str(),
    );
}

#[tokio::test]
async fn unknown_job_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Job, 9);
    assert_not_found(f.catalog.get_job(&id).await, "job", id.as_str());
    assert_not_found(
        f.catalog
            .update_job_progress(&id, JobProgress::default())
            .await,
        "job",
        id.as_str(),
    );
    assert_not_found(
        f.catalog.record_job_attempt(&id, "boom").await,
        "job",
        id.as_str(),
    );
    assert_not_found(
        f.catalog
            .finish_job(
                &id,
                JobOutcome::Succeeded {
                    result_version: None,
                },
                t(1),
            )
            .await,
        "job",
        id.as_str(),
    );
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_filtered() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    let a1 = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    f.catalog
        .finish_job(
            &a1.id,
            JobOutcome::Succeeded {
                result_version: Some(1),
            },
            t(2),
        )
        .await
        .unwrap();
    let a2 = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(3))
        .await
        .unwrap();
    let b1 = f
        .catalog
        .start_job(JobKind::Sync, Some(&b.id), json!({}), t(4))
        .await
        .unwrap();

    let ids = |jobs: Vec<vega_core::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<Id>>();
    let all = f.catalog.list_jobs(JobFilter::default()).await.unwrap();
    assert_eq!(ids(all), [b1.id.clone(), a2.id.clone(), a1.id.clone()]);

    let of_a = JobFilter {
        asset_id: Some(a.id.clone()),
        ..JobFilter::default()
    };
    assert_eq!(
        ids(f.catalog.list_jobs(of_a).await.unwrap()),
        [a2.id.clone(), a1.id.clone()]
    );

    let succeeded = JobFilter {
        state: Some(JobState::Succeeded),
        ..JobFilter::default()
    };
    assert_eq!(ids(f.catalog.list_jobs(succeeded).await.unwrap()), [a1.id]);

    let running_of_a = JobFilter {
        asset_id: Some(a.id.clone()),
        state: Some(JobState::Running),
        limit: None,
    };
    assert_eq!(
        ids(f.catalog.list_jobs(running_of_a).await.unwrap()),
        [a2.id]
    );

    let newest = JobFilter {
        limit: Some(1),
        ..JobFilter::default()
    };
    assert_eq!(ids(f.catalog.list_jobs(newest).await.unwrap()), [b1.id]);
}

#[tokio::test]
async fn progress_is_stored_on_a_running_job() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    let progress = JobProgress {
        rows: 1_000,
        bytes: 5_000_000_000,
    };
    f.catalog
        .update_job_progress(&job.id, progress)
        .await
        .unwrap();
    let read = f.catalog.get_job(&job.id).await.unwrap();
    assert_eq!((read.rows, read.bytes), (1_000, 5_000_000_000));
}

#[tokio::test]
async fn progress_on_a_finished_job_is_a_conflict() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    f.catalog
        .finish_job(
            &job.id,
            JobOutcome::Cancelled {
                reason: "stop".into(),
            },
            t(2),
        )
        .await
        .unwrap();
    assert_conflict(
        f.catalog
            .update_job_progress(&job.id, JobProgress { rows: 1, bytes: 1 })
            .await,
        "already finished (cancelled)",
    );
}

#[tokio::test]
async fn a_failed_attempt_counts_and_records_its_error() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    let after_one = f
        .catalog
        .record_job_attempt(&job.id, "connection reset")
        .await
        .unwrap();
    assert_eq!(after_one.attempts, 2);
    assert_eq!(after_one.error.as_deref(), Some("connection reset"));
    assert_eq!(after_one.state, JobState::Running);
    assert_eq!(after_one.finished_at, None);
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), after_one);

    let after_two = f
        .catalog
        .record_job_attempt(&job.id, "timed out")
        .await
        .unwrap();
    assert_eq!(after_two.attempts, 3);
    assert_eq!(after_two.error.as_deref(), Some("timed out"));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), after_two);
}

#[tokio::test]
async fn a_failed_attempt_on_a_pending_job_counts_and_keeps_it_pending() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    // No method makes a pending job yet; put one in by hand.
    let raw = f.raw().await;
    sqlx::query("UPDATE jobs SET state = 'pending' WHERE id = $1")
        .bind(job.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let read = f.catalog.record_job_attempt(&job.id, "busy").await.unwrap();
    assert_eq!(read.state, JobState::Pending);
    assert_eq!(read.attempts, 2);
    assert_eq!(read.error.as_deref(), Some("busy"));
}

#[tokio::test]
async fn a_failed_attempt_on_a_finished_job_is_a_conflict_and_changes_nothing() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    let finished = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Succeeded {
                result_version: Some(1),
            },
            t(2),
        )
        .await
        .unwrap();
    let existing = assert_conflict(
        f.catalog.record_job_attempt(&job.id, "late").await,
        "already finished (succeeded)",
    );
    assert_eq!(existing.as_deref(), Some(job.id.as_str()));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), finished);
}

#[tokio::test]
async fn succeeded_job_records_its_version() {
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    let done = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Succeeded {
                result_version: Some(4),
            },
            t(9),
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result_version, Some(4));
    assert_eq!(done.error, None);
    assert_eq!(done.finished_at, Some(t(9)));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), done);
}

#[tokio::test]
async fn failed_job_records_its_error() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    let done = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Failed {
                error: "source down".into(),
            },
            t(9),
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.error.as_deref(), Some("source down"));
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), done);
}

#[tokio::test]
async fn cancelled_job_records_its_reason() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    let done = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Cancelled {
                reason: "operator".into(),
            },
            t(9),
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.error.as_deref(), Some("operator"));
}

#[tokio::test]
async fn finishing_a_job_twice_is_a_conflict() {
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), t(1))
        .await
        .unwrap();
    f.catalog
        .finish_job(
            &job.id,
            JobOutcome::Succeeded {
                result_version: None,
            },
            t(2),
        )
        .await
        .unwrap();
    let result = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Failed {
                error: "late".into(),
            },
            t(3),
        )
        .await;
    assert!(matches!(result, Err(CatalogError::Conflict { .. })));
    assert_eq!(
        f.catalog.get_job(&job.id).await.unwrap().state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn interrupted_jobs_are_failed_and_returned() {
    let f = Fixture::new().await;
    let con = f.connection("files").await;
    let a = f.asset(&con, "sales", "orders").await;
    let b = f.asset(&con, "sales", "items").await;
    let done = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(1))
        .await
        .unwrap();
    f.catalog
        .finish_job(
            &done.id,
            JobOutcome::Succeeded {
                result_version: None,
            },
            t(2),
        )
        .await
        .unwrap();
    let r1 = f
        .catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(3))
        .await
        .unwrap();
    let r2 = f
        .catalog
        .start_job(JobKind::Sync, Some(&b.id), json!({}), t(4))
        .await
        .unwrap();

    let failed = f
        .catalog
        .fail_interrupted_jobs(None, "node restarted", t(10))
        .await
        .unwrap();
    let ids: Vec<&Id> = failed.iter().map(|j| &j.id).collect();
    assert_eq!(ids, [&r1.id, &r2.id]);
    for job in &failed {
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error.as_deref(), Some("node restarted"));
        assert_eq!(job.finished_at, Some(t(10)));
        assert_eq!(&f.catalog.get_job(&job.id).await.unwrap(), job);
    }
    assert_eq!(
        f.catalog.get_job(&done.id).await.unwrap().state,
        JobState::Succeeded
    );
    // The assets are free for new jobs.
    f.catalog
        .start_job(JobKind::Sync, Some(&a.id), json!({}), t(11))
        .await
        .unwrap();
}

#[tokio::test]
async fn failing_interrupted_jobs_with_none_running_returns_nothing() {
    let f = Fixture::new().await;
    assert!(f
        .catalog
        .fail_interrupted_jobs(None, "restart", t(1))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn jobs_are_counted_by_state_including_zeros() {
    let f = Fixture::new().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let job = f
            .catalog
            .start_job(JobKind::Sync, None, json!({}), t(i))
            .await
            .unwrap();
        ids.push(job.id);
    }
    f.catalog
        .finish_job(
            &ids[0],
            JobOutcome::Succeeded {
                result_version: None,
            },
            t(5),
        )
        .await
        .unwrap();
    f.catalog
        .finish_job(&ids[1], JobOutcome::Failed { error: "x".into() }, t(5))
        .await
        .unwrap();
    f.catalog
        .finish_job(&ids[2], JobOutcome::Failed { error: "y".into() }, t(5))
        .await
        .unwrap();
    let counts = f.catalog.count_jobs_by_state().await.unwrap();
    assert_eq!(
        counts,
        [
            (JobState::Pending, 0),
            (JobState::Running, 1),
            (JobState::Succeeded, 1),
            (JobState::Failed, 2),
            (JobState::Cancelled, 0),
        ]
    );
}

#[tokio::test]
async fn returned_job_times_equal_the_stored_millisecond_times() {
    let f = Fixture::new().await;
    let now = t(0) + chrono::Duration::nanoseconds(987_654_321);
    let job = f
        .catalog
        .start_job(JobKind::Sync, None, json!({}), now)
        .await
        .unwrap();
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), job);
    let done = f
        .catalog
        .finish_job(
            &job.id,
            JobOutcome::Succeeded {
                result_version: None,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(f.catalog.get_job(&job.id).await.unwrap(), done);
}

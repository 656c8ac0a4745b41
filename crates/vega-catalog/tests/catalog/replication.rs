//! The PostgreSQL read/write split and failover, on a real primary with a
//! real streaming replica (`vega_testkit::replication`), started by each
//! test whatever `VEGA_TEST_CATALOG` says: reads on the replica, writes on
//! the primary, read-your-writes, lagging and unreachable replicas skipped,
//! failover to a promoted replica; and catalog URLs refused before any
//! connection. Every wait has a deadline; everything is on loopback.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;
use vega_catalog::{Catalog, CatalogError, PoolRole, PoolStats, PostgresUrl, SqlCatalog};
use vega_testkit::postgres::TestPostgres;
use vega_testkit::replication::TestReplicaSet;

use crate::common::{new_asset, new_connection, t, Fixture};

/// Bound on every wait for the pools to reach a state.
const WAIT: Duration = Duration::from_secs(30);

/// `postgres://user:pw@127.0.0.1:P1,127.0.0.1:P2/postgres?query`.
fn url(server: &TestPostgres, hosts: &[u16], query: &str) -> String {
    let hosts = hosts
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut url = format!(
        "postgres://{}:{}@{hosts}/{}",
        server.user(),
        server.password(),
        server.database()
    );
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A catalog on the primary with the replica as its read replica.
async fn split_catalog(set: &TestReplicaSet, max_lag: &str) -> SqlCatalog {
    let query = format!(
        "replicas=127.0.0.1:{}&max_replica_lag={max_lag}",
        set.replica().port()
    );
    SqlCatalog::connect(&url(set.primary(), &[set.primary().port()], &query))
        .await
        .unwrap()
}

/// Runs blocking harness work (starting servers, psql) without stalling
/// the runtime's other tasks (the pools' monitors).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls `check` until it is true; panics with `what` after [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn replica_reads(stats: &PoolStats) -> u64 {
    stats.replicas[0].reads
}

/// Waits until plain reads of `catalog` are served by its first replica
/// (the read-your-writes window of its start-up has passed, the replica
/// is checked and within the bound).
async fn wait_reads_on_replica(catalog: &SqlCatalog) {
    wait_until("reads to go to the replica", || async {
        let before = replica_reads(&catalog.pool_stats());
        catalog.get_setting("probe").await.unwrap();
        replica_reads(&catalog.pool_stats()) > before
    })
    .await;
}

/// Whether the replica's copy of the settings table has `key` (asked on
/// the replica itself).
fn replica_has_setting(set: &TestReplicaSet, key: &str) -> bool {
    let out = set.replica().execute(&format!(
        "SELECT count(*) FROM settings WHERE key = '{key}'"
    ));
    out.trim() == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_and_writes_to_the_primary() {
    let set = blocking(TestReplicaSet::start);
    let catalog = split_catalog(&set, "5s").await;
    // Another node, on the primary alone: what it writes reaches this
    // catalog's replica only by replication.
    let other = SqlCatalog::connect(&url(set.primary(), &[set.primary().port()], ""))
        .await
        .unwrap();
    wait_reads_on_replica(&catalog).await;

    // A fresh commit is replayed, then replay stops: the replica's lag is
    // well within the bound, but it does not show what comes next.
    other.put_setting("seen", json!(1), t(0)).await.unwrap();
    blocking(|| set.wait_caught_up());
    blocking(|| set.pause_replay());
    other.put_setting("fresh", json!(2), t(1)).await.unwrap();

    let before = catalog.pool_stats();
    assert_eq!(catalog.get_setting("seen").await.unwrap(), Some(json!(1)));
    assert_eq!(
        catalog.get_setting("fresh").await.unwrap(),
        None,
        "a replica read does not see a row the paused replica has not replayed"
    );
    let after = catalog.pool_stats();
    assert_eq!(replica_reads(&after), replica_reads(&before) + 2);
    assert_eq!(after.primary.reads, before.primary.reads);
    assert_eq!(after.fallback_reads, before.fallback_reads);
    // The primary path sees it.
    assert_eq!(other.get_setting("fresh").await.unwrap(), Some(json!(2)));

    // Writes go to the primary (the replica would refuse them).
    let before = catalog.pool_stats();
    catalog
        .put_setting("written", json!(3), t(2))
        .await
        .unwrap();
    let after = catalog.pool_stats();
    assert_eq!(after.primary.acquires, before.primary.acquires + 1);
    assert_eq!(after.replicas[0].acquires, before.replicas[0].acquires);
    assert_eq!(other.get_setting("written").await.unwrap(), Some(json!(3)));
    assert_eq!(after.primary.role, PoolRole::Primary);
    assert_eq!(
        after.primary.host,
        format!("127.0.0.1:{}", set.primary().port())
    );
    assert_eq!(after.replicas[0].role, PoolRole::Replica);
    let health = after.replicas[0].replica.clone().unwrap();
    assert!(health.reachable && health.in_recovery, "{health:?}");
    assert!(health.lag.is_some(), "{health:?}");

    // Once replay resumes, the replica shows the row.
    blocking(|| set.resume_replay());
    wait_until("the replica to replay the fresh row", || async {
        blocking(|| replica_has_setting(&set, "fresh"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_seen_by_the_next_read_of_the_same_handle() {
    let set = blocking(TestReplicaSet::start);
    let catalog = split_catalog(&set, "5s").await;
    wait_reads_on_replica(&catalog).await;

    // The replica stops replaying (recently caught up, so within the bound
    // and still usable): anything written now exists on the primary only.
    catalog.put_setting("warm", json!(0), t(0)).await.unwrap();
    blocking(|| set.wait_caught_up());
    blocking(|| set.pause_replay());

    let before = catalog.pool_stats();
    catalog.put_setting("mine", json!(1), t(1)).await.unwrap();
    assert_eq!(catalog.get_setting("mine").await.unwrap(), Some(json!(1)));
    let con = catalog
        .create_connection(new_connection("files"), t(2))
        .await
        .unwrap();
    assert_eq!(
        catalog.get_connection_by_name("files").await.unwrap().id,
        con.id
    );
    let asset = catalog
        .create_asset(new_asset(&con, "sales", "orders"), t(3))
        .await
        .unwrap();
    assert_eq!(catalog.list_assets().await.unwrap(), vec![asset]);

    let after = catalog.pool_stats();
    assert_eq!(
        replica_reads(&after),
        replica_reads(&before),
        "reads after a write of this handle go to the primary"
    );
    assert_eq!(after.primary.reads, before.primary.reads + 3);
    assert_eq!(
        after.fallback_reads, before.fallback_reads,
        "read-your-writes is not a fallback"
    );
    assert!(
        after.replicas[0].replica.as_ref().unwrap().usable,
        "the replica was usable: {:?}",
        after.replicas[0]
    );
    assert!(
        !blocking(|| replica_has_setting(&set, "mine")),
        "the paused replica does not have the write"
    );
    blocking(|| set.resume_replay());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lagging_past_the_bound_is_skipped_and_reads_fall_back() {
    let set = blocking(TestReplicaSet::start);
    let catalog = split_catalog(&set, "1s").await;
    let other = SqlCatalog::connect(&url(set.primary(), &[set.primary().port()], ""))
        .await
        .unwrap();
    wait_reads_on_replica(&catalog).await;

    blocking(|| set.pause_replay());
    other.put_setting("late", json!(1), t(0)).await.unwrap();
    wait_until("the replica's lag to exceed the bound", || async {
        let stats = catalog.pool_stats();
        let health = stats.replicas[0].replica.clone().unwrap();
        !health.usable && health.lag.is_some_and(|l| l > Duration::from_secs(1))
    })
    .await;
    let health = catalog.pool_stats().replicas[0].replica.clone().unwrap();
    assert!(
        health
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("exceeds max_replica_lag")),
        "{health:?}"
    );

    let before = catalog.pool_stats();
    assert_eq!(
        catalog.get_setting("late").await.unwrap(),
        Some(json!(1)),
        "the fallback read on the primary sees the row the replica lacks"
    );
    catalog.list_assets().await.unwrap();
    let after = catalog.pool_stats();
    assert_eq!(after.fallback_reads, before.fallback_reads + 2);
    assert_eq!(after.primary.reads, before.primary.reads + 2);
    assert_eq!(replica_reads(&after), replica_reads(&before));

    // Caught up again, the replica is used again and the fallbacks stop.
    blocking(|| set.resume_replay());
    wait_reads_on_replica(&catalog).await;
    let before = catalog.pool_stats();
    assert_eq!(catalog.get_setting("late").await.unwrap(), Some(json!(1)));
    assert_eq!(catalog.pool_stats().fallback_reads, before.fallback_reads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_replica_is_skipped() {
    let set = blocking(TestReplicaSet::start);
    let dead = vega_testkit::ports::free_port();
    let primary = set.primary().port();
    let replica = set.replica().port();

    // A dead replica next to a live one: reads go to the live one only.
    let catalog = SqlCatalog::connect(&url(
        set.primary(),
        &[primary],
        &format!("replicas=127.0.0.1:{dead},127.0.0.1:{replica}&max_replica_lag=1s"),
    ))
    .await
    .unwrap();
    let stats = catalog.pool_stats();
    let dead_health = stats.replicas[0].replica.clone().unwrap();
    assert!(
        !dead_health.reachable && !dead_health.usable,
        "{dead_health:?}"
    );
    assert!(
        dead_health
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("unreachable")),
        "{dead_health:?}"
    );
    wait_until("reads to go to the live replica", || async {
        let before = catalog.pool_stats().replicas[1].reads;
        catalog.get_setting("probe").await.unwrap();
        catalog.pool_stats().replicas[1].reads > before
    })
    .await;
    let before = catalog.pool_stats();
    for _ in 0..4 {
        catalog.list_connections().await.unwrap();
    }
    let after = catalog.pool_stats();
    assert_eq!(after.replicas[1].reads, before.replicas[1].reads + 4);
    assert_eq!(after.replicas[0].reads, 0);
    assert_eq!(after.fallback_reads, before.fallback_reads);

    // Only a dead replica: reads fall back to the primary, counted.
    let lonely = SqlCatalog::connect(&url(
        set.primary(),
        &[primary],
        &format!("replicas=127.0.0.1:{dead}&max_replica_lag=1s"),
    ))
    .await
    .unwrap();
    // Past the start-up read-your-writes window (2 s with a 1 s bound).
    wait_until("reads to fall back to the primary", || async {
        let before = lonely.pool_stats().fallback_reads;
        lonely.get_setting("probe").await.unwrap();
        lonely.pool_stats().fallback_reads > before
    })
    .await;
    let before = lonely.pool_stats();
    lonely.list_connections().await.unwrap();
    let after = lonely.pool_stats();
    assert_eq!(after.fallback_reads, before.fallback_reads + 1);
    assert_eq!(after.primary.reads, before.primary.reads + 1);

    // A host list whose only server is a standby has no primary.
    let err = SqlCatalog::connect(&url(set.primary(), &[dead, replica], "failover_timeout=1s"))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::NoPrimary { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{dead}")), "{text}");
    assert!(text.contains("in recovery"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_on_the_promoted_replica_after_the_primary_dies() {
    // Synchronous replication: what was committed is on the replica.
    let mut set = blocking(TestReplicaSet::start_synchronous);
    let primary = set.primary().port();
    let replica = set.replica().port();
    let catalog = SqlCatalog::connect(&url(
        set.primary(),
        &[primary, replica],
        &format!("target_session_attrs=read-write&replicas=127.0.0.1:{replica}&max_replica_lag=2s"),
    ))
    .await
    .unwrap();
    assert_eq!(
        catalog.pool_stats().primary.host,
        format!("127.0.0.1:{primary}")
    );

    let con = catalog
        .create_connection(new_connection("files"), t(0))
        .await
        .unwrap();
    let asset = catalog
        .create_asset(new_asset(&con, "sales", "orders"), t(1))
        .await
        .unwrap();
    for i in 0..20 {
        catalog
            .put_setting(&format!("before_{i}"), json!(i), t(2))
            .await
            .unwrap();
    }

    let killed = Instant::now();
    blocking(|| set.kill_primary());
    blocking(|| set.promote_replica());
    let promoted = Instant::now();

    let deadline = killed + Duration::from_secs(90);
    let mut attempts = 0;
    let mut last_error = None;
    loop {
        attempts += 1;
        match catalog.put_setting("after", json!("failover"), t(3)).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "writes did not resume within 90 s; last error: {e}"
                );
                last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let resumed = killed.elapsed();
    eprintln!(
        "failover: writes resumed {} ms after the kill ({} ms after the promotion finished), \
         {attempts} attempt(s); last error before: {last_error:?}",
        resumed.as_millis(),
        promoted.elapsed().as_millis(),
    );

    let stats = catalog.pool_stats();
    assert_eq!(stats.failovers, 1);
    assert_eq!(stats.primary.host, format!("127.0.0.1:{replica}"));
    let health = stats.replicas[0].replica.clone().unwrap();
    assert!(
        !health.usable && !health.in_recovery,
        "a promoted replica is not read from as a replica: {health:?}"
    );

    // Nothing committed before the kill is lost: ask the same handle and a
    // fresh one on the new primary alone.
    let fresh = SqlCatalog::connect(&url(set.replica(), &[replica], ""))
        .await
        .unwrap();
    for reader in [&catalog, &fresh] {
        for i in 0..20 {
            assert_eq!(
                reader.get_setting(&format!("before_{i}")).await.unwrap(),
                Some(json!(i))
            );
        }
        assert_eq!(
            reader.get_setting("after").await.unwrap(),
            Some(json!("failover"))
        );
        assert_eq!(reader.get_asset(&asset.id).await.unwrap(), asset);
        assert_eq!(reader.get_connection(&con.id).await.unwrap(), con);
    }
    // The handle keeps working for every kind of call.
    catalog.ping().await.unwrap();
    catalog
        .acquire_lease("scheduler", &con.id, Duration::from_secs(10), t(4))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bad_catalog_urls_are_refused_before_connecting_naming_the_parameter() {
    // Hosts that would hang or refuse: the URL is refused before any of
    // them is tried, so this returns at once.
    for (url, parameter) in [
        ("postgres://u@/db", "host"),
        ("postgres://u@h1,,h2/db", "host"),
        ("postgres://u@127.0.0.1:notaport/db", "port"),
        ("postgres://u@127.0.0.1:99999/db", "port"),
        ("postgres://u@127.0.0.1/db?replicas=", "replicas"),
        ("postgres://u@127.0.0.1/db?replicas=r:0", "replicas"),
        (
            "postgres://u@127.0.0.1/db?max_replica_lag=fast",
            "max_replica_lag",
        ),
        (
            "postgres://u@127.0.0.1/db?max_replica_lag=5x",
            "max_replica_lag",
        ),
        (
            "postgres://u@127.0.0.1/db?failover_timeout=0s",
            "failover_timeout",
        ),
        (
            "postgres://u@127.0.0.1/db?target_session_attrs=read-only",
            "target_session_attrs",
        ),
    ] {
        let started = Instant::now();
        match SqlCatalog::connect(url).await {
            Err(CatalogError::InvalidUrl { parameter: p, .. }) => {
                assert_eq!(p, parameter, "{url}")
            }
            other => panic!("{url}: expected InvalidUrl({parameter}), got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
}

#[test]
fn catalog_urls_list_hosts_replicas_and_the_lag_bound() {
    let url = PostgresUrl::parse(
        "postgres://vega:pw@db1:5433,db2,[::1]:5434/catalog?target_session_attrs=read-write\
         &replicas=r1:6000,r2&max_replica_lag=1500&sslmode=require",
    )
    .unwrap();
    let vega_catalog::PrimaryHosts::List(hosts) = url.primary_hosts() else {
        panic!("expected a host list: {url:?}");
    };
    let shown: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["db1:5433", "db2:5432", "[::1]:5434"]);
    let replicas: Vec<String> = url.replicas().iter().map(ToString::to_string).collect();
    assert_eq!(replicas, ["r1:6000", "r2:5432"]);
    assert_eq!(url.max_replica_lag(), Duration::from_millis(1500));
    assert_eq!(
        url.failover_timeout(),
        vega_catalog::DEFAULT_FAILOVER_TIMEOUT
    );
    assert!(!format!("{url:?}").contains(":pw@"));

    let plain = PostgresUrl::parse("postgres://vega@db/catalog").unwrap();
    assert_eq!(
        plain.max_replica_lag(),
        vega_catalog::DEFAULT_MAX_REPLICA_LAG
    );
    assert!(plain.replicas().is_empty());
}

/// Pool numbers on whichever backend this run tests (SQLite: its one pool
/// is the primary).
#[tokio::test]
async fn pool_stats_count_acquires_and_reads_on_the_primary() {
    let f = Fixture::new().await;
    let before = f.catalog.pool_stats();
    f.catalog.put_setting("k", json!(1), t(0)).await.unwrap();
    f.catalog.get_setting("k").await.unwrap();
    f.catalog
        .list_versions(&f.with_asset().await.id)
        .await
        .unwrap();
    let after = f.catalog.pool_stats();
    assert!(after.replicas.is_empty());
    assert_eq!(after.primary.role, PoolRole::Primary);
    if f.url.is_none() {
        assert_eq!(after.primary.host, "sqlite");
    }
    // put_setting, get_setting, two creates and list_versions.
    assert_eq!(after.primary.acquires, before.primary.acquires + 5);
    assert_eq!(after.primary.reads, before.primary.reads + 2);
    assert!(after.primary.acquire_wait >= before.primary.acquire_wait);
    assert!(after.primary.open >= 1);
    assert_eq!(
        after.primary.open,
        after.primary.active + after.primary.idle
    );
    assert_eq!(after.fallback_reads, 0);
    assert_eq!(after.failovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turned_read_only_is_left_for_the_next_writable_host() {
    let a = blocking(TestPostgres::start);
    let b = blocking(TestPostgres::start);
    // `b` gets the schema (a real standby has it by replication) and `a`'s
    // password, so one URL serves both.
    SqlCatalog::connect(&url(&b, &[b.port()], ""))
        .await
        .unwrap()
        .close()
        .await;
    blocking(|| {
        b.execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            a.user(),
            a.password()
        ))
    });
    let catalog = SqlCatalog::connect(&url(&a, &[a.port(), b.port()], ""))
        .await
        .unwrap();
    catalog.put_setting("one", json!(1), t(0)).await.unwrap();
    assert_eq!(
        catalog.pool_stats().primary.host,
        format!("127.0.0.1:{}", a.port())
    );

    // `a` refuses writes from now on (SQLSTATE 25006), as a demoted
    // primary does.
    blocking(|| {
        a.execute("ALTER SYSTEM SET default_transaction_read_only = on");
        a.execute("SELECT pg_reload_conf()");
    });
    wait_until("the new setting to apply", || async {
        blocking(|| a.execute("SHOW default_transaction_read_only")).trim() == "on"
    })
    .await;

    let started = Instant::now();
    catalog
        .put_setting("two", json!(2), t(1))
        .await
        .expect("the write moves to the writable host");
    eprintln!(
        "read-only primary: the write succeeded on the next host after {} ms",
        started.elapsed().as_millis()
    );
    let stats = catalog.pool_stats();
    assert_eq!(stats.failovers, 1);
    assert_eq!(stats.primary.host, format!("127.0.0.1:{}", b.port()));
    assert_eq!(catalog.get_setting("two").await.unwrap(), Some(json!(2)));

    // Closed, the handle fails at once instead of waiting for a primary.
    catalog.close().await;
    let started = Instant::now();
    assert!(catalog.put_setting("three", json!(3), t(2)).await.is_err());
    assert!(catalog.get_setting("two").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

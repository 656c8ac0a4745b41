//! Nodes and leases: heartbeats, the lease state machine (take, renew,
//! refuse, take over after expiry, release) and fencing tokens.

use std::time::Duration;

use vega_catalog::Catalog;
use vega_core::{Id, IdKind, NodeInfo};

use crate::common::{t, Fixture};

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        id: Id::new(IdKind::Node, 1_700_000_000_000),
        name: name.into(),
        roles: vec!["api".into(), "ingest".into()],
        version: "0.1.0".into(),
        api_url: Some("http://127.0.0.1:50013".into()),
        started_at: t(0),
        heartbeat_at: t(0),
    }
}

const TTL: Duration = Duration::from_secs(10);

#[tokio::test]
async fn heartbeats_upsert_nodes_and_removal_frees_their_leases() {
    let f = Fixture::new().await;
    let mut a = node("a");
    f.catalog.heartbeat_node(&a).await.unwrap();
    a.heartbeat_at = t(5);
    f.catalog.heartbeat_node(&a).await.unwrap();
    f.catalog.heartbeat_node(&node("b")).await.unwrap();
    let nodes = f.catalog.list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0], a);
    f.catalog
        .acquire_lease("scheduler", &a.id, TTL, t(5))
        .await
        .unwrap()
        .unwrap();
    f.catalog.remove_node(&a.id).await.unwrap();
    assert_eq!(f.catalog.list_nodes().await.unwrap().len(), 1);
    assert!(f.catalog.list_leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lease_is_held_by_one_node_until_it_expires_and_changes_hands_with_a_new_token() {
    let f = Fixture::new().await;
    let (a, b) = (node("a").id, node("b").id);
    let first = f
        .catalog
        .acquire_lease("scheduler", &a, TTL, t(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.token, 1);
    assert_eq!(first.holder, a);
    // Held: b is refused; a renews and keeps its token.
    assert!(f
        .catalog
        .acquire_lease("scheduler", &b, TTL, t(5))
        .await
        .unwrap()
        .is_none());
    let renewed = f
        .catalog
        .acquire_lease("scheduler", &a, TTL, t(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.token, 1);
    assert_eq!(renewed.expires_at, t(16));
    assert!(f
        .catalog
        .acquire_lease("scheduler", &b, TTL, t(15))
        .await
        .unwrap()
        .is_none());
    // Expired: b takes over with the next token; a's late work is fenced off.
    let taken = f
        .catalog
        .acquire_lease("scheduler", &b, TTL, t(17))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.token, 2);
    assert_eq!(taken.acquired_at, t(17));
    assert!(!f
        .catalog
        .holds_lease("scheduler", &a, 1, t(17))
        .await
        .unwrap());
    assert!(f
        .catalog
        .holds_lease("scheduler", &b, 2, t(17))
        .await
        .unwrap());
    assert!(f
        .catalog
        .acquire_lease("scheduler", &a, TTL, t(18))
        .await
        .unwrap()
        .is_none());
    // Leases are independent.
    let other = f
        .catalog
        .acquire_lease("stream:x", &a, TTL, t(18))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.token, 1);
}

#[tokio::test]
async fn a_released_lease_goes_to_the_next_node_at_once() {
    let f = Fixture::new().await;
    let (a, b) = (node("a").id, node("b").id);
    f.catalog
        .acquire_lease("scheduler", &a, TTL, t(0))
        .await
        .unwrap()
        .unwrap();
    // Only the holder can release it.
    f.catalog
        .release_lease("scheduler", &b, t(1))
        .await
        .unwrap();
    assert!(f
        .catalog
        .acquire_lease("scheduler", &b, TTL, t(1))
        .await
        .unwrap()
        .is_none());
    f.catalog
        .release_lease("scheduler", &a, t(1))
        .await
        .unwrap();
    let next = f
        .catalog
        .acquire_lease("scheduler", &b, TTL, t(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.token, 2);
    assert!(!f
        .catalog
        .holds_lease("scheduler", &a, 1, t(1))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_racing_for_a_lease_get_it_exactly_once() {
    let f = Fixture::new().await;
    let catalog = std::sync::Arc::new(f.catalog);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let catalog = catalog.clone();
        tasks.push(tokio::spawn(async move {
            let me = Id::new(IdKind::Node, 1_700_000_000_000 + i);
            catalog
                .acquire_lease("leader", &me, TTL, t(0))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let leases = catalog.list_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].token, 1);
}

//! Connections: create, read, list, update, enable/disable, delete.

use serde_json::json;
use vega_catalog::{Catalog, ConnectionUpdate};
use vega_core::{Id, IdKind};

use crate::common::{assert_conflict, assert_not_found, new_connection, t, Fixture};

#[tokio::test]
async fn created_connection_reads_back_by_id_and_by_name() {
    let f = Fixture::new().await;
    let created = f.connection("files").await;
    assert!(created.id.as_str().starts_with("con_"));
    assert_eq!(
        f.catalog.get_connection(&created.id).await.unwrap(),
        created
    );
    assert_eq!(
        f.catalog.get_connection_by_name("files").await.unwrap(),
        created
    );
}

#[tokio::test]
async fn new_connection_is_enabled_and_stamped() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    assert!(c.enabled);
    assert_eq!(c.created_at, t(0));
    assert_eq!(c.updated_at, t(0));
    assert_eq!(c.params, json!({"root": "/data"}));
}

#[tokio::test]
async fn duplicate_connection_name_is_a_conflict_naming_it() {
    let f = Fixture::new().await;
    let first = f.connection("files").await;
    let result = f
        .catalog
        .create_connection(new_connection("files"), t(5))
        .await;
    let existing = assert_conflict(result, "connection 'files' already exists");
    assert_eq!(existing.as_deref(), Some(first.id.as_str()));
}

#[tokio::test]
async fn unknown_connection_id_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::Connection, 1);
    assert_not_found(
        f.catalog.get_connection(&id).await,
        "connection",
        id.as_str(),
    );
    assert_not_found(
        f.catalog
            .update_connection(&id, ConnectionUpdate::default(), t(1))
            .await,
        "connection",
        id.as_str(),
    );
    assert_not_found(
        f.catalog.set_connection_enabled(&id, false, t(1)).await,
        "connection",
        id.as_str(),
    );
    assert_not_found(
        f.catalog.delete_connection(&id).await,
        "connection",
        id.as_str(),
    );
}

#[tokio::test]
async fn unknown_connection_name_is_not_found() {
    let f = Fixture::new().await;
    assert_not_found(
        f.catalog.get_connection_by_name("nope").await,
        "connection",
        "nope",
    );
}

#[tokio::test]
async fn connections_are_listed_by_name() {
    let f = Fixture::new().await;
    for name in ["zeta", "alpha", "mid"] {
        f.connection(name).await;
    }
    let names: Vec<String> = f
        .catalog
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[tokio::test]
async fn update_changes_only_the_given_fields() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    let update = ConnectionUpdate {
        name: None,
        params: Some(json!({"root": "/srv"})),
    };
    let updated = f
        .catalog
        .update_connection(&c.id, update, t(9))
        .await
        .unwrap();
    assert_eq!(updated.name, "files");
    assert_eq!(updated.params, json!({"root": "/srv"}));
    assert_eq!(updated.created_at, t(0));
    assert_eq!(updated.updated_at, t(9));
    assert_eq!(f.catalog.get_connection(&c.id).await.unwrap(), updated);
}

#[tokio::test]
async fn rename_moves_the_name() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    let update = ConnectionUpdate {
        name: Some("archive".into()),
        params: None,
    };
    f.catalog
        .update_connection(&c.id, update, t(2))
        .await
        .unwrap();
    assert_eq!(
        f.catalog
            .get_connection_by_name("archive")
            .await
            .unwrap()
            .id,
        c.id
    );
    assert_not_found(
        f.catalog.get_connection_by_name("files").await,
        "connection",
        "files",
    );
}

#[tokio::test]
async fn rename_to_a_taken_name_is_a_conflict() {
    let f = Fixture::new().await;
    let a = f.connection("a").await;
    let b = f.connection("b").await;
    let update = ConnectionUpdate {
        name: Some("a".into()),
        params: None,
    };
    let existing = assert_conflict(
        f.catalog.update_connection(&b.id, update, t(2)).await,
        "connection 'a' already exists",
    );
    assert_eq!(existing.as_deref(), Some(a.id.as_str()));
    assert_eq!(f.catalog.get_connection(&b.id).await.unwrap().name, "b");
}

#[tokio::test]
async fn disabling_and_enabling_is_stored_and_stamped() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    let off = f
        .catalog
        .set_connection_enabled(&c.id, false, t(3))
        .await
        .unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updated_at, t(3));
    assert!(!f.catalog.get_connection(&c.id).await.unwrap().enabled);
    let on = f
        .catalog
        .set_connection_enabled(&c.id, true, t(4))
        .await
        .unwrap();
    assert!(on.enabled);
    assert!(f.catalog.get_connection(&c.id).await.unwrap().enabled);
}

#[tokio::test]
async fn deleted_connection_is_gone() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    f.catalog.delete_connection(&c.id).await.unwrap();
    assert_not_found(
        f.catalog.get_connection(&c.id).await,
        "connection",
        c.id.as_str(),
    );
    assert!(f.catalog.list_connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_connection_in_use_is_a_conflict_counting_its_assets() {
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    f.asset(&c, "sales", "orders").await;
    f.asset(&c, "sales", "items").await;
    assert_conflict(
        f.catalog.delete_connection(&c.id).await,
        "connection 'files'",
    );
    let message = f
        .catalog
        .delete_connection(&c.id)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("used by 2 assets"), "{message}");
    assert!(message.contains("sales.items, sales.orders"), "{message}");
    assert!(f.catalog.get_connection(&c.id).await.is_ok());
}

#[tokio::test]
async fn returned_times_equal_the_stored_millisecond_times() {
    let f = Fixture::new().await;
    let now = t(0) + chrono::Duration::nanoseconds(123_456_789);
    let c = f
        .catalog
        .create_connection(new_connection("files"), now)
        .await
        .unwrap();
    assert_eq!(c.created_at, t(0) + chrono::Duration::milliseconds(123));
    assert_eq!(f.catalog.get_connection(&c.id).await.unwrap(), c);
}

//! API keys: create, find by secret hash, list, delete.

use vega_catalog::Catalog;
use vega_core::{Id, IdKind, Role};

use crate::common::{assert_conflict, assert_not_found, t, Fixture};

fn hash(n: u8) -> String {
    format!("{:064x}", u64::from(n) + 0xabc)
}

#[tokio::test]
async fn api_key_is_found_by_its_secret_hash() {
    let f = Fixture::new().await;
    let key = f
        .catalog
        .create_api_key("ci", Role::Operator, &hash(1), t(1))
        .await
        .unwrap();
    assert!(key.id.as_str().starts_with("key_"));
    assert_eq!(key.role, Role::Operator);
    assert_eq!(
        f.catalog.find_api_key_by_hash(&hash(1)).await.unwrap(),
        Some(key)
    );
}

#[tokio::test]
async fn unknown_secret_hash_finds_nothing() {
    let f = Fixture::new().await;
    f.catalog
        .create_api_key("ci", Role::Reader, &hash(1), t(1))
        .await
        .unwrap();
    assert_eq!(
        f.catalog.find_api_key_by_hash(&hash(2)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn duplicate_api_key_name_is_a_conflict_naming_it() {
    let f = Fixture::new().await;
    let first = f
        .catalog
        .create_api_key("ci", Role::Reader, &hash(1), t(1))
        .await
        .unwrap();
    let existing = assert_conflict(
        f.catalog
            .create_api_key("ci", Role::Admin, &hash(2), t(2))
            .await,
        "API key 'ci' already exists",
    );
    assert_eq!(existing.as_deref(), Some(first.id.as_str()));
}

#[tokio::test]
async fn duplicate_secret_hash_is_a_conflict_without_the_hash() {
    let f = Fixture::new().await;
    f.catalog
        .create_api_key("ci", Role::Reader, &hash(1), t(1))
        .await
        .unwrap();
    let result = f
        .catalog
        .create_api_key("other", Role::Reader, &hash(1), t(2))
        .await;
    let message = result.as_ref().unwrap_err().to_string();
    assert!(!message.contains(&hash(1)), "{message}");
    assert_conflict(result, "already has this secret");
}

#[tokio::test]
async fn api_keys_are_listed_by_name() {
    let f = Fixture::new().await;
    f.catalog
        .create_api_key("zed", Role::Reader, &hash(1), t(1))
        .await
        .unwrap();
    f.catalog
        .create_api_key("amy", Role::Admin, &hash(2), t(2))
        .await
        .unwrap();
    let names: Vec<String> = f
        .catalog
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["amy", "zed"]);
}

#[tokio::test]
async fn deleted_api_key_no_longer_authenticates() {
    let f = Fixture::new().await;
    let key = f
        .catalog
        .create_api_key("ci", Role::Writer, &hash(1), t(1))
        .await
        .unwrap();
    f.catalog.delete_api_key(&key.id).await.unwrap();
    assert_eq!(
        f.catalog.find_api_key_by_hash(&hash(1)).await.unwrap(),
        None
    );
    assert!(f.catalog.list_api_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_an_unknown_api_key_is_not_found() {
    let f = Fixture::new().await;
    let id = Id::new(IdKind::ApiKey, 1);
    assert_not_found(f.catalog.delete_api_key(&id).await, "API key", id.as_str());
}

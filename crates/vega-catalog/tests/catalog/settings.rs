//! Settings: a key → JSON value store.

use serde_json::json;
use vega_catalog::Catalog;

use crate::common::{t, Fixture};

#[tokio::test]
async fn missing_setting_is_none() {
    let f = Fixture::new().await;
    assert_eq!(f.catalog.get_setting("rate_limit").await.unwrap(), None);
}

#[tokio::test]
async fn setting_round_trips() {
    let f = Fixture::new().await;
    let value = json!({"per_key": {"rps": 50, "burst": 100}, "enabled": true});
    f.catalog
        .put_setting("rate_limit", value.clone(), t(1))
        .await
        .unwrap();
    assert_eq!(
        f.catalog.get_setting("rate_limit").await.unwrap(),
        Some(value)
    );
}

#[tokio::test]
async fn putting_a_setting_again_replaces_it() {
    let f = Fixture::new().await;
    f.catalog
        .put_setting("cache", json!(1), t(1))
        .await
        .unwrap();
    f.catalog
        .put_setting("cache", json!("off"), t(2))
        .await
        .unwrap();
    assert_eq!(
        f.catalog.get_setting("cache").await.unwrap(),
        Some(json!("off"))
    );
}

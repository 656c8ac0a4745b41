//! Stored values that do not decode are reported as corrupt, naming the
//! table and column.

use vega_catalog::{Catalog, CatalogError};

use crate::common::on_postgres;
use crate::common::{t, Fixture};

#[tokio::test]
async fn a_negative_stored_count_is_corrupt() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(vega_core::JobKind::Sync, None, serde_json::json!({}), t(1))
        .await
        .unwrap();
    let raw = f.raw().await;
    sqlx::query("UPDATE jobs SET attempts = -1 WHERE id = $1")
        .bind(job.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    match f.catalog.get_job(&job.id).await {
        Err(CatalogError::Corrupt { table, message }) => {
            assert_eq!(table, "jobs");
            assert!(message.contains("attempts"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_boolean_other_than_zero_or_one_is_corrupt() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let c = f.connection("files").await;
    let raw = f.raw().await;
    sqlx::query("UPDATE connections SET enabled = 7 WHERE id = $1")
        .bind(c.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    match f.catalog.get_connection(&c.id).await {
        Err(CatalogError::Corrupt { table, message }) => {
            assert_eq!(table, "connections");
            assert!(message.contains("enabled"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_stored_state_is_corrupt() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let job = f
        .catalog
        .start_job(vega_core::JobKind::Sync, None, serde_json::json!({}), t(1))
        .await
        .unwrap();
    let raw = f.raw().await;
    sqlx::query("UPDATE jobs SET state = 'exploded' WHERE id = $1")
        .bind(job.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    let err = f.catalog.get_job(&job.id).await.unwrap_err();
    assert!(err.to_string().contains("'exploded'"), "{err}");
}

#[tokio::test]
async fn a_stored_watermark_that_is_not_json_is_corrupt() {
    if on_postgres() {
        return; // looks at the SQLite file itself
    }
    let f = Fixture::new().await;
    let a = f.with_asset().await;
    let raw = f.raw().await;
    sqlx::query("UPDATE assets SET watermark_json = '{not json' WHERE id = $1")
        .bind(a.id.as_str())
        .execute(&raw)
        .await
        .unwrap();
    match f.catalog.get_asset(&a.id).await {
        Err(CatalogError::Corrupt { table, message }) => {
            assert_eq!(table, "assets");
            assert!(message.contains("watermark_json"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

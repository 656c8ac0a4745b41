//! Where a repository lives in an S3-compatible bucket: the storage
//! crate's [`S3Options`] (one client builder for segments, logs and
//! backups). The secret key never appears in `Debug` output.

pub use vega_storage::S3Options;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let options = S3Options {
            bucket: "b".into(),
            secret_access_key: Some("hunter2".into()),
            ..Default::default()
        };
        let text = format!("{options:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

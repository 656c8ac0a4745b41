//! Where a repository lives in an S3-compatible bucket. The secret key
//! never appears in `Debug` output.

/// How to reach the S3-compatible bucket of a repository.
#[derive(Clone, Default)]
pub struct S3Options {
    /// The bucket's name.
    pub bucket: String,
    /// Object name prefix of the repository inside the bucket; may be empty.
    pub prefix: String,
    /// `http://127.0.0.1:9000` for a local server; `None` for AWS.
    pub endpoint: Option<String>,
    /// The bucket's region (any value for most local servers).
    pub region: String,
    /// The access key; `None` to take credentials from the environment.
    pub access_key_id: Option<String>,
    /// The secret key; never shown by `Debug`.
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP (a local server).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

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

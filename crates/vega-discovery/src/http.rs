//! The HTTP client shared by the etcd and Consul providers: bounded
//! timeouts, base-URL normalization, and transport errors as
//! [`DiscoveryError::Unavailable`].

use std::time::Duration;

use crate::DiscoveryError;

/// Connect timeout: a registry on the LAN or loopback accepts within
/// milliseconds; two seconds tolerates a loaded host but moves on to the
/// next etcd endpoint quickly when one is down.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whole-request timeout: registry requests are small; five seconds is
/// longer than any healthy answer and shorter than the smallest useful
/// keep-alive interval of a few seconds times the three tries per TTL.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The client, built once per provider.
pub(crate) fn client(provider: &'static str) -> Result<reqwest::Client, DiscoveryError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| DiscoveryError::InvalidSettings {
            provider,
            message: format!("building the HTTP client: {}", chain(&e)),
        })
}

/// `http://host:port` from `host:port` or a URL; trailing slashes removed.
/// `https://` is refused: this build speaks plain HTTP only.
pub(crate) fn base_url(provider: &'static str, address: &str) -> Result<String, DiscoveryError> {
    let address = address.trim().trim_end_matches('/');
    let invalid = |message: String| DiscoveryError::InvalidSettings { provider, message };
    if address.is_empty() {
        return Err(invalid("the address is empty".into()));
    }
    if address.starts_with("https://") {
        return Err(invalid(format!(
            "{address:?}: TLS is not supported; use http:// (a local agent or proxy)"
        )));
    }
    let url = if address.starts_with("http://") {
        address.to_string()
    } else if address.contains("://") {
        return Err(invalid(format!("{address:?}: only http:// is supported")));
    } else {
        format!("http://{address}")
    };
    reqwest::Url::parse(&url).map_err(|e| invalid(format!("{address:?}: {e}")))?;
    Ok(url)
}

/// A failed request (no answer, timeout, broken body) as `Unavailable`.
pub(crate) fn transport_error(
    provider: &'static str,
    endpoint: &str,
    error: &reqwest::Error,
) -> DiscoveryError {
    DiscoveryError::Unavailable {
        provider,
        endpoint: endpoint.to_string(),
        message: chain(error),
    }
}

/// The error with its sources (reqwest's own message omits the cause,
/// e.g. "connection refused").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Percent-encodes one URL path segment (everything but RFC 3986's
/// unreserved characters).
pub(crate) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A short, single-line excerpt of a response body for an error message.
pub(crate) fn excerpt(body: &str) -> String {
    /// Enough for any registry's error message; bounds what a proxy's HTML
    /// page adds to a log line.
    const MAX_EXCERPT_CHARS: usize = 300;
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(
            base_url("etcd", "127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            base_url("etcd", "http://etcd-1:2379/").unwrap(),
            "http://etcd-1:2379"
        );
        assert!(base_url("etcd", "https://etcd-1:2379").is_err());
        assert!(base_url("etcd", "unix:///run/etcd").is_err());
        assert!(base_url("etcd", "").is_err());
    }

    #[test]
    fn path_segments_escape_reserved_characters() {
        assert_eq!(path_segment("service:a b/c"), "service%3Aa%20b%2Fc");
        assert_eq!(path_segment("vega-gateway_1.x~"), "vega-gateway_1.x~");
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        assert_eq!(excerpt(&"x".repeat(1000)).chars().count(), 301);
    }
}

//! Network addresses written in the configuration: `host:port` (load
//! balancer backends, static service lists, DNS A records) and `http(s)://`
//! URLs (Trino coordinators, etcd endpoints, the Consul agent, health-check
//! URLs). Parsing says what is wrong in words meant for the person editing
//! the file.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How a `host:port` address is written, quoted in error messages.
const ADDRESS_SHAPE: &str = "write host:port, e.g. 10.0.0.5:50013, vega-1:50013 or [fd00::5]:50013";

/// How a URL is written, quoted in error messages.
const URL_SHAPE: &str = "write http://host:port or https://host:port, e.g. http://10.0.0.5:8080";

/// The host part of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved when it is used.
    Name(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Whether the host is a name that must be resolved.
    pub fn is_name(&self) -> bool {
        matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A parsed `host:port` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddress {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parses `host:port`: a DNS name, an IPv4 address or a bracketed IPv6
/// address, then a port from 1 to 65535. The error says what is wrong.
pub fn parse_address(text: &str) -> Result<BackendAddress, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("\"{text}\" has no port; {ADDRESS_SHAPE}"));
    };
    let port = parse_port(port).map_err(|why| format!("\"{text}\": {why}"))?;
    let host = parse_host(text, host, ADDRESS_SHAPE)?;
    Ok(BackendAddress { host, port })
}

/// The host of `text` (quoted in messages): a bracketed IPv6 address, an
/// IPv4 address or an RFC 1123 name.
fn parse_host(text: &str, host: &str, shape: &str) -> Result<Host, String> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("\"{text}\": unclosed bracket; {shape}"))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("\"{text}\": \"{inner}\" is not an IPv6 address"))?;
        return Ok(Host::Ipv6(ip));
    }
    if host.contains(':') {
        return Err(format!(
            "\"{text}\": an IPv6 address must be written in brackets, e.g. [fd00::5]:50013"
        ));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(ip));
    }
    if host.is_empty() {
        return Err(format!("\"{text}\" has no host; {shape}"));
    }
    if is_dns_name(host) {
        if host
            .split('.')
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("\"{text}\": \"{host}\" is not an IPv4 address"));
        }
        return Ok(Host::Name(host.to_string()));
    }
    Err(format!(
        "\"{text}\": \"{host}\" is not a host name (letters, digits, '-' and '.', \
         labels of at most 63 characters) nor an IP address"
    ))
}

/// A port from 1 to 65535.
fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("the port is missing".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port \"{text}\" is not a number"));
    }
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(format!("port {text} is out of range (1 to 65535)")),
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and
/// hyphens, not starting or ending with a hyphen.
pub(crate) fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Whether the scheme is `https`.
    pub https: bool,
    pub host: Host,
    /// The port written, or the scheme's (80, 443).
    pub port: u16,
    /// Everything after the host and port (path and query), possibly empty.
    pub path: String,
}

/// Parses an `http://` or `https://` URL with a host, an optional port and
/// an optional path and query. Credentials in the URL (`user@host`),
/// fragments, spaces and control characters are refused. The error says
/// what is wrong.
pub fn parse_http_url(text: &str) -> Result<HttpUrl, String> {
    let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
        (false, rest)
    } else {
        return Err(format!("\"{text}\" is not an http(s) URL; {URL_SHAPE}"));
    };
    if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{}\" contains {bad:?}; percent-encode it",
            text.escape_debug()
        ));
    }
    if text.contains('#') {
        return Err(format!(
            "\"{text}\" has a fragment (#…), which is never sent"
        ));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(format!(
            "\"{text}\" carries credentials; put them in the settings meant for them, \
             never in the URL (it is printed)"
        ));
    }
    let default_port = if https { 443 } else { 80 };
    // A port follows the last ':' unless that ':' is inside an IPv6 address.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = parse_port(port).map_err(|why| format!("\"{text}\": {why}"))?;
            (host, port)
        }
        _ => (authority, default_port),
    };
    let host = parse_host(text, host, URL_SHAPE)?;
    Ok(HttpUrl {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            parse_address("gateway-1:8080"),
            Ok(BackendAddress {
                host: Host::Name("gateway-1".into()),
                port: 8080
            })
        );
        assert_eq!(
            parse_address("10.0.0.5:50013").map(|a| a.host),
            Ok(Host::Ipv4(Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert_eq!(
            parse_address("[fd00::5]:50013").map(|a| a.to_string()),
            Ok("[fd00::5]:50013".into())
        );
        assert_eq!(
            parse_address("vega.svc.cluster.local.:1").map(|a| a.port),
            Ok(1)
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (address, expect) in [
            ("gateway-1", "has no port"),
            ("gateway-1:", "the port is missing"),
            (":8080", "has no host"),
            ("gateway-1:http", "is not a number"),
            ("gateway-1:0", "out of range"),
            ("gateway-1:65536", "out of range"),
            ("fd00::5:80", "in brackets"),
            ("[fd00::5:80", "unclosed bracket"),
            ("[zz::1]:80", "is not an IPv6 address"),
            ("300.1.1.1:80", "is not an IPv4 address"),
            ("under_score:80", "is not a host name"),
            ("-lead:80", "is not a host name"),
            ("a b:80", "is not a host name"),
        ] {
            let err = parse_address(address).expect_err(address);
            assert!(err.contains(expect), "{address}: {err}");
        }
    }

    #[test]
    fn urls_parse_scheme_host_port_and_path() {
        let url = parse_http_url("http://trino-1:8080").unwrap();
        assert!(!url.https);
        assert_eq!(url.host, Host::Name("trino-1".into()));
        assert_eq!((url.port, url.path.as_str()), (8080, ""));
        let url = parse_http_url("HTTPS://[fd00::1]/v1/info?x=1").unwrap();
        assert!(url.https);
        assert_eq!(url.host.to_string(), "[fd00::1]");
        assert_eq!((url.port, url.path.as_str()), (443, "/v1/info?x=1"));
        assert_eq!(parse_http_url("http://10.0.0.1").unwrap().port, 80);
        assert_eq!(parse_http_url("http://[::1]:2379").unwrap().port, 2379);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expect) in [
            ("trino-1:8080", "is not an http(s) URL"),
            ("ftp://trino-1", "is not an http(s) URL"),
            ("http://", "has no host"),
            ("http://:8080", "has no host"),
            ("http://a:b@trino-1:8080", "carries credentials"),
            ("http://trino-1:99999", "out of range"),
            ("http://trino 1:8080", "contains ' '"),
            ("http://trino-1/#top", "fragment"),
            ("http://under_score", "is not a host name"),
            ("http://fd00::1/", "in brackets"),
        ] {
            let err = parse_http_url(url).expect_err(url);
            assert!(err.contains(expect), "{url}: {err}");
        }
    }
}

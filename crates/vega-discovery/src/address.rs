//! `host:port` strings: split into parts and joined back, with IPv6
//! literals in brackets (`[::1]:8080`).

use std::net::Ipv6Addr;

/// Splits `host:port`; the host may be a name, an IPv4 literal or a
/// bracketed IPv6 literal (returned without brackets).
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{address:?} has '[' without ']'"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{address:?} has no port after ']'"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} in {address:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("{address:?} is not host:port"))?;
        if host.contains(':') {
            return Err(format!(
                "{address:?}: write an IPv6 address in brackets, as [::1]:8080"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("{address:?} has no host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} in {address:?} is not a port number"))?;
    Ok((host.to_string(), port))
}

/// Joins a host and a port, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            split_host_port("node-1.example:8080").unwrap(),
            ("node-1.example".to_string(), 8080)
        );
        assert_eq!(
            split_host_port("10.0.0.1:80").unwrap(),
            ("10.0.0.1".to_string(), 80)
        );
        assert_eq!(
            split_host_port("[::1]:8080").unwrap(),
            ("::1".to_string(), 8080)
        );
    }

    #[test]
    fn refuses_missing_ports_bare_ipv6_and_bad_numbers() {
        for bad in [
            "host", "::1:8080", "[::1]", "[nope]:1", ":80", "h:70000", "h:x",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_back_with_brackets_for_ipv6() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("a.b", 80), "a.b:80");
    }
}

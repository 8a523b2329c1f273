//! `host:port` settings such as `PILOT_REGISTRY`, split for `connect()`.

/// Splits `host:port` (or `[v6]:port`) into the host `connect()` takes and the port.
/// `None` when the port is missing or not a number, or the host is empty.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn splits_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            split_host_port("registry.example.com:9000"),
            Some(("registry.example.com".to_string(), 9000))
        );
        assert_eq!(
            split_host_port("127.0.0.1:9000"),
            Some(("127.0.0.1".to_string(), 9000))
        );
        assert_eq!(
            split_host_port("[::1]:9000"),
            Some(("::1".to_string(), 9000))
        );
    }

    #[test]
    fn refuses_missing_or_bad_ports_and_empty_hosts() {
        assert_eq!(split_host_port("registry.example.com"), None);
        assert_eq!(split_host_port("host:"), None);
        assert_eq!(split_host_port("host:70000"), None);
        assert_eq!(split_host_port("host:port"), None);
        assert_eq!(split_host_port(":9000"), None);
        assert_eq!(split_host_port("[]:9000"), None);
    }
}

//! Pure rendering of a container's /etc/hosts and /etc/resolv.conf, and
//! validation of the --add-host / --dns values they are built from.

use super::NetworkError;
use std::net::IpAddr;

/// Docker's public fallback when the host has only loopback resolvers
/// (which a container in its own netns cannot reach).
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// Parses `--add-host NAME:IP` (the IP may be IPv6, so split at the first ':').
pub(crate) fn parse_add_host(s: &str) -> Result<(String, IpAddr), NetworkError> {
    let bad = || NetworkError::Invalid(format!("invalid --add-host {s:?}: expected NAME:IP"));
    let (name, ip) = s.split_once(':').ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    // The name becomes a field of /etc/hosts: no separator, no control byte.
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    Ok((name.to_string(), ip))
}

/// Parses a `--dns` server address.
pub(crate) fn parse_dns(s: &str) -> Result<IpAddr, NetworkError> {
    s.parse()
        .map_err(|_| NetworkError::Invalid(format!("invalid --dns {s:?}: expected an IP address")))
}

/// /etc/hosts: localhost lines, the --add-host entries, then each own address
/// with the hostname (and the container name when it differs).
/// Malformed --add-host entries are skipped (they are refused at allocation).
pub fn etc_hosts(hostname: &str, name: &str, own_ips: &[IpAddr], add_hosts: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (h, ip) in add_hosts.iter().filter_map(|s| parse_add_host(s).ok()) {
        out.push_str(&format!("{ip}\t{h}\n"));
    }
    let names = if name.is_empty() || name == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {name}")
    };
    for ip in own_ips {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// /etc/resolv.conf: the --dns servers, else the host's non-loopback
/// nameservers (from `host_resolv`, the host file's content), else Docker's
/// public fallback. The host's search and options lines are kept.
pub fn resolv_conf(dns: &[String], host_resolv: &str) -> String {
    let mut servers: Vec<String> = dns.to_vec();
    let mut rest = vec![];
    for line in host_resolv.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") if dns.is_empty() => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    if !ip.is_loopback() {
                        servers.push(ip.to_string());
                    }
                }
            }
            Some("search") | Some("domain") | Some("options") => rest.push(line.to_string()),
            _ => {}
        }
    }
    if servers.is_empty() {
        servers = FALLBACK_DNS.iter().map(|s| s.to_string()).collect();
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for l in rest {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_extras_and_own_address() {
        let h = etc_hosts(
            "abc123",
            "web",
            &["10.88.0.2".parse().unwrap()],
            &["db:10.0.0.5".into(), "v6:::1".into()],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.0.0.5\tdb\n"));
        assert!(h.contains("\n::1\tv6\n"));
        assert!(h.ends_with("\n10.88.0.2\tabc123 web\n"), "{h}");
        let h = etc_hosts("web", "web", &[], &[]);
        assert!(!h.contains("web"), "no address, no own line: {h}");
    }

    #[test]
    fn add_host_and_dns_validation() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".parse().unwrap())
        );
        assert!(parse_add_host("db:[2001:db8::1]").is_ok());
        for bad in [
            "db",
            "db:",
            ":1.2.3.4",
            "db:notanip",
            "a b:1.2.3.4",
            "a\u{1b}[2J:1.2.3.4",
        ] {
            let e = parse_add_host(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid --add-host"), "{e}");
        }
        assert!(parse_dns("1.1.1.1").is_ok());
        assert!(parse_dns("dns.example").is_err());
    }

    #[test]
    fn resolv_prefers_dns_flag_then_host_non_loopback_then_fallback() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\noptions ndots:2\n";
        assert_eq!(
            resolv_conf(&[], host),
            "nameserver 192.0.2.1\nsearch lan\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf(&["203.0.113.9".into()], host),
            "nameserver 203.0.113.9\nsearch lan\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf(&[], "nameserver 127.0.0.53\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}

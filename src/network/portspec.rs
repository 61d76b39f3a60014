//! `-p/--publish` parsing into port mappings, host-port conflict rules and the
//! choice of a free ephemeral host port; pure, the store enforces uniqueness.

use super::NetworkError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl FromStr for Proto {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Proto, NetworkError> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(NetworkError::Invalid(format!(
                "invalid protocol {s:?}: expected tcp or udp"
            ))),
        }
    }
}

/// One published port as the user asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// 0.0.0.0 = every host address (IPv6 ones too when the container has
    /// an IPv6 address); `::` = every IPv6 host address.
    pub host_ip: IpAddr,
    /// None = pick a free ephemeral port at allocation time.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

/// What a mapping occupies on the host once its port is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostBinding {
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl From<(Proto, IpAddr, u16)> for HostBinding {
    fn from((proto, host_ip, host_port): (Proto, IpAddr, u16)) -> HostBinding {
        HostBinding {
            proto,
            host_ip,
            host_port,
        }
    }
}

impl PortMapping {
    /// The host side, if the host port is already chosen.
    #[cfg(test)]
    pub fn binding(&self) -> Option<HostBinding> {
        self.host_port.map(|host_port| HostBinding {
            proto: self.proto,
            host_ip: self.host_ip,
            host_port,
        })
    }
}

/// Linux's default ephemeral range (net.ipv4.ip_local_port_range), where
/// Docker also picks ports for `-p CTRPORT`.
pub(crate) const EPHEMERAL_PORTS: RangeInclusive<u16> = 32768..=60999;

/// Environment variable narrowing the range of `-p CTRPORT` ports, as `LO-HI`
/// (e.g. `MINIRT_PORT_RANGE=40000-40999`): for hosts that reserve part of the
/// ephemeral range, and for tests that exhaust it.
pub(crate) const PORT_RANGE_ENV: &str = "MINIRT_PORT_RANGE";

/// Parses a `LO-HI` port range (1 <= LO <= HI <= 65535).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, NetworkError> {
    let bad = || {
        NetworkError::Invalid(format!(
            "invalid {PORT_RANGE_ENV} {s:?}: expected LO-HI with 1 <= LO <= HI <= 65535"
        ))
    };
    let (lo, hi) = s.trim().split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// The range `-p CTRPORT` picks from: MINIRT_PORT_RANGE if set, else
/// EPHEMERAL_PORTS.
pub(crate) fn ephemeral_ports() -> Result<RangeInclusive<u16>, NetworkError> {
    match std::env::var(PORT_RANGE_ENV) {
        Ok(v) => parse_port_range(&v),
        Err(_) => Ok(EPHEMERAL_PORTS),
    }
}

/// Two bindings collide when protocol and port match and the addresses are
/// equal or either one is a wildcard (0.0.0.0 takes every address of both
/// families, `::` is refused next to it for the same reason).
pub(crate) fn conflicts(a: HostBinding, b: HostBinding) -> bool {
    a.proto == b.proto
        && a.host_port == b.host_port
        && (a.host_ip == b.host_ip || a.host_ip.is_unspecified() || b.host_ip.is_unspecified())
}

/// The lowest port in `range` not in `used_sorted` (ascending; duplicates and
/// values outside the range are tolerated). The caller passes the ports taken
/// for the same protocol on the same address or the wildcard. O(used).
pub(crate) fn pick_free_port(
    used_sorted: impl IntoIterator<Item = u16>,
    range: RangeInclusive<u16>,
) -> Option<u16> {
    let (mut cand, last) = (*range.start(), *range.end());
    if cand > last {
        return None;
    }
    for used in used_sorted {
        if used < cand {
            continue;
        }
        if used > cand {
            break;
        }
        if cand == last {
            return None;
        }
        cand += 1;
    }
    Some(cand)
}

/// Parse one `-p` value:
/// `[HOSTIP:][HOSTPORT:]CTRPORT[/tcp|/udp]`, `HOSTIP::CTRPORT`, and ranges
/// `8000-8002:80-82` or `80-82`. A host range with a single container port
/// (Docker: pick one port of the range) is refused with an explicit error.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, NetworkError> {
    let bad = |why: String| NetworkError::Invalid(format!("invalid port mapping {spec:?}: {why}"));
    let (body, proto) = match spec.rsplit_once('/') {
        Some((body, p)) => (body, p.parse::<Proto>().map_err(|e| bad(e.to_string()))?),
        None => (spec, Proto::Tcp),
    };
    // `[V6]:HOSTPORT:CTRPORT` and `[V6]::CTRPORT`: the brackets keep the
    // address's colons apart from the separators.
    let (v6, body) = match body.strip_prefix('[') {
        Some(rest) => {
            let (a, tail) = rest
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after the IPv6 address".into()))?;
            let ip = a
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad(format!("{a:?} is not an IPv6 address")))?;
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':' after ']'".into()))?;
            (Some(ip), tail)
        }
        None => (None, body),
    };
    if v6.is_none() && body.matches(':').count() > 2 {
        return Err(bad(
            "an IPv6 host address goes in brackets: [::1]:8080:80".into()
        ));
    }
    let parts: Vec<&str> = body.split(':').collect();
    let (ip_s, host_s, ctr_s) = match (v6, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (None, [h, c]) => (None, Some(*h), *c),
        (None, [i, h, c]) => (Some(*i), Some(*h), *c),
        (Some(_), [h, c]) => (None, Some(*h), *c),
        _ => return Err(bad("too many ':'".into())),
    };
    let host_ip = match (v6, ip_s) {
        (Some(ip), _) => IpAddr::V6(ip),
        (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, Some(s)) => IpAddr::V4(
            s.parse::<Ipv4Addr>()
                .map_err(|_| bad(format!("{s:?} is not an IPv4 address")))?,
        ),
    };
    let ctr = parse_range(ctr_s, "container").map_err(bad)?;
    let host = match host_s {
        None | Some("") => None,
        Some(h) => Some(parse_range(h, "host").map_err(bad)?),
    };
    let n = usize::from(ctr.1 - ctr.0) + 1;
    let host_ports: Vec<Option<u16>> = match host {
        None => vec![None; n],
        Some((a, b)) => {
            let hn = usize::from(b - a) + 1;
            if hn != n {
                return Err(bad(if n == 1 {
                    format!(
                        "host port range {a}-{b} with a single container port is not supported; \
                         give one host port, or a range as long as the container range"
                    )
                } else {
                    format!("host range has {hn} ports but container range has {n}")
                }));
            }
            (a..=b).map(Some).collect()
        }
    };
    Ok(host_ports
        .into_iter()
        .zip(ctr.0..=ctr.1)
        .map(|(host_port, container_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
        })
        .collect())
}

/// `P` or `A-B` with 1 <= A <= B <= 65535.
fn parse_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        None => {
            let p = parse_port(s, what)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (parse_port(a, what)?, parse_port(b, what)?);
            if a > b {
                return Err(format!("{what} port range {a}-{b} is reversed"));
            }
            Ok((a, b))
        }
    }
}

fn parse_port(s: &str, what: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err(format!("missing {what} port"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} port {s:?} is not a number"));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("{what} port {s} is out of range 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pm(host_ip: &str, host_port: Option<u16>, container_port: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: host_ip.parse().unwrap(),
            host_port,
            container_port,
            proto,
        }
    }
    fn err(spec: &str) -> String {
        parse_publish(spec).unwrap_err().to_string()
    }

    #[test]
    fn parses_ipv6_host_addresses_in_brackets() {
        use Proto::*;
        assert_eq!(
            parse_publish("[::]:8080:80").unwrap(),
            [pm("::", Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse_publish("[::1]:8080:80/udp").unwrap(),
            [pm("::1", Some(8080), 80, Udp)]
        );
        assert_eq!(
            parse_publish("[2001:db8::5]::80").unwrap(),
            [pm("2001:db8::5", None, 80, Tcp)]
        );
        assert_eq!(
            parse_publish("[::]:8000-8001:80-81").unwrap(),
            [pm("::", Some(8000), 80, Tcp), pm("::", Some(8001), 81, Tcp)]
        );
        let b = |ip: &str| HostBinding::from((Tcp, ip.parse::<IpAddr>().unwrap(), 80));
        assert!(conflicts(b("::"), b("::1")));
        assert!(conflicts(b("0.0.0.0"), b("::")));
        assert!(conflicts(b("0.0.0.0"), b("::1")));
        assert!(!conflicts(b("::1"), b("127.0.0.1")));
        assert!(!conflicts(b("::1"), b("2001:db8::1")));
    }

    #[test]
    fn proto_text_and_serde() {
        assert_eq!(Proto::Tcp.to_string(), "tcp");
        assert_eq!(Proto::Udp.to_string(), "udp");
        assert_eq!(serde_json::to_string(&Proto::Udp).unwrap(), "\"udp\"");
        assert_eq!(
            serde_json::from_str::<Proto>("\"tcp\"").unwrap(),
            Proto::Tcp
        );
        assert!("sctp".parse::<Proto>().is_err());
    }

    #[test]
    fn parses_docker_forms() {
        use Proto::*;
        assert_eq!(parse_publish("80").unwrap(), [pm("0.0.0.0", None, 80, Tcp)]);
        assert_eq!(
            parse_publish("53/udp").unwrap(),
            [pm("0.0.0.0", None, 53, Udp)]
        );
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            [pm("0.0.0.0", Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/tcp").unwrap(),
            [pm("127.0.0.1", Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse_publish("10.0.0.1::80/udp").unwrap(),
            [pm("10.0.0.1", None, 80, Udp)]
        );
        assert_eq!(
            parse_publish("8000-8002:80-82").unwrap(),
            [
                pm("0.0.0.0", Some(8000), 80, Tcp),
                pm("0.0.0.0", Some(8001), 81, Tcp),
                pm("0.0.0.0", Some(8002), 82, Tcp),
            ]
        );
        assert_eq!(
            parse_publish("80-81").unwrap(),
            [pm("0.0.0.0", None, 80, Tcp), pm("0.0.0.0", None, 81, Tcp)]
        );
        assert_eq!(
            parse_publish("65535:1").unwrap(),
            [pm("0.0.0.0", Some(65535), 1, Tcp)]
        );
    }

    #[test]
    fn one_clear_error_each() {
        assert!(err("0").contains("container port 0 is out of range 1-65535"));
        assert!(err("8080:0").contains("container port 0 is out of range"));
        assert!(err("0:80").contains("host port 0 is out of range"));
        assert!(err("70000:80").contains("host port 70000 is out of range"));
        assert!(err("99999999999999:80").contains("out of range"));
        assert!(err("82-80").contains("container port range 82-80 is reversed"));
        assert!(err("8002-8000:80-82").contains("host port range 8002-8000 is reversed"));
        assert!(err("8000-8001:80-82").contains("host range has 2 ports but container range has 3"));
        assert!(err("8000-8002:80").contains("single container port is not supported"));
        assert!(err("abc").contains("container port \"abc\" is not a number"));
        assert!(err("+80").contains("not a number"));
        assert!(err("").contains("missing container port"));
        assert!(err("8080:").contains("missing container port"));
        assert!(err("80/sctp").contains("expected tcp or udp"));
        assert!(err("300.1.1.1:80:80").contains("not an IPv4 address"));
        assert!(err("::1:80:80").contains("goes in brackets"));
        assert!(err("[::1:80:80").contains("missing ']'"));
        assert!(err("[::1]80:80").contains("expected ':' after ']'"));
        assert!(err("[10.0.0.1]:80:80").contains("not an IPv6 address"));
        assert!(err("[::1]:1:80:80").contains("too many"));
        assert!(err("[::1]:80").contains("too many") || err("[::1]:80").contains("missing"));
        // Errors name the spec so the user sees which -p was wrong.
        assert!(err("x:80").starts_with("invalid port mapping \"x:80\": "));
    }

    #[test]
    fn wildcard_conflicts_with_every_address() {
        let b = |ip: &str, port, proto| HostBinding::from((proto, ip.parse().unwrap(), port));
        use Proto::*;
        assert!(conflicts(b("0.0.0.0", 80, Tcp), b("10.0.0.1", 80, Tcp)));
        assert!(conflicts(b("10.0.0.1", 80, Tcp), b("0.0.0.0", 80, Tcp)));
        assert!(conflicts(b("10.0.0.1", 80, Tcp), b("10.0.0.1", 80, Tcp)));
        assert!(!conflicts(b("10.0.0.1", 80, Tcp), b("10.0.0.2", 80, Tcp)));
        assert!(!conflicts(b("0.0.0.0", 80, Tcp), b("0.0.0.0", 80, Udp)));
        assert!(!conflicts(b("0.0.0.0", 80, Tcp), b("0.0.0.0", 81, Tcp)));
        assert_eq!(pm("0.0.0.0", None, 80, Tcp).binding(), None);
        assert_eq!(
            pm("0.0.0.0", Some(8080), 80, Tcp).binding(),
            Some(b("0.0.0.0", 8080, Tcp))
        );
    }

    #[test]
    fn free_port_selection() {
        assert_eq!(pick_free_port([], EPHEMERAL_PORTS), Some(32768));
        assert_eq!(
            pick_free_port([80, 32768, 32769], EPHEMERAL_PORTS),
            Some(32770)
        );
        assert_eq!(pick_free_port([32768, 32770], EPHEMERAL_PORTS), Some(32769));
        assert_eq!(pick_free_port([1, 2, 3], 1..=3), None);
        assert_eq!(pick_free_port([1, 1, 2], 1..=3), Some(3));
        assert_eq!(pick_free_port([65535], 65535..=65535), None);
        assert_eq!(pick_free_port([], 65535..=65535), Some(65535));
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("40000-40001").unwrap(), 40000..=40001);
        assert_eq!(parse_port_range(" 5-5 ").unwrap(), 5..=5);
        for bad in ["", "5", "0-5", "6-5", "1-65536", "a-b", "1-2-3", "-5"] {
            let e = parse_port_range(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid MINIRT_PORT_RANGE"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn port_range_round_trips(lo in 1u16..=65535, len in 0u16..1000) {
            let hi = lo.saturating_add(len);
            prop_assert_eq!(parse_port_range(&format!("{lo}-{hi}")).unwrap(), lo..=hi);
        }

        #[test]
        fn port_range_never_panics(s in "\\PC{0,16}") {
            let _ = parse_port_range(&s);
        }

        #[test]
        fn free_port_is_lowest_unused(
            mut used in proptest::collection::vec(100u16..140, 0..60),
            lo in 100u16..120, len in 0u16..30,
        ) {
            used.sort_unstable();
            let range = lo..=lo + len;
            match pick_free_port(used.iter().copied(), range.clone()) {
                Some(p) => {
                    prop_assert!(range.contains(&p) && !used.contains(&p));
                    prop_assert!((lo..p).all(|q| used.contains(&q)));
                }
                None => prop_assert!(range.clone().all(|q| used.contains(&q))),
            }
        }

        #[test]
        fn parse_roundtrips_explicit_mappings(
            ip in any::<[u8; 4]>(), h in 1u16..=65535, c in 1u16..=65535, udp in any::<bool>()
        ) {
            let ip = Ipv4Addr::from(ip);
            let proto = if udp { Proto::Udp } else { Proto::Tcp };
            let got = parse_publish(&format!("{ip}:{h}:{c}/{proto}")).unwrap();
            prop_assert_eq!(got, vec![PortMapping {
                host_ip: IpAddr::V4(ip), host_port: Some(h), container_port: c, proto
            }]);
        }

        #[test]
        fn parse_never_panics(s in "[0-9a-z:./\\-\\[\\]]{0,24}") {
            let _ = parse_publish(&s);
        }
    }
}

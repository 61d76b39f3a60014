//! IPv6 address management as pure functions: subnet, gateway and `--ip6`
//! validation, the round-robin allocator (the same cursor rule as IPv4's,
//! without ever enumerating a /64), the unique local address pool (RFC 4193)
//! and the link-local address the kernel gives a container's interface.

use super::NetworkError;
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;

/// The longest prefix one network may have: a /120 still leaves 254 hosts.
pub const MAX_PREFIX: u8 = 120;
/// The shortest: a network larger than a /48 (a whole site) is refused.
pub const MIN_PREFIX: u8 = 48;

/// Parse a user-given IPv6 subnet, refusing anything one network cannot use.
pub fn parse_subnet(s: &str) -> Result<Ipv6Net, NetworkError> {
    let s = s.trim();
    let net: Ipv6Net = s.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "invalid subnet {s:?}: expected an IPv6 CIDR such as fd00:1::/64"
        ))
    })?;
    if net.addr() != net.network() {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    if net.prefix_len() > MAX_PREFIX {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: a /{} is smaller than one network may be; use /{MAX_PREFIX} or larger",
            net.prefix_len()
        )));
    }
    if net.prefix_len() < MIN_PREFIX {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: a /{} is larger than one network may be; use /{MIN_PREFIX} or smaller",
            net.prefix_len()
        )));
    }
    let a = net.network();
    if a.is_loopback() || a.is_multicast() || is_link_local(a) || a.is_unspecified() {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: not a unicast range a network can route"
        )));
    }
    Ok(net)
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The first host address: the gateway a network gets when none is given.
pub(crate) fn default_gateway(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).wrapping_add(1))
}

/// The subnet-router anycast address (all host bits zero) is no host's.
fn reserved(net: Ipv6Net, a: Ipv6Addr) -> Option<&'static str> {
    (a == net.network()).then_some("subnet-router anycast")
}

/// A user-given gateway must be a host address of the subnet.
pub fn check_gateway(net: Ipv6Net, gw: Ipv6Addr) -> Result<(), NetworkError> {
    if !net.contains(&gw) {
        return Err(NetworkError::Invalid(format!(
            "invalid gateway {gw}: not inside subnet {net}"
        )));
    }
    if let Some(what) = reserved(net, gw) {
        return Err(NetworkError::Invalid(format!(
            "invalid gateway {gw}: it is the {what} address of {net}"
        )));
    }
    Ok(())
}

/// A `--ip6` request must be a host address of the subnet other than the gateway.
pub(crate) fn check_requested_ip(
    net: Ipv6Net,
    gw: Ipv6Addr,
    ip: Ipv6Addr,
) -> Result<(), NetworkError> {
    if !net.contains(&ip) {
        return Err(NetworkError::Invalid(format!(
            "invalid address {ip}: not inside subnet {net}"
        )));
    }
    let what = reserved(net, ip).or((ip == gw).then_some("gateway"));
    match what {
        Some(what) => Err(NetworkError::Invalid(format!(
            "invalid address {ip}: it is the {what} address of {net}"
        ))),
        None => Ok(()),
    }
}

/// The next free host address after `after`, wrapping around to the lowest;
/// never the subnet-router anycast address or the gateway. `used_sorted`
/// holds the addresses in use (ascending; values outside the subnet and
/// duplicates are tolerated). O(u) in the number of used addresses: the
/// candidate only moves forward while the used list is walked once, so a
/// /64 costs what a /120 costs.
pub(crate) fn next_free(
    net: Ipv6Net,
    gw: Ipv6Addr,
    used_sorted: &[u128],
    after: u128,
) -> Option<Ipv6Addr> {
    let first = u128::from(net.network()).checked_add(1)?;
    let start = after
        .checked_add(1)
        .filter(|s| *s > first && net.contains(&Ipv6Addr::from(*s)));
    start
        .and_then(|s| free_from(net, gw, s, used_sorted))
        .or_else(|| free_from(net, gw, first, used_sorted))
}

fn free_from(net: Ipv6Net, gw: Ipv6Addr, from: u128, used_sorted: &[u128]) -> Option<Ipv6Addr> {
    let last = u128::from(net.broadcast());
    let used = used_sorted.iter().copied();
    super::ipam::lowest_unused(from, last, u128::from(gw), used).map(Ipv6Addr::from)
}

/// The pool unique local /64s are cut from when `network create --ipv6`
/// names no subnet (override with MINIRT_IPV6_POOL, e.g. `fd00::/8`).
pub(crate) const DEFAULT_ULA_POOL: &str = "fd00::/8";
pub(crate) const ULA_POOL_ENV: &str = "MINIRT_IPV6_POOL";

/// The configured pool: a prefix of /48 or shorter inside which a /48 is
/// chosen at random (RFC 4193's 40-bit global ID for fd00::/8).
pub(crate) fn ula_pool() -> Result<Ipv6Net, NetworkError> {
    let s = std::env::var(ULA_POOL_ENV).unwrap_or_else(|_| DEFAULT_ULA_POOL.to_string());
    parse_pool(&s)
}

pub(crate) fn parse_pool(s: &str) -> Result<Ipv6Net, NetworkError> {
    let bad = |why: &str| NetworkError::Invalid(format!("invalid {ULA_POOL_ENV} {s:?}: {why}"));
    let net: Ipv6Net = s.trim().parse().map_err(|_| bad("expected an IPv6 CIDR"))?;
    if net.addr() != net.network() {
        return Err(bad("host bits set"));
    }
    if net.prefix_len() > 64 {
        return Err(bad("the pool must hold at least one /64"));
    }
    Ok(net)
}

/// Two prefixes overlap exactly when one contains the other's network address.
pub(crate) fn overlaps(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A /64 of `pool` overlapping nothing in `taken`: the random bits below the
/// pool's prefix down to /48 are the global ID (`random`, RFC 4193 section
/// 3.2), the subnet ID is 0; a taken /64 moves on to the next subnet IDs of
/// the same /48, then to other random IDs. `random` yields as many draws as
/// the caller allows (one is almost always enough).
pub(crate) fn pick_ula(
    pool: Ipv6Net,
    taken: &[Ipv6Net],
    random: impl IntoIterator<Item = u128>,
) -> Option<Ipv6Net> {
    let free = |c: Ipv6Net| !taken.iter().any(|t| overlaps(c, *t));
    let base = u128::from(pool.network());
    let prefix = u32::from(pool.prefix_len());
    // Global ID: the bits between the pool's prefix and /48; subnet ID: the
    // bits between max(prefix, 48) and /64, counted up from 0.
    let gid_bits = 48u32.saturating_sub(prefix);
    let sid_bits = 64 - prefix.max(48);
    let gid_mask = (1u128 << gid_bits) - 1;
    let steps = 1u128 << sid_bits.min(8);
    for r in random {
        let gid = (r & gid_mask) << 80;
        for i in 0..steps {
            let c = Ipv6Net::new(Ipv6Addr::from(base | gid | (i << 64)), 64).ok()?;
            if free(c) {
                return Some(c);
            }
        }
    }
    None
}

/// The MAC of an endpoint: from its IPv4 address (`ipam::mac_for`), or on
/// an IPv6-only network (IPv4 0.0.0.0) from the last 32 bits of its IPv6
/// address, which IPAM hands out in order, so they differ on one bridge.
pub(crate) fn endpoint_mac(ip: std::net::Ipv4Addr, ip6: Option<Ipv6Addr>) -> [u8; 6] {
    match (ip.is_unspecified(), ip6) {
        (true, Some(a)) => {
            let o = a.octets();
            [0x02, 0x42, o[12], o[13], o[14], o[15]]
        }
        _ => super::ipam::mac_for(ip),
    }
}

/// The link-local address the kernel derives (EUI-64, addr_gen_mode 0) for
/// an interface with `mac`: what a container's eth0 sends NDP from.
pub(crate) fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn endpoint_mac_comes_from_ipv4_else_from_the_ipv6_tail() {
        let v4: std::net::Ipv4Addr = "10.88.0.5".parse().unwrap();
        let v6: Ipv6Addr = "fd00:1::a:102".parse().unwrap();
        assert_eq!(endpoint_mac(v4, Some(v6)), super::super::ipam::mac_for(v4));
        assert_eq!(
            endpoint_mac(std::net::Ipv4Addr::UNSPECIFIED, Some(v6)),
            [0x02, 0x42, 0, 0x0a, 0x01, 0x02]
        );
    }

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }
    fn u(s: &str) -> u128 {
        u128::from(ip(s))
    }
    fn err(r: Result<impl std::fmt::Debug, NetworkError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn subnets_are_checked() {
        assert_eq!(parse_subnet("fd00:1::/64").unwrap(), net("fd00:1::/64"));
        assert_eq!(
            parse_subnet(" 2001:db8::/120 ").unwrap(),
            net("2001:db8::/120")
        );
        assert!(err(parse_subnet("fd00:1::5/64")).contains("did you mean fd00:1::/64?"));
        assert!(err(parse_subnet("fd00::/121")).contains("smaller than one network"));
        assert!(err(parse_subnet("fd00::/47")).contains("larger than one network"));
        assert!(err(parse_subnet("fe80::/64")).contains("not a unicast range"));
        assert!(err(parse_subnet("ff02::/64")).contains("not a unicast range"));
        assert!(err(parse_subnet("10.0.0.0/24")).contains("expected an IPv6 CIDR"));
        assert!(err(parse_subnet("banana")).contains("expected an IPv6 CIDR"));
    }

    #[test]
    fn gateway_and_requested_addresses() {
        let n = net("fd00:1::/64");
        assert_eq!(default_gateway(n), ip("fd00:1::1"));
        assert!(check_gateway(n, ip("fd00:1::ffff")).is_ok());
        assert!(err(check_gateway(n, ip("fd00:2::1"))).contains("not inside subnet"));
        assert!(err(check_gateway(n, ip("fd00:1::"))).contains("anycast"));
        let gw = ip("fd00:1::1");
        assert!(check_requested_ip(n, gw, ip("fd00:1::10")).is_ok());
        assert!(err(check_requested_ip(n, gw, gw)).contains("gateway"));
        assert!(err(check_requested_ip(n, gw, ip("fd00:9::2"))).contains("not inside"));
    }

    #[test]
    fn allocation_moves_on_and_wraps_without_enumerating() {
        let n = net("fd00:1::/64");
        let gw = ip("fd00:1::1");
        assert_eq!(next_free(n, gw, &[], 0), Some(ip("fd00:1::2")));
        assert_eq!(
            next_free(n, gw, &[u("fd00:1::3")], u("fd00:1::3")),
            Some(ip("fd00:1::4"))
        );
        // At the very top of a /64 it wraps to the lowest free.
        let top = u("fd00:1::ffff:ffff:ffff:ffff");
        assert_eq!(
            next_free(n, gw, &[u("fd00:1::2"), top], top),
            Some(ip("fd00:1::3"))
        );
        // A gateway in the middle is skipped.
        let gw_mid = ip("fd00:1::5");
        assert_eq!(
            next_free(n, gw_mid, &[u("fd00:1::4")], u("fd00:1::3")),
            Some(ip("fd00:1::6"))
        );
        // A full /120 is full.
        let small = net("fd00:2::/120");
        let all: Vec<u128> = (2..=255).map(|h| u("fd00:2::") + h).collect();
        assert_eq!(next_free(small, ip("fd00:2::1"), &all, 0), None);
        // The top of the whole address space does not overflow.
        let last = net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
        assert!(next_free(last, default_gateway(last), &[], u128::MAX).is_some());
    }

    #[test]
    fn ula_is_random_within_the_pool_and_skips_taken() {
        let pool = net("fd00::/8");
        let got = pick_ula(pool, &[], [0x12_3456_789a_u128]).unwrap();
        assert_eq!(got, net("fd12:3456:789a::/64"));
        // Taken /64 (another network): the next subnet ID of the same /48.
        let got = pick_ula(pool, &[net("fd12:3456:789a::/64")], [0x12_3456_789a]).unwrap();
        assert_eq!(got, net("fd12:3456:789a:1::/64"));
        // A host route covering the /48: another draw.
        let got = pick_ula(pool, &[net("fd12:3456:789a::/48")], [0x12_3456_789a, 0x77]).unwrap();
        assert_eq!(got, net("fd00:0:77::/64"));
        // A pool of one /64.
        let one = net("fd00:aa::/64");
        assert_eq!(pick_ula(one, &[], [5]), Some(one));
        assert_eq!(pick_ula(one, &[one], [5, 6]), None);
        assert!(parse_pool("fd00::/65").is_err());
        assert!(parse_pool("fd00::1/8").is_err());
        assert_eq!(parse_pool("fd00::/8").unwrap(), pool);
    }

    #[test]
    fn link_local_is_eui64() {
        assert_eq!(
            link_local([0x02, 0x42, 0x0a, 0x58, 0x00, 0x02]),
            ip("fe80::42:aff:fe58:2")
        );
    }

    proptest! {
        #[test]
        fn allocations_are_valid_unique_and_in_the_subnet(
            prefix in 120u8..=126,
            ops in proptest::collection::vec((any::<bool>(), any::<u8>()), 0..100),
        ) {
            let n = Ipv6Net::new(ip("fd00:5::"), prefix).unwrap();
            let gw = default_gateway(n);
            let mut used = BTreeSet::new();
            let mut cursor = 0u128;
            let size = 1u128 << (128 - prefix);
            for (allocate, pick) in ops {
                if allocate || used.is_empty() {
                    let v: Vec<u128> = used.iter().copied().collect();
                    match next_free(n, gw, &v, cursor) {
                        Some(a) => {
                            prop_assert!(check_requested_ip(n, gw, a).is_ok());
                            prop_assert!(used.insert(u128::from(a)));
                            cursor = u128::from(a);
                        }
                        None => prop_assert_eq!(used.len() as u128, size - 2),
                    }
                } else {
                    let v: Vec<u128> = used.iter().copied().collect();
                    used.remove(&v[pick as usize % v.len()]);
                }
            }
        }

        #[test]
        fn ula_never_overlaps(taken in proptest::collection::vec((any::<u128>(), 8u8..=64), 0..20), r in any::<u128>()) {
            let taken: Vec<Ipv6Net> = taken.into_iter()
                .map(|(a, p)| Ipv6Net::new(Ipv6Addr::from(a), p).unwrap().trunc()).collect();
            let pool = net("fd00::/8");
            if let Some(p) = pick_ula(pool, &taken, [r, r.rotate_left(17)]) {
                prop_assert!(pool.contains(&p));
                prop_assert_eq!(p.prefix_len(), 64);
                prop_assert!(taken.iter().all(|t| !overlaps(p, *t)));
            }
        }
    }
}

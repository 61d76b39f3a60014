//! IP address management as pure functions: subnet and gateway validation,
//! picking the lowest free address in a subnet, and the MAC derived from an IP.

use super::NetworkError;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Parse a user-given IPv4 subnet in CIDR form, refusing anything a bridge
/// network cannot use.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, NetworkError> {
    let s = s.trim();
    if s.contains(':') {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: IPv6 networks are not supported yet"
        )));
    }
    let net: Ipv4Net = s.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "invalid subnet {s:?}: expected an IPv4 CIDR such as 10.88.0.0/24"
        ))
    })?;
    if net.addr() != net.network() {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    if net.prefix_len() > 30 {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: a /{} has no room for a gateway and a container; use /30 or larger",
            net.prefix_len()
        )));
    }
    Ok(net)
}

/// The gateway a network gets when none is given: its first host address.
pub(crate) fn default_gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

/// A user-given gateway must be a host address of the subnet.
pub fn check_gateway(net: Ipv4Net, gw: Ipv4Addr) -> Result<(), NetworkError> {
    if !net.contains(&gw) {
        return Err(NetworkError::Invalid(format!(
            "invalid gateway {gw}: not inside subnet {net}"
        )));
    }
    if gw == net.network() || gw == net.broadcast() {
        return Err(NetworkError::Invalid(format!(
            "invalid gateway {gw}: it is the {} address of {net}",
            if gw == net.network() {
                "network"
            } else {
                "broadcast"
            }
        )));
    }
    Ok(())
}

/// A `--ip` request must be a host address of the subnet other than the gateway.
pub(crate) fn check_requested_ip(
    net: Ipv4Net,
    gw: Ipv4Addr,
    ip: Ipv4Addr,
) -> Result<(), NetworkError> {
    if !net.contains(&ip) {
        return Err(NetworkError::Invalid(format!(
            "invalid address {ip}: not inside subnet {net}"
        )));
    }
    let what = if ip == net.network() {
        Some("network")
    } else if ip == net.broadcast() {
        Some("broadcast")
    } else if ip == gw {
        Some("gateway")
    } else {
        None
    };
    match what {
        Some(what) => Err(NetworkError::Invalid(format!(
            "invalid address {ip}: it is the {what} address of {net}"
        ))),
        None => Ok(()),
    }
}

/// The lowest host address of `net` that is neither the network, gateway nor
/// broadcast address nor in `used_sorted` (addresses as u32, ascending; values
/// outside the subnet and duplicates are tolerated).
///
/// Complexity: O(u) where u is the number of used addresses read, because the
/// candidate only moves forward while the used list is walked once; it stops
/// at the first gap, so a sparse subnet costs far less than u.
pub fn first_free(
    net: Ipv4Net,
    gw: Ipv4Addr,
    used_sorted: impl IntoIterator<Item = u32>,
) -> Option<Ipv4Addr> {
    let first = u32::from(net.network()).checked_add(1)?;
    free_from(net, gw, first, used_sorted)
}

/// The next free host address after `after`, wrapping around to the lowest:
/// how the allocator hands out addresses (like Docker's and Podman's), so an
/// address just released is not handed out again at once while the kernel
/// may still be destroying the old owner's namespace and veth (and a switch
/// or a neighbour cache may still point at them). `used_sorted` as for
/// [`first_free`]; `after` outside the subnet starts from the bottom. (The
/// allocator itself calls [`next_free_with`], which reads only what it needs.)
#[cfg(test)]
pub(crate) fn next_free(
    net: Ipv4Net,
    gw: Ipv4Addr,
    used_sorted: &[u32],
    after: u32,
) -> Option<Ipv4Addr> {
    let from = |f: u32| Ok::<_, ()>(used_sorted.iter().copied().filter(|u| *u >= f).collect());
    next_free_with(net, gw, after, from).ok().flatten()
}

/// [`next_free`], asking `used_from(f)` for the used addresses at or above
/// `f` (ascending) only when it needs them: after the cursor first, which
/// on a network whose addresses were handed out in order is next to
/// nothing, and from the bottom only when that part is full. So the store
/// reads the tail of the network's addresses, not all of them (at 1000
/// containers reading all of them was about 1 ms of every create).
pub(crate) fn next_free_with<E>(
    net: Ipv4Net,
    gw: Ipv4Addr,
    after: u32,
    mut used_from: impl FnMut(u32) -> Result<Vec<u32>, E>,
) -> Result<Option<Ipv4Addr>, E> {
    let Some(first) = u32::from(net.network()).checked_add(1) else {
        return Ok(None);
    };
    let start = after
        .checked_add(1)
        .filter(|s| *s > first && net.contains(&Ipv4Addr::from(*s)));
    if let Some(s) = start {
        if let Some(ip) = free_from(net, gw, s, used_from(s)?) {
            return Ok(Some(ip));
        }
    }
    Ok(free_from(net, gw, first, used_from(first)?))
}

/// The lowest free host address of `net` at or above `from` (see first_free).
fn free_from(
    net: Ipv4Net,
    gw: Ipv4Addr,
    from: u32,
    used_sorted: impl IntoIterator<Item = u32>,
) -> Option<Ipv4Addr> {
    let last = u32::from(net.broadcast()).checked_sub(1)?;
    let used = used_sorted.into_iter().map(u128::from);
    let found = lowest_unused(from.into(), last.into(), u32::from(gw).into(), used)?;
    u32::try_from(found).ok().map(Ipv4Addr::from)
}

/// The lowest value in `from..=last` that is neither `gw` nor in
/// `used_sorted` (ascending; values out of range and duplicates tolerated):
/// the scan under both families' allocators (addresses as integers). O(u):
/// the candidate only moves forward while the used list is walked once, and
/// the walk stops at the first gap.
pub(super) fn lowest_unused(
    from: u128,
    last: u128,
    gw: u128,
    used_sorted: impl IntoIterator<Item = u128>,
) -> Option<u128> {
    let skip_gw = |c: u128| if c == gw { c.checked_add(1) } else { Some(c) };
    let mut cand = skip_gw(from)?;
    for used in used_sorted {
        if cand > last {
            return None;
        }
        if used < cand {
            continue;
        }
        if used > cand {
            break;
        }
        cand = skip_gw(cand.checked_add(1)?)?;
    }
    (cand <= last).then_some(cand)
}

/// Docker-style locally administered MAC for a container address:
/// 02:42 followed by the four address bytes, so it is stable and unique per IP.
pub(crate) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`, the form `ip link` and the store use.
pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn u(s: &str) -> u32 {
        u32::from(ip(s))
    }
    fn err(r: Result<impl std::fmt::Debug, NetworkError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn parse_subnet_accepts_and_explains() {
        assert_eq!(parse_subnet("10.88.0.0/24").unwrap(), net("10.88.0.0/24"));
        assert_eq!(parse_subnet(" 10.0.0.0/30 ").unwrap(), net("10.0.0.0/30"));
        assert_eq!(
            err(parse_subnet("10.88.0.5/24")),
            "invalid subnet 10.88.0.5/24: host bits set; did you mean 10.88.0.0/24?"
        );
        assert!(err(parse_subnet("10.0.0.0/31")).contains("no room"));
        assert!(err(parse_subnet("10.0.0.1/32")).contains("no room"));
        assert!(err(parse_subnet("10.0.0.2/30")).contains("did you mean 10.0.0.0/30?"));
        assert!(err(parse_subnet("10.0.0.0/32")).contains("no room"));
        assert!(err(parse_subnet("fd00::/64")).contains("IPv6"));
        assert!(err(parse_subnet("banana")).contains("expected an IPv4 CIDR"));
        assert!(err(parse_subnet("10.0.0.0")).contains("expected an IPv4 CIDR"));
        assert!(err(parse_subnet("10.0.0.0/33")).contains("expected an IPv4 CIDR"));
        assert!(err(parse_subnet("")).contains("expected an IPv4 CIDR"));
    }

    #[test]
    fn gateway_rules() {
        let n = net("10.88.0.0/24");
        assert_eq!(default_gateway(n), ip("10.88.0.1"));
        assert!(check_gateway(n, ip("10.88.0.1")).is_ok());
        assert!(check_gateway(n, ip("10.88.0.254")).is_ok());
        assert!(err(check_gateway(n, ip("10.88.0.0"))).contains("network address"));
        assert!(err(check_gateway(n, ip("10.88.0.255"))).contains("broadcast address"));
        assert!(err(check_gateway(n, ip("10.89.0.1"))).contains("not inside"));
    }

    #[test]
    fn requested_ip_rules() {
        let n = net("10.88.0.0/24");
        let gw = ip("10.88.0.1");
        assert!(check_requested_ip(n, gw, ip("10.88.0.2")).is_ok());
        assert!(err(check_requested_ip(n, gw, ip("10.88.0.1"))).contains("gateway"));
        assert!(err(check_requested_ip(n, gw, ip("10.88.0.0"))).contains("network"));
        assert!(err(check_requested_ip(n, gw, ip("10.88.0.255"))).contains("broadcast"));
        assert!(err(check_requested_ip(n, gw, ip("10.88.1.2"))).contains("not inside"));
    }

    #[test]
    fn first_free_basic() {
        let n = net("10.88.0.0/24");
        let gw = ip("10.88.0.1");
        let u = |s: &str| u32::from(ip(s));
        assert_eq!(first_free(n, gw, []), Some(ip("10.88.0.2")));
        assert_eq!(
            first_free(n, gw, [u("10.88.0.2"), u("10.88.0.3")]),
            Some(ip("10.88.0.4"))
        );
        // A gap is reused before higher addresses.
        assert_eq!(
            first_free(n, gw, [u("10.88.0.2"), u("10.88.0.4")]),
            Some(ip("10.88.0.3"))
        );
        // Gateway in the middle of the range is skipped.
        let gw_mid = ip("10.88.0.3");
        assert_eq!(
            first_free(n, gw_mid, [u("10.88.0.1"), u("10.88.0.2")]),
            Some(ip("10.88.0.4"))
        );
        // Addresses outside the subnet and duplicates do not matter.
        assert_eq!(
            first_free(n, gw, [u("10.0.0.9"), u("10.88.0.2"), u("10.88.0.2")]),
            Some(ip("10.88.0.3"))
        );
    }

    #[test]
    fn first_free_full_subnets() {
        // /30: network .0, gw .1, host .2, broadcast .3.
        let n = net("10.0.0.0/30");
        let gw = ip("10.0.0.1");
        assert_eq!(first_free(n, gw, []), Some(ip("10.0.0.2")));
        assert_eq!(first_free(n, gw, [u32::from(ip("10.0.0.2"))]), None);
        // Gateway at the top of a /30 leaves .1 free.
        assert_eq!(first_free(n, ip("10.0.0.2"), []), Some(ip("10.0.0.1")));
        // Extremes of the address space do not overflow.
        let top = net("255.255.255.252/30");
        assert_eq!(
            first_free(top, ip("255.255.255.253"), []),
            Some(ip("255.255.255.254"))
        );
        let n24 = net("10.1.0.0/24");
        let all: Vec<u32> = (2..=254).map(|h| u32::from(ip("10.1.0.0")) + h).collect();
        assert_eq!(first_free(n24, ip("10.1.0.1"), all), None);
    }

    #[test]
    fn mac_is_docker_style() {
        let m = mac_for(ip("172.17.0.2"));
        assert_eq!(m, [0x02, 0x42, 172, 17, 0, 2]);
        assert_eq!(format_mac(m), "02:42:ac:11:00:02");
    }

    #[test]
    fn next_free_moves_on_and_wraps() {
        let n = net("10.88.0.0/24");
        let gw = ip("10.88.0.1");
        // Fresh network (cursor 0): the lowest.
        assert_eq!(next_free(n, gw, &[], 0), Some(ip("10.88.0.2")));
        // .2 released, cursor at .3: .4 next, not the gap at .2.
        assert_eq!(
            next_free(n, gw, &[u("10.88.0.3")], u("10.88.0.3")),
            Some(ip("10.88.0.4"))
        );
        // Used addresses after the cursor are skipped.
        let used = [u("10.88.0.4"), u("10.88.0.5")];
        assert_eq!(
            next_free(n, gw, &used, u("10.88.0.3")),
            Some(ip("10.88.0.6"))
        );
        // At the top it wraps to the lowest free.
        let used = [u("10.88.0.2"), u("10.88.0.254")];
        assert_eq!(
            next_free(n, gw, &used, u("10.88.0.254")),
            Some(ip("10.88.0.3"))
        );
        // A cursor from another subnet (renumbered network) starts at the bottom.
        assert_eq!(next_free(n, gw, &[], u("10.99.0.7")), Some(ip("10.88.0.2")));
        // Full /30 stays full.
        let n30 = net("10.0.0.0/30");
        assert_eq!(
            next_free(n30, ip("10.0.0.1"), &[u("10.0.0.2")], u("10.0.0.2")),
            None
        );
        assert_eq!(
            next_free(n30, ip("10.0.0.1"), &[], u("10.0.0.2")),
            Some(ip("10.0.0.2"))
        );
    }

    proptest! {
        #[test]
        fn allocations_are_valid_unique_and_move_on(
            prefix in 26u8..=30,
            gw_off in 1u32..4,
            ops in proptest::collection::vec((any::<bool>(), any::<u8>()), 0..200),
        ) {
            let n = Ipv4Net::new(ip("10.60.0.0"), prefix).unwrap();
            let base = u32::from(n.network());
            let size = 1u32 << (32 - prefix);
            let gw = Ipv4Addr::from(base + gw_off.min(size - 2));
            let mut used = BTreeSet::new();
            let mut cursor = 0u32;
            for (allocate, pick) in ops {
                if allocate || used.is_empty() {
                    let v: Vec<u32> = used.iter().copied().collect();
                    match next_free(n, gw, &v, cursor) {
                        Some(a) => {
                            let a32 = u32::from(a);
                            prop_assert!(check_requested_ip(n, gw, a).is_ok());
                            prop_assert!(used.insert(a32), "duplicate {}", a);
                            // Every host address passed over, going up from
                            // the cursor and wrapping, is taken.
                            let hosts: Vec<u32> = (base + 1..base + size - 1)
                                .filter(|c| *c != u32::from(gw))
                                .collect();
                            let start = hosts.iter().position(|h| *h > cursor).unwrap_or(0);
                            for h in hosts.iter().cycle().skip(start).take_while(|h| **h != a32) {
                                prop_assert!(used.contains(h), "{} skipped", Ipv4Addr::from(*h));
                            }
                            cursor = a32;
                        }
                        None => {
                            // Full: every host address but the gateway is used.
                            prop_assert_eq!(used.len() as u32, size - 3);
                        }
                    }
                } else {
                    let v: Vec<u32> = used.iter().copied().collect();
                    used.remove(&v[pick as usize % v.len()]);
                }
            }
        }
    }
}

#[cfg(test)]
mod cidr_proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn subnets_round_trip(a in any::<u32>(), prefix in 0u8..=30) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), prefix).unwrap().trunc();
            prop_assert_eq!(parse_subnet(&n.to_string()).unwrap(), n);
            prop_assert_eq!(parse_subnet(&format!(" {n} ")).unwrap(), n);
        }

        #[test]
        fn host_bits_and_tiny_prefixes_are_refused(a in any::<u32>(), prefix in 0u8..=32) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), prefix).unwrap();
            let got = parse_subnet(&n.to_string());
            prop_assert_eq!(got.is_ok(), n.addr() == n.network() && prefix <= 30);
            if let Ok(s) = got {
                // A usable subnet has a gateway and at least one other host address.
                let gw = default_gateway(s);
                prop_assert!(check_gateway(s, gw).is_ok());
                prop_assert!(first_free(s, gw, std::iter::empty()).is_some());
            }
        }

        #[test]
        fn cidr_parsing_never_panics(s in "\\PC{0,24}|[0-9./:]{0,24}") {
            if let Ok(n) = parse_subnet(&s) {
                prop_assert!(n.prefix_len() <= 30 && n.addr() == n.network());
            }
        }
    }
}

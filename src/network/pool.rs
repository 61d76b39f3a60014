//! Choosing a subnet for a new network from Docker's local address pools,
//! skipping anything that overlaps an existing network or a host route.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Two prefixes overlap exactly when one contains the other's network address.
pub(crate) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Docker's default local pools in order: 172.17.0.0/16 .. 172.31.0.0/16, then
/// 192.168.0.0/16 cut into /20s.
pub(crate) fn candidates() -> impl Iterator<Item = Ipv4Net> {
    let big = (17u8..=31)
        .map(|b| Ipv4Addr::new(172, b, 0, 0))
        .map(|a| (a, 16));
    let small = (0u8..16)
        .map(|i| Ipv4Addr::new(192, 168, i * 16, 0))
        .map(|a| (a, 20));
    big.chain(small)
        .filter_map(|(a, p)| Ipv4Net::new(a, p).ok())
}

/// The first pool candidate overlapping nothing in `taken` (minirt networks and
/// host routes; a default route 0.0.0.0/0 is the caller's to leave out, since it
/// overlaps everything). O(candidates x taken), both small.
pub(crate) fn pick_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    candidates().find(|c| !taken.iter().any(|t| overlaps(*c, *t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_cases() {
        assert!(overlaps(net("10.0.0.0/8"), net("10.1.0.0/16")));
        assert!(overlaps(net("10.1.0.0/16"), net("10.0.0.0/8")));
        assert!(overlaps(net("10.1.0.0/16"), net("10.1.0.0/16")));
        assert!(overlaps(net("172.17.5.0/24"), net("172.17.0.0/16")));
        assert!(!overlaps(net("10.1.0.0/16"), net("10.2.0.0/16")));
        assert!(!overlaps(net("192.168.0.0/20"), net("192.168.16.0/20")));
        assert!(overlaps(net("0.0.0.0/0"), net("1.2.3.0/24")));
    }

    #[test]
    fn pools_in_docker_order() {
        let all: Vec<Ipv4Net> = candidates().collect();
        assert_eq!(all.len(), 15 + 16);
        assert_eq!(all[0], net("172.17.0.0/16"));
        assert_eq!(all[14], net("172.31.0.0/16"));
        assert_eq!(all[15], net("192.168.0.0/20"));
        assert_eq!(all[30], net("192.168.240.0/20"));
    }

    #[test]
    fn pick_skips_taken_and_routes() {
        assert_eq!(pick_subnet(&[]), Some(net("172.17.0.0/16")));
        assert_eq!(
            pick_subnet(&[net("172.17.0.0/16")]),
            Some(net("172.18.0.0/16"))
        );
        // A host route inside a candidate blocks it.
        assert_eq!(
            pick_subnet(&[net("172.17.3.0/24"), net("172.18.0.1/32")]),
            Some(net("172.19.0.0/16"))
        );
        // A covering route blocks all of 172.16/12 at once.
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12")]),
            Some(net("192.168.0.0/20"))
        );
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12"), net("192.168.1.0/24")]),
            Some(net("192.168.16.0/20"))
        );
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12"), net("192.168.0.0/16")]),
            None
        );
    }

    proptest! {
        #[test]
        fn picked_never_overlaps_and_is_first(
            taken in proptest::collection::vec((any::<u32>(), 8u8..=32), 0..40)
        ) {
            let taken: Vec<Ipv4Net> = taken
                .into_iter()
                .map(|(a, p)| Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc())
                .collect();
            match pick_subnet(&taken) {
                Some(p) => {
                    prop_assert!(taken.iter().all(|t| !overlaps(p, *t)));
                    for c in candidates().take_while(|c| *c != p) {
                        prop_assert!(taken.iter().any(|t| overlaps(c, *t)));
                    }
                }
                None => {
                    for c in candidates() {
                        prop_assert!(taken.iter().any(|t| overlaps(c, *t)));
                    }
                }
            }
        }

        #[test]
        fn overlap_matches_address_sets(
            a in any::<u32>(), pa in 20u8..=32, b in any::<u32>(), pb in 20u8..=32
        ) {
            // Same /16 so that overlaps are frequent; compare with the set definition.
            let na = Ipv4Net::new(Ipv4Addr::from(a & 0xFFFF_3FFF), pa).unwrap().trunc();
            let nb = Ipv4Net::new(Ipv4Addr::from((a & 0xFFFF_0000) | (b & 0x3FFF)), pb).unwrap().trunc();
            let sa: std::collections::HashSet<u32> =
                (u32::from(na.network())..=u32::from(na.broadcast())).collect();
            let shared = (u32::from(nb.network())..=u32::from(nb.broadcast())).any(|x| sa.contains(&x));
            prop_assert_eq!(overlaps(na, nb), shared);
        }
    }
}

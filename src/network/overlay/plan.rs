//! Pure decisions of the overlay driver: `network create`'s options, the
//! VNI and block a host takes, the VXLAN entries a host must have for its
//! peers, and the overlay's nftables table.

use super::keys::{BlockRec, NetConfig};
use super::OverlayError;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub const DEFAULT_SUBNET: &str = "10.42.0.0/16";
pub const DEFAULT_BLOCK: u8 = 24;
/// VNIs minirt picks from when `-o vni=` names none.
pub const FIRST_VNI: u32 = 4096;
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// The VXLAN header and outer headers take 50 bytes of the underlay's MTU.
pub(crate) const VXLAN_OVERHEAD: u32 = 50;
pub(crate) const VXLAN_PORT: u16 = 4789;

/// What `network create -d overlay` asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSpec {
    pub subnet: Ipv4Net,
    pub block: u8,
    pub vni: Option<u32>,
}

fn invalid(s: String) -> OverlayError {
    OverlayError::Invalid(s)
}

/// `[--subnet CIDR] [-o block=N] [-o vni=N]`.
pub fn create_spec(subnet: Option<&str>, options: &[String]) -> Result<CreateSpec, OverlayError> {
    let subnet: Ipv4Net = match subnet {
        None => DEFAULT_SUBNET
            .parse()
            .map_err(|_| invalid("bad default subnet".into()))?,
        Some(s) => {
            let n: Ipv4Net = s
                .parse()
                .map_err(|_| invalid(format!("invalid subnet {s:?}: expected an IPv4 CIDR")))?;
            if n.network() != n.addr() {
                return Err(invalid(format!(
                    "invalid subnet {s}: host bits set (did you mean {}?)",
                    n.trunc()
                )));
            }
            n
        }
    };
    let mut block = DEFAULT_BLOCK.max(subnet.prefix_len());
    let mut vni = None;
    for o in options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| invalid(format!("invalid option {o:?}: expected KEY=VALUE")))?;
        match k {
            "block" => {
                let b: u8 = v.trim_start_matches('/').parse().map_err(|_| {
                    invalid(format!(
                        "invalid block {v:?}: expected a prefix length such as 24"
                    ))
                })?;
                if b < subnet.prefix_len() {
                    return Err(invalid(format!(
                        "invalid block /{b}: larger than the subnet {subnet}"
                    )));
                }
                if b > 29 {
                    return Err(invalid(format!(
                        "invalid block /{b}: a block needs room for a gateway and containers (at most /29)"
                    )));
                }
                block = b;
            }
            "vni" => {
                let n: u32 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_VNI).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid vni {v:?}: expected a number from 1 to {MAX_VNI}"
                        ))
                    })?;
                vni = Some(n);
            }
            _ => {
                return Err(invalid(format!(
                    "unknown option {:?}: the overlay driver knows block and vni",
                    crate::validate::escape_controls(k)
                )))
            }
        }
    }
    if block > 29 {
        return Err(invalid(format!(
            "invalid subnet {subnet}: too small for an overlay (at most /29)"
        )));
    }
    Ok(CreateSpec { subnet, block, vni })
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The lowest VNI from FIRST_VNI that no network holds.
pub fn pick_vni(taken: &[u32]) -> Option<u32> {
    let taken: BTreeSet<u32> = taken.iter().copied().collect();
    (FIRST_VNI..=MAX_VNI).find(|v| !taken.contains(v))
}

/// The lowest block of `subnet` no host holds.
pub(crate) fn pick_block(subnet: Ipv4Net, len: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let blocks = subnet.subnets(len).ok()?;
    blocks.into_iter().find(|b| !taken.contains(b))
}

/// A block's gateway: its first host address (the local bridge's).
pub(crate) fn gateway(block: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(block.network()) + 1)
}

/// The address of a host's VXLAN device: its block's network address (as
/// flannel does), so the next hop of a remote block names its holder.
pub(crate) fn vtep_addr(block: Ipv4Net) -> Ipv4Addr {
    block.network()
}

/// The MAC of a host's VXLAN device for one network: locally administered,
/// from the VNI and the host's address, so it never needs storing.
pub(crate) fn vtep_mac(vni: u32, host: Ipv4Addr) -> [u8; 6] {
    let h = host.octets();
    [0x02, (vni & 0xff) as u8, h[0], h[1], h[2], h[3]]
}

pub(crate) fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One remote block as the kernel needs it: a route to the block via the
/// holder's VTEP address, a neighbour entry (VTEP address -> MAC) and an
/// FDB entry (MAC -> underlay address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub block: Ipv4Net,
    pub vtep: Ipv4Addr,
    pub mac: String,
    pub host: Ipv4Addr,
}

/// The peers of this host: every block held by another host.
pub fn peers(me: Ipv4Addr, blocks: &[(Ipv4Net, BlockRec)]) -> Vec<Peer> {
    let mut v: Vec<Peer> = blocks
        .iter()
        .filter(|(_, r)| r.host != me)
        .map(|(b, r)| Peer {
            block: *b,
            vtep: vtep_addr(*b),
            mac: r.mac.to_lowercase(),
            host: r.host,
        })
        .collect();
    v.sort();
    v
}

/// What the kernel has on a VXLAN device, as read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Programmed {
    pub routes: Vec<Ipv4Net>,
    /// (address, MAC)
    pub neighbours: Vec<(Ipv4Addr, String)>,
    /// (MAC, underlay address)
    pub fdb: Vec<(String, Ipv4Addr)>,
}

/// The changes that make `have` match `want`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerDiff {
    pub add: Vec<Peer>,
    pub del_routes: Vec<Ipv4Net>,
    pub del_neighbours: Vec<Ipv4Addr>,
    pub del_fdb: Vec<(String, Ipv4Addr)>,
}

pub fn diff(want: &[Peer], have: &Programmed) -> PeerDiff {
    let mut d = PeerDiff::default();
    for p in want {
        let ok = have.routes.contains(&p.block)
            && have.neighbours.contains(&(p.vtep, p.mac.clone()))
            && have.fdb.contains(&(p.mac.clone(), p.host));
        if !ok {
            d.add.push(p.clone());
        }
    }
    d.del_routes = have
        .routes
        .iter()
        .filter(|r| !want.iter().any(|p| p.block == **r))
        .copied()
        .collect();
    d.del_neighbours = have
        .neighbours
        .iter()
        .filter(|(a, m)| !want.iter().any(|p| p.vtep == *a && p.mac == *m))
        .map(|(a, _)| *a)
        .collect();
    d.del_fdb = have
        .fdb
        .iter()
        .filter(|(m, h)| !want.iter().any(|p| p.mac == *m && p.host == *h))
        .cloned()
        .collect();
    d
}

/// One overlay network as its firewall rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FwOverlay {
    pub bridge: String,
    pub vxlan: String,
    pub block: Ipv4Net,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

pub fn table_name(tag: &str) -> String {
    format!("minirt_ovl_{tag}")
}

/// The overlay's nftables table, whole (replaced in one `nft -f` batch):
/// VXLAN packets accepted only from known peers; into a network's bridge
/// only from the bridge itself, its VXLAN device or replies; into a VXLAN
/// device only from its own bridge (no other network crosses); no
/// masquerade inside the overlay, masquerade outward unless internal.
pub fn render_table(tag: &str, nets: &[FwOverlay], peers: &[Ipv4Addr]) -> String {
    let t = table_name(tag);
    let mut s = format!("table inet {t} {{}}\ndelete table inet {t}\n");
    if nets.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table inet {t} {{\n\tset peers {{\n\t\ttype ipv4_addr;\n"
    ));
    let mut ps: Vec<_> = peers.to_vec();
    ps.sort();
    ps.dedup();
    if !ps.is_empty() {
        let e: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
        s.push_str(&format!("\t\telements = {{ {} }}\n", e.join(", ")));
    }
    s.push_str("\t}\n");
    s.push_str(&format!(
        "\tchain input {{\n\t\ttype filter hook input priority -10; policy accept;\n\t\tudp dport {VXLAN_PORT} ip saddr != @peers drop\n\t}}\n"
    ));
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n");
    for n in nets {
        let (br, vx) = (&n.bridge, &n.vxlan);
        s.push_str(&format!(
            "\t\toifname \"{br}\" iifname {{ \"{br}\", \"{vx}\" }} accept\n\
             \t\toifname \"{br}\" ct state established,related accept\n\
             \t\toifname \"{br}\" drop\n\
             \t\toifname \"{vx}\" iifname != \"{br}\" drop\n"
        ));
        if n.internal {
            s.push_str(&format!(
                "\t\tiifname \"{br}\" oifname != {{ \"{br}\", \"{vx}\" }} drop\n"
            ));
        }
    }
    s.push_str("\t}\n");
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority 90; policy accept;\n",
    );
    for n in nets.iter().filter(|n| !n.internal) {
        s.push_str(&format!(
            "\t\tip saddr {} ip daddr != {} oifname != \"{}\" masquerade\n",
            n.block, n.subnet, n.bridge
        ));
    }
    s.push_str("\t}\n}\n");
    s
}

/// Whether a network's config in the store is the one this host joined.
pub fn same_network(a: &NetConfig, id: &str) -> bool {
    a.id == id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn create_options() {
        let s = create_spec(None, &[]).unwrap();
        assert_eq!(s.subnet.to_string(), "10.42.0.0/16");
        assert_eq!((s.block, s.vni), (24, None));
        let s = create_spec(Some("10.50.0.0/20"), &o(&["block=26", "vni=77"])).unwrap();
        assert_eq!((s.block, s.vni), (26, Some(77)));
        for (sub, opts, want) in [
            (
                Some("10.50.0.0/20"),
                vec!["block=16"],
                "larger than the subnet",
            ),
            (None, vec!["vni=0"], "invalid vni"),
            (None, vec!["vni=16777216"], "invalid vni"),
            (None, vec!["mtu=1"], "unknown option"),
            (None, vec!["block"], "expected KEY=VALUE"),
            (Some("10.0.0.1/16"), vec![], "host bits set"),
            (Some("10.0.0.0/30"), vec![], "too small"),
        ] {
            let e = create_spec(sub, &o(&opts)).unwrap_err().to_string();
            assert!(e.contains(want), "{opts:?}: {e}");
        }
        // A subnet smaller than the default block is one block.
        assert_eq!(create_spec(Some("10.9.9.0/26"), &[]).unwrap().block, 26);
    }

    #[test]
    fn picks() {
        assert_eq!(pick_vni(&[]), Some(FIRST_VNI));
        assert_eq!(pick_vni(&[4096, 4097, 5000]), Some(4098));
        let s: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let b0: Ipv4Net = "10.42.0.0/24".parse().unwrap();
        assert_eq!(pick_block(s, 24, &[]), Some(b0));
        assert_eq!(
            pick_block(s, 24, &[b0]).unwrap().to_string(),
            "10.42.1.0/24"
        );
        let tiny: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        assert_eq!(pick_block(tiny, 24, &[tiny]), None);
        assert_eq!(gateway(b0).to_string(), "10.42.0.1");
        assert_eq!(
            mac_string(vtep_mac(4096, "198.51.100.2".parse().unwrap())),
            "02:00:c6:33:64:02"
        );
        assert!(overlaps(s, "10.42.7.0/24".parse().unwrap()));
        assert!(!overlaps(s, "10.43.0.0/16".parse().unwrap()));
    }

    #[test]
    fn peers_and_diff() {
        let me: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let other: Ipv4Addr = "198.51.100.2".parse().unwrap();
        let rec = |h: Ipv4Addr| BlockRec {
            host: h,
            mac: mac_string(vtep_mac(1, h)),
        };
        let b1: Ipv4Net = "10.42.0.0/24".parse().unwrap();
        let b2: Ipv4Net = "10.42.1.0/24".parse().unwrap();
        let p = peers(me, &[(b1, rec(me)), (b2, rec(other))]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].vtep.to_string(), "10.42.1.0");
        let d = diff(&p, &Programmed::default());
        assert_eq!(d.add, p);
        let have = Programmed {
            routes: vec![b2, "10.42.9.0/24".parse().unwrap()],
            neighbours: vec![(p[0].vtep, p[0].mac.clone())],
            fdb: vec![(p[0].mac.clone(), other), ("02:00:00:00:00:09".into(), me)],
        };
        let d = diff(&p, &have);
        assert!(d.add.is_empty());
        assert_eq!(
            d.del_routes,
            vec!["10.42.9.0/24".parse::<Ipv4Net>().unwrap()]
        );
        assert!(d.del_neighbours.is_empty());
        assert_eq!(d.del_fdb.len(), 1);
    }

    #[test]
    fn table() {
        let n = FwOverlay {
            bridge: "mrb-1".into(),
            vxlan: "mrx-1".into(),
            block: "10.42.1.0/24".parse().unwrap(),
            subnet: "10.42.0.0/16".parse().unwrap(),
            internal: false,
        };
        let t = render_table("abcd", &[n], &["198.51.100.2".parse().unwrap()]);
        assert!(t.contains("elements = { 198.51.100.2 }"));
        assert!(t.contains("udp dport 4789 ip saddr != @peers drop"));
        assert!(t.contains(
            "ip saddr 10.42.1.0/24 ip daddr != 10.42.0.0/16 oifname != \"mrb-1\" masquerade"
        ));
        assert!(render_table("abcd", &[], &[]).ends_with("delete table inet minirt_ovl_abcd\n"));
    }
}

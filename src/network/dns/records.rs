//! Pure name records of the DNS responder: which names answer which address
//! on which network (keyed by the gateway the query arrived on), and the reply.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Answers never outlive a container: resolvers must ask again every time.
const TTL: u32 = 0;

/// One container on one user-defined network, as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The network's IPv4 gateway and the member's IPv4 address (A);
    /// 0.0.0.0 on an IPv6-only network.
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub name: String,
    pub container_id: String,
    pub aliases: Vec<String>,
    /// The network's IPv6 gateway and the member's IPv6 address (AAAA),
    /// on a network with IPv6.
    pub v6: Option<(Ipv6Addr, Ipv6Addr)>,
}

/// Every network's names: zone -> lowercase name -> addresses (both
/// families; A and AAAA pick theirs). A network's zone is keyed by its IPv4
/// gateway, or by its IPv6 gateway on an IPv6-only network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    zones: BTreeMap<IpAddr, HashMap<String, Vec<IpAddr>>>,
    /// A network's IPv6 gateway -> its zone and how many members with IPv6
    /// it has (served while there is one).
    zones6: BTreeMap<Ipv6Addr, (IpAddr, usize)>,
    /// The containers' search domains: `web.lan` is tried as `web` too,
    /// since resolvers try the search list before the bare name.
    search: Vec<String>,
}

/// A query name as the records key it: lowercase, without the root dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Docker's short id: the first 12 hex characters.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Records {
    /// Names of each member (container name, aliases, short id) on its
    /// network only; a name shared by two containers answers both addresses.
    pub fn build(members: &[Member]) -> Records {
        let mut r = Records::default();
        r.add(members);
        r
    }

    /// The names `m` answers to (normalized, non-empty).
    fn names_of(m: &Member) -> impl Iterator<Item = String> + '_ {
        std::iter::once(m.name.as_str())
            .chain(m.aliases.iter().map(String::as_str))
            .chain(std::iter::once(short_id(&m.container_id)))
            .map(normalize)
            .filter(|n| !n.is_empty())
    }

    /// The zone of `m`'s network: its IPv4 gateway, else its IPv6 one.
    fn zone_of(m: &Member) -> Option<IpAddr> {
        match (m.gateway.is_unspecified(), m.v6) {
            (false, _) => Some(IpAddr::V4(m.gateway)),
            (true, Some((gw6, _))) => Some(IpAddr::V6(gw6)),
            (true, None) => None,
        }
    }

    fn addresses_of(m: &Member) -> Vec<IpAddr> {
        let mut v = vec![];
        if !m.ip.is_unspecified() {
            v.push(IpAddr::V4(m.ip));
        }
        if let Some((_, ip6)) = m.v6 {
            v.push(IpAddr::V6(ip6));
        }
        v
    }

    /// Adds `members`: the cost is theirs alone, not the other members'.
    pub(crate) fn add(&mut self, members: &[Member]) {
        for m in members {
            let Some(key) = Records::zone_of(m) else {
                continue;
            };
            let zone = self.zones.entry(key).or_default();
            let own = Records::addresses_of(m);
            for n in Records::names_of(m) {
                let ips = zone.entry(n).or_default();
                for ip in &own {
                    if let Err(at) = ips.binary_search(ip) {
                        ips.insert(at, *ip);
                    }
                }
            }
            if let Some((gw6, _)) = m.v6 {
                self.zones6.entry(gw6).or_insert((key, 0)).1 += 1;
            }
        }
    }

    /// Takes `members` out again (one container's, as added before; other
    /// containers' addresses under the same names stay).
    pub(crate) fn remove(&mut self, members: &[Member]) {
        for m in members {
            if let Some((gw6, _)) = m.v6 {
                if let Some(e) = self.zones6.get_mut(&gw6) {
                    e.1 = e.1.saturating_sub(1);
                    if e.1 == 0 {
                        self.zones6.remove(&gw6);
                    }
                }
            }
            let Some(key) = Records::zone_of(m) else {
                continue;
            };
            let Some(zone) = self.zones.get_mut(&key) else {
                continue;
            };
            let own = Records::addresses_of(m);
            for n in Records::names_of(m) {
                if let Some(ips) = zone.get_mut(&n) {
                    ips.retain(|ip| !own.contains(ip));
                    if ips.is_empty() {
                        zone.remove(&n);
                    }
                }
            }
            if zone.is_empty() {
                self.zones.remove(&key);
            }
        }
    }

    /// The same records, also answering `NAME.DOMAIN` for each search domain.
    pub(crate) fn with_search(mut self, domains: Vec<String>) -> Records {
        self.set_search(domains);
        self
    }

    pub(crate) fn set_search(&mut self, domains: Vec<String>) {
        self.search = domains
            .iter()
            .map(|d| normalize(d))
            .filter(|d| !d.is_empty())
            .collect();
    }

    /// The gateways to serve on: networks with at least one member.
    pub(crate) fn gateways(&self) -> Vec<Ipv4Addr> {
        self.zones
            .keys()
            .filter_map(|k| match k {
                IpAddr::V4(g) => Some(*g),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The IPv6 gateways to serve on (networks with IPv6 and a member).
    pub(crate) fn gateways6(&self) -> Vec<Ipv6Addr> {
        self.zones6.keys().copied().collect()
    }

    /// Every address to serve on, both families.
    pub(crate) fn listen_addresses(&self) -> Vec<IpAddr> {
        let v4 = self.gateways().into_iter().map(IpAddr::V4);
        v4.chain(self.gateways6().into_iter().map(IpAddr::V6))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub(crate) fn lookup(&self, gateway: IpAddr, name: &str) -> Option<&[IpAddr]> {
        let gateway = match gateway {
            IpAddr::V4(g) => IpAddr::V4(g),
            IpAddr::V6(g) => self.zones6.get(&g)?.0,
        };
        let zone = self.zones.get(&gateway)?;
        let name = normalize(name);
        if let Some(ips) = zone.get(&name) {
            return Some(ips);
        }
        self.search.iter().find_map(|d| {
            let bare = name.strip_suffix(d.as_str())?.strip_suffix('.')?;
            zone.get(bare).map(Vec::as_slice)
        })
    }
}

/// What to do with one query.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this message.
    Local(Message),
    /// Not ours: pass the query to the host's nameservers.
    Forward,
}

fn response_to(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::error_msg(query.metadata.id, query.metadata.op_code, code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = query.queries.clone();
    m
}

/// The reply to `query` arriving on `gateway` (either of a network's
/// gateways): a member's name answers its addresses (A, AAAA) or an empty
/// NOERROR (other types, or a family it has no address of); an unknown single-label
/// name is NXDOMAIN (it can only have meant a container); anything else is
/// forwarded.
pub fn reply(records: &Records, gateway: IpAddr, query: &Message) -> Reply {
    if query.metadata.message_type != MessageType::Query {
        return Reply::Local(response_to(query, ResponseCode::FormErr));
    }
    if query.metadata.op_code != OpCode::Query {
        return Reply::Local(response_to(query, ResponseCode::NotImp));
    }
    let [q] = query.queries.as_slice() else {
        return Reply::Local(response_to(query, ResponseCode::FormErr));
    };
    let name = normalize(&q.name().to_ascii());
    match records.lookup(gateway, &name) {
        Some(ips) => {
            let mut m = response_to(query, ResponseCode::NoError);
            m.metadata.authoritative = true;
            if q.query_class() == DNSClass::IN {
                for ip in ips {
                    let rdata = match (q.query_type(), ip) {
                        (RecordType::A, IpAddr::V4(a)) => RData::A(A::from(*a)),
                        (RecordType::AAAA, IpAddr::V6(a)) => RData::AAAA(AAAA::from(*a)),
                        _ => continue,
                    };
                    m.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
                }
            }
            Reply::Local(m)
        }
        None if !name.contains('.') => {
            let mut m = response_to(query, ResponseCode::NXDomain);
            m.metadata.authoritative = true;
            Reply::Local(m)
        }
        None => Reply::Forward,
    }
}

/// The `search` (or `domain`) domains of a resolv.conf; the last line wins
/// like in the resolver.
pub fn search_domains(resolv_conf: &str) -> Vec<String> {
    let mut out = vec![];
    for l in resolv_conf.lines() {
        let mut w = l.split_whitespace();
        if let Some("search" | "domain") = w.next() {
            out = w.map(str::to_string).collect();
        }
    }
    out
}

/// The nameservers of a resolv.conf, in order, minus our own gateways
/// (forwarding to ourselves would loop). Loopback ones are kept: the
/// responder runs in the host's network namespace and can reach them.
pub fn upstreams(resolv_conf: &str, gateways: &[IpAddr]) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|ip| ip.split('%').next())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
        })
        .filter(|ip| !gateways.contains(ip))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    const GW1: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
    const GW2: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);
    const G1: IpAddr = IpAddr::V4(GW1);
    const G2: IpAddr = IpAddr::V4(GW2);

    fn member(gw: Ipv4Addr, ip: [u8; 4], name: &str, id: &str, aliases: &[&str]) -> Member {
        Member {
            gateway: gw,
            ip: Ipv4Addr::from(ip),
            name: name.into(),
            container_id: id.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            v6: None,
        }
    }

    fn sample() -> Records {
        let web = "0123456789abcdef".repeat(4);
        Records::build(&[
            member(GW1, [10, 88, 0, 2], "web", &web, &["Www", "api"]),
            member(GW2, [10, 89, 0, 5], "web", &web, &[]),
            member(GW2, [10, 89, 0, 6], "db", &"f".repeat(64), &["api"]),
            member(GW1, [10, 88, 0, 3], "client", &"a".repeat(64), &["api"]),
        ])
    }

    fn query(name: &str, t: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    }

    fn answers(r: Reply) -> (ResponseCode, Vec<IpAddr>) {
        let Reply::Local(m) = r else {
            panic!("forwarded")
        };
        let ips = m
            .answers
            .iter()
            .map(|a| match &a.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("{other:?}"),
            })
            .collect();
        (m.metadata.response_code, ips)
    }

    #[test]
    fn names_aliases_and_short_ids_answer_per_network() {
        let r = sample();
        assert_eq!(r.gateways(), vec![GW1, GW2]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(r.lookup(G1, "web."), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(G2, "WEB"), Some(&[ip("10.89.0.5")][..]));
        assert_eq!(r.lookup(G1, "www"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(G1, "0123456789ab"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(G1, "0123456789abcdef"), None);
        // A shared alias answers every holder on that network, and only there.
        assert_eq!(
            r.lookup(G1, "api"),
            Some(&[ip("10.88.0.2"), ip("10.88.0.3")][..])
        );
        assert_eq!(r.lookup(G2, "api"), Some(&[ip("10.89.0.6")][..]));
        assert_eq!(r.lookup(G1, "db"), None, "no leak between networks");
        assert_eq!(r.lookup("10.90.0.1".parse().unwrap(), "web"), None);
        // Search domains: web.lan is web; other suffixes are not stripped.
        assert_eq!(r.lookup(G1, "web.lan."), None);
        let r = r.with_search(search_domains("search corp.test Lan.\n"));
        assert_eq!(r.lookup(G1, "web.lan."), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(G1, "web.corp.test"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(G1, "web.other.test"), None);
        assert_eq!(r.lookup(G1, "xweb.lan"), None);
        assert_eq!(r.lookup(G1, "db.lan"), None);
        assert!(Records::build(&[]).is_empty());
    }

    #[test]
    fn aaaa_answers_on_either_gateway_of_a_dual_stack_network() {
        let gw6: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let mut web = member(GW1, [10, 88, 0, 2], "web", &"1".repeat(64), &["api"]);
        web.v6 = Some((gw6, "fd00:1::2".parse().unwrap()));
        let old = member(GW1, [10, 88, 0, 3], "old", &"2".repeat(64), &["api"]);
        let mut r = Records::build(&[web.clone(), old.clone()]);
        assert_eq!(r.gateways6(), [gw6]);
        assert_eq!(r.listen_addresses(), [IpAddr::V4(GW1), IpAddr::V6(gw6)]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for gw in [IpAddr::V4(GW1), IpAddr::V6(gw6)] {
            assert_eq!(
                answers(reply(&r, gw, &query("web", RecordType::AAAA))),
                (ResponseCode::NoError, vec![ip("fd00:1::2")])
            );
            assert_eq!(
                answers(reply(&r, gw, &query("web", RecordType::A))),
                (ResponseCode::NoError, vec![ip("10.88.0.2")])
            );
            // A member without IPv6: an empty AAAA answer.
            assert_eq!(
                answers(reply(&r, gw, &query("old", RecordType::AAAA))),
                (ResponseCode::NoError, vec![])
            );
            assert_eq!(
                answers(reply(&r, gw, &query("api", RecordType::AAAA))),
                (ResponseCode::NoError, vec![ip("fd00:1::2")])
            );
        }
        // An unknown IPv6 gateway has no zone.
        assert!(r.lookup(ip("fd00:9::1"), "web").is_none());
        r.remove(&[web, old]);
        assert!(r.is_empty() && r.gateways6().is_empty());
    }

    #[test]
    fn ipv6_only_networks_each_have_their_own_zone() {
        let (g6a, g6b): (Ipv6Addr, Ipv6Addr) =
            ("fd00:a::1".parse().unwrap(), "fd00:b::1".parse().unwrap());
        let none = Ipv4Addr::UNSPECIFIED;
        let mut web = member(none, [0, 0, 0, 0], "web", &"1".repeat(64), &[]);
        web.v6 = Some((g6a, "fd00:a::2".parse().unwrap()));
        let mut db = member(none, [0, 0, 0, 0], "db", &"2".repeat(64), &[]);
        db.v6 = Some((g6b, "fd00:b::2".parse().unwrap()));
        let mut r = Records::build(&[web.clone(), db.clone()]);
        assert!(r.gateways().is_empty(), "no IPv4 to listen on");
        assert_eq!(r.listen_addresses(), [IpAddr::V6(g6a), IpAddr::V6(g6b)]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            answers(reply(&r, IpAddr::V6(g6a), &query("web", RecordType::AAAA))),
            (ResponseCode::NoError, vec![ip("fd00:a::2")])
        );
        assert_eq!(
            answers(reply(&r, IpAddr::V6(g6a), &query("web", RecordType::A))),
            (ResponseCode::NoError, vec![]),
            "no A record, and never 0.0.0.0"
        );
        assert!(r.lookup(IpAddr::V6(g6a), "db").is_none(), "no leak");
        assert!(r.lookup(IpAddr::V4(none), "web").is_none());
        r.remove(&[web, db]);
        assert!(r.is_empty() && r.gateways6().is_empty());
    }

    #[test]
    fn replies_answer_refuse_or_forward() {
        let r = sample();
        let q = query("web.", RecordType::A);
        let (code, ips) = answers(reply(&r, G1, &q));
        assert_eq!(
            (code, ips),
            (ResponseCode::NoError, vec!["10.88.0.2".parse().unwrap()])
        );
        let Reply::Local(m) = reply(&r, G1, &q) else {
            panic!()
        };
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.queries, q.queries);
        // Known name, no IPv6: empty NOERROR so resolvers fall back to A.
        assert_eq!(
            answers(reply(&r, G1, &query("web", RecordType::AAAA))),
            (ResponseCode::NoError, vec![])
        );
        // Gone or foreign single-label names: NXDOMAIN, never forwarded.
        assert_eq!(
            answers(reply(&r, G1, &query("db", RecordType::A))),
            (ResponseCode::NXDomain, vec![])
        );
        assert!(matches!(
            reply(&r, G1, &query("upstream.test.", RecordType::A)),
            Reply::Forward
        ));
        let mut bad = query("web", RecordType::A);
        bad.queries.clear();
        assert_eq!(answers(reply(&r, G1, &bad)).0, ResponseCode::FormErr);
        let mut resp = query("web", RecordType::A);
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(answers(reply(&r, G1, &resp)).0, ResponseCode::FormErr);
        // Round trip through the wire format.
        let Reply::Local(m) = reply(&r, G1, &q) else {
            panic!()
        };
        let back = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        assert_eq!(back.answers.len(), 1);
    }

    #[test]
    fn upstreams_come_from_resolv_conf_minus_our_gateways() {
        let conf = "# x\nnameserver 127.0.0.53\nnameserver 10.88.0.1\nsearch lan\n\
                    nameserver fe80::1%eth0\nnameserver bogus\nnameserver 198.51.100.53\n";
        assert_eq!(
            upstreams(conf, &[IpAddr::V4(GW1)]),
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap(),
                "198.51.100.53".parse().unwrap()
            ]
        );
        assert!(upstreams("", &[]).is_empty());
    }

    use proptest::prelude::*;

    /// Containers c0..c5 with an address each per network and names and
    /// aliases drawn from a small pool, so names collide across containers.
    fn container(i: usize, nets: &[bool; 2], names: &[usize]) -> Vec<Member> {
        let pool = ["web", "db", "api", "WEB", "cache"];
        [GW1, Ipv4Addr::new(10, 89, 0, 1)]
            .iter()
            .zip(nets)
            .filter(|(_, on)| **on)
            .map(|(gw, _)| Member {
                gateway: *gw,
                ip: Ipv4Addr::new(gw.octets()[0], gw.octets()[1], 0, 2 + i as u8),
                name: format!("c{i}"),
                container_id: format!("{i:0>64}"),
                aliases: names
                    .iter()
                    .map(|n| pool[n % pool.len()].to_string())
                    .collect(),
                v6: i.is_multiple_of(2).then(|| {
                    let gw6 = Ipv6Addr::new(0xfd00, u16::from(gw.octets()[1]), 0, 0, 0, 0, 0, 1);
                    (
                        gw6,
                        Ipv6Addr::new(
                            0xfd00,
                            u16::from(gw.octets()[1]),
                            0,
                            0,
                            0,
                            0,
                            0,
                            2 + i as u16,
                        ),
                    )
                }),
            })
            .collect()
    }

    proptest! {
        /// Starting and ending containers one at a time leaves the records
        /// a full rebuild from the containers left would make.
        #[test]
        fn updates_one_container_at_a_time_match_a_full_build(
            ops in proptest::collection::vec(
                (0usize..6, any::<bool>(), any::<[bool; 2]>(),
                 proptest::collection::vec(0usize..5, 0..3)), 1..40),
        ) {
            let mut live: std::collections::BTreeMap<usize, Vec<Member>> = Default::default();
            let mut r = Records::default();
            for (i, start, nets, names) in ops {
                if let Some(old) = live.remove(&i) {
                    r.remove(&old);
                }
                if start {
                    let new = container(i, &nets, &names);
                    r.add(&new);
                    live.insert(i, new);
                }
                let all: Vec<Member> = live.values().flatten().cloned().collect();
                prop_assert_eq!(&r, &Records::build(&all));
            }
        }
    }
}

//! Pure name records of the DNS responder: which names answer which address
//! on which network (keyed by the gateway the query arrived on), and the reply.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// Answers never outlive a container: resolvers must ask again every time.
const TTL: u32 = 0;

/// One container on one user-defined network, as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub name: String,
    pub container_id: String,
    pub aliases: Vec<String>,
}

/// Every network's names: gateway -> lowercase name -> addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    zones: BTreeMap<Ipv4Addr, HashMap<String, Vec<Ipv4Addr>>>,
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

    /// Adds `members`: the cost is theirs alone, not the other members'.
    pub fn add(&mut self, members: &[Member]) {
        for m in members {
            let zone = self.zones.entry(m.gateway).or_default();
            for n in Records::names_of(m) {
                let ips = zone.entry(n).or_default();
                if let Err(at) = ips.binary_search(&m.ip) {
                    ips.insert(at, m.ip);
                }
            }
        }
    }

    /// Takes `members` out again (one container's, as added before; other
    /// containers' addresses under the same names stay).
    pub fn remove(&mut self, members: &[Member]) {
        for m in members {
            let Some(zone) = self.zones.get_mut(&m.gateway) else {
                continue;
            };
            for n in Records::names_of(m) {
                if let Some(ips) = zone.get_mut(&n) {
                    ips.retain(|ip| *ip != m.ip);
                    if ips.is_empty() {
                        zone.remove(&n);
                    }
                }
            }
            if zone.is_empty() {
                self.zones.remove(&m.gateway);
            }
        }
    }

    /// The same records, also answering `NAME.DOMAIN` for each search domain.
    pub fn with_search(mut self, domains: Vec<String>) -> Records {
        self.set_search(domains);
        self
    }

    pub fn set_search(&mut self, domains: Vec<String>) {
        self.search = domains
            .iter()
            .map(|d| normalize(d))
            .filter(|d| !d.is_empty())
            .collect();
    }

    /// The gateways to serve on: networks with at least one member.
    pub fn gateways(&self) -> Vec<Ipv4Addr> {
        self.zones.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn lookup(&self, gateway: Ipv4Addr, name: &str) -> Option<&[Ipv4Addr]> {
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

/// The reply to `query` arriving on `gateway`: a member's name answers its
/// address (A) or an empty NOERROR (other types); an unknown single-label
/// name is NXDOMAIN (it can only have meant a container); anything else is
/// forwarded.
pub fn reply(records: &Records, gateway: Ipv4Addr, query: &Message) -> Reply {
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
            if q.query_type() == RecordType::A && q.query_class() == DNSClass::IN {
                for ip in ips {
                    m.add_answer(Record::from_rdata(
                        q.name().clone(),
                        TTL,
                        RData::A(A::from(*ip)),
                    ));
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
pub fn upstreams(resolv_conf: &str, gateways: &[Ipv4Addr]) -> Vec<IpAddr> {
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
        .filter(|ip| !matches!(ip, IpAddr::V4(v4) if gateways.contains(v4)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    const GW1: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
    const GW2: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);

    fn member(gw: Ipv4Addr, ip: [u8; 4], name: &str, id: &str, aliases: &[&str]) -> Member {
        Member {
            gateway: gw,
            ip: Ipv4Addr::from(ip),
            name: name.into(),
            container_id: id.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
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

    fn answers(r: Reply) -> (ResponseCode, Vec<Ipv4Addr>) {
        let Reply::Local(m) = r else {
            panic!("forwarded")
        };
        let ips = m
            .answers
            .iter()
            .map(|a| match &a.data {
                RData::A(a) => a.0,
                other => panic!("{other:?}"),
            })
            .collect();
        (m.metadata.response_code, ips)
    }

    #[test]
    fn names_aliases_and_short_ids_answer_per_network() {
        let r = sample();
        assert_eq!(r.gateways(), vec![GW1, GW2]);
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(r.lookup(GW1, "web."), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(GW2, "WEB"), Some(&[ip("10.89.0.5")][..]));
        assert_eq!(r.lookup(GW1, "www"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(GW1, "0123456789ab"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(GW1, "0123456789abcdef"), None);
        // A shared alias answers every holder on that network, and only there.
        assert_eq!(
            r.lookup(GW1, "api"),
            Some(&[ip("10.88.0.2"), ip("10.88.0.3")][..])
        );
        assert_eq!(r.lookup(GW2, "api"), Some(&[ip("10.89.0.6")][..]));
        assert_eq!(r.lookup(GW1, "db"), None, "no leak between networks");
        assert_eq!(r.lookup(Ipv4Addr::new(10, 90, 0, 1), "web"), None);
        // Search domains: web.lan is web; other suffixes are not stripped.
        assert_eq!(r.lookup(GW1, "web.lan."), None);
        let r = r.with_search(search_domains("search corp.test Lan.\n"));
        assert_eq!(r.lookup(GW1, "web.lan."), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(GW1, "web.corp.test"), Some(&[ip("10.88.0.2")][..]));
        assert_eq!(r.lookup(GW1, "web.other.test"), None);
        assert_eq!(r.lookup(GW1, "xweb.lan"), None);
        assert_eq!(r.lookup(GW1, "db.lan"), None);
        assert!(Records::build(&[]).is_empty());
    }

    #[test]
    fn replies_answer_refuse_or_forward() {
        let r = sample();
        let q = query("web.", RecordType::A);
        let (code, ips) = answers(reply(&r, GW1, &q));
        assert_eq!(
            (code, ips),
            (ResponseCode::NoError, vec!["10.88.0.2".parse().unwrap()])
        );
        let Reply::Local(m) = reply(&r, GW1, &q) else {
            panic!()
        };
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.queries, q.queries);
        // Known name, no IPv6: empty NOERROR so resolvers fall back to A.
        assert_eq!(
            answers(reply(&r, GW1, &query("web", RecordType::AAAA))),
            (ResponseCode::NoError, vec![])
        );
        // Gone or foreign single-label names: NXDOMAIN, never forwarded.
        assert_eq!(
            answers(reply(&r, GW1, &query("db", RecordType::A))),
            (ResponseCode::NXDomain, vec![])
        );
        assert!(matches!(
            reply(&r, GW1, &query("upstream.test.", RecordType::A)),
            Reply::Forward
        ));
        let mut bad = query("web", RecordType::A);
        bad.queries.clear();
        assert_eq!(answers(reply(&r, GW1, &bad)).0, ResponseCode::FormErr);
        let mut resp = query("web", RecordType::A);
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(answers(reply(&r, GW1, &resp)).0, ResponseCode::FormErr);
        // Round trip through the wire format.
        let Reply::Local(m) = reply(&r, GW1, &q) else {
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
            upstreams(conf, &[GW1]),
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

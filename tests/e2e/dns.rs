//! Name resolution on user-defined networks: names, aliases and short ids
//! answer on their own network only, outside names go to the host's
//! nameservers, and the responder follows the containers (and leaves).

use crate::common::*;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UPSTREAM: &str = "198.51.100.53";

/// A test host whose "host resolv.conf" names only the fake upstream (so no
/// query ever leaves the test's namespaces).
struct DnsHost {
    h: TestHost,
    resolv: PathBuf,
}

impl DnsHost {
    fn new() -> DnsHost {
        DnsHost::with_resolv(&format!("nameserver {UPSTREAM}\noptions ndots:1\n"))
    }

    fn with_resolv(content: &str) -> DnsHost {
        let h = TestHost::new();
        let resolv = h.root.with_file_name("host-resolv.conf");
        std::fs::write(&resolv, content).unwrap();
        DnsHost { h, resolv }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self
            .h
            .command(args)
            .env("MINIRT_HOST_RESOLV_CONF", &self.resolv)
            .output()
            .expect("run minirt");
        assert!(
            o.status.success(),
            "minirt {args:?} failed: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn exec(&self, ctr: &str, cmd: &[&str]) -> std::process::Output {
        let mut args = vec!["exec", ctr];
        args.extend_from_slice(cmd);
        self.h
            .command(&args)
            .env("MINIRT_HOST_RESOLV_CONF", &self.resolv)
            .output()
            .expect("run minirt")
    }

    fn pid(&self, ctr: &str) -> i32 {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", ctr])).unwrap();
        v[0]["State"]["Pid"].as_i64().unwrap() as i32
    }

    fn id(&self, ctr: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", ctr])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    }

    fn responder_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.h.run_root.join("dns.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// `nslookup NAME` inside `ctr`: the addresses answered, or the error line.
fn nslookup(d: &DnsHost, ctr: &str, name: &str) -> Result<Vec<String>, String> {
    let o = d.exec(ctr, &["nslookup", "-type=a", name]);
    let out = stdout(&o);
    if !o.status.success() {
        return Err(format!("{out}{}", stderr(&o)));
    }
    let after_name = out.split_once("Name:").map(|(_, r)| r).unwrap_or("");
    Ok(after_name
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect())
}

/// Runs `f` on a thread that joined the network namespace of `pid`.
fn in_netns_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            assert_eq!(
                // SAFETY: setns on a namespace fd we hold, for this thread only.
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// One A query over UDP from the current netns; the code and addresses.
fn query(server: Ipv4Addr, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    s.send_to(&q.to_vec().unwrap(), (server, 53)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("an answer within 3 s");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    let ips = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (m.metadata.response_code, ips)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn assert_responder_gone(d: &DnsHost, pid: i32) {
    wait_for("the responder to leave", Duration::from_secs(10), || {
        !alive(pid)
    });
    assert!(d.responder_pid().is_none(), "pid file left");
    assert!(!d.h.run_root.join("dns.sock").exists(), "socket left");
}

#[test]
fn names_aliases_and_short_ids_resolve_then_nxdomain_and_the_responder_leaves() {
    let d = DnsHost::new();
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    assert!(d.responder_pid().is_none(), "no member, no responder");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "testbr",
        "--network-alias",
        "www",
        "--network-alias",
        "api",
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run", "-d", "--name", "client", "--net", "testbr", "busybox", "sleep", "300",
    ]);
    let responder = d.responder_pid().expect("responder pid file");
    assert!(alive(responder));

    let resolv = stdout(&d.exec("client", &["cat", "/etc/resolv.conf"]));
    assert!(resolv.contains("nameserver 10.88.0.1\n"), "{resolv}");
    assert!(
        resolv.contains("options ndots:1"),
        "host options kept: {resolv}"
    );
    let short = d.id("web")[..12].to_string();
    for name in ["web", "www", "api", short.as_str(), "WEB"] {
        assert_eq!(
            nslookup(&d, "client", name),
            Ok(vec!["10.88.0.2".into()]),
            "{name}"
        );
    }
    let o = d.exec("client", &["ping", "-c", "1", "-W", "5", "web"]);
    assert!(o.status.success(), "ping web: {}{}", stdout(&o), stderr(&o));
    // And the other way round.
    assert_eq!(nslookup(&d, "web", "client"), Ok(vec!["10.88.0.3".into()]));

    // Median lookup time from inside the client (its netns, real sockets).
    let client = d.pid("client");
    let mut times = in_netns_of(client, || {
        (0..200)
            .map(|_| {
                let t = Instant::now();
                let (code, ips) = query(ip("10.88.0.1"), "web");
                assert_eq!((code, ips), (ResponseCode::NoError, vec![ip("10.88.0.2")]));
                t.elapsed()
            })
            .collect::<Vec<_>>()
    });
    times.sort();
    eprintln!(
        "DNS lookup from a container: median {:?}, p90 {:?}, max {:?} (200 queries)",
        times[100], times[180], times[199]
    );

    // Over TCP too (length-prefixed, two queries on one connection).
    in_netns_of(client, || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("10.88.0.1:53").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for name in ["www", "client"] {
            let mut q = Message::query();
            q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            let raw = q.to_vec().unwrap();
            c.write_all(&(raw.len() as u16).to_be_bytes()).unwrap();
            c.write_all(&raw).unwrap();
            let mut len = [0u8; 2];
            c.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut buf).unwrap();
            let m = Message::from_vec(&buf).unwrap();
            assert_eq!(m.metadata.id, q.metadata.id);
            assert_eq!(m.answers.len(), 1, "{name}: {m:?}");
        }
    });

    d.ok(&["rm", "-f", "web"]);
    let e = nslookup(&d, "client", "web").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    let e = nslookup(&d, "client", "www").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    assert_eq!(
        d.responder_pid(),
        Some(responder),
        "reloaded, not restarted"
    );

    d.ok(&["rm", "-f", "client"]);
    assert_responder_gone(&d, responder);
}

#[test]
fn names_stay_on_their_network_and_follow_connect_disconnect() {
    let d = DnsHost::new();
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "a"]);
    d.ok(&["network", "create", "--subnet", "10.89.0.0/24", "b"]);
    d.ok(&[
        "run", "-d", "--name", "web", "--net", "a", "busybox", "sleep", "300",
    ]);
    d.ok(&[
        "run", "-d", "--name", "onb", "--net", "b", "busybox", "sleep", "300",
    ]);
    d.ok(&[
        "run", "-d", "--name", "ona", "--net", "a", "busybox", "sleep", "300",
    ]);
    d.ok(&["run", "-d", "--name", "def", "busybox", "sleep", "300"]);

    // Another network's and the default network's names do not resolve.
    let e = nslookup(&d, "onb", "web").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    let e = nslookup(&d, "ona", "onb").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    let e = nslookup(&d, "ona", "def").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    // The default network has no responder: its resolv.conf is the host's.
    let resolv = stdout(&d.exec("def", &["cat", "/etc/resolv.conf"]));
    assert!(
        resolv.contains(&format!("nameserver {UPSTREAM}")),
        "{resolv}"
    );

    // On two networks: each answers with the address on that network.
    let o =
        d.h.command(&["network", "connect", "--alias", "web-b", "b", "web"])
            .env("MINIRT_HOST_RESOLV_CONF", &d.resolv)
            .output()
            .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(nslookup(&d, "onb", "web"), Ok(vec!["10.89.0.3".into()]));
    assert_eq!(nslookup(&d, "onb", "web-b"), Ok(vec!["10.89.0.3".into()]));
    assert_eq!(nslookup(&d, "ona", "web"), Ok(vec!["10.88.0.2".into()]));
    let e = nslookup(&d, "ona", "web-b").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "an alias on b only: {e}");

    d.ok(&["network", "disconnect", "b", "web"]);
    let e = nslookup(&d, "onb", "web").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");
    assert_eq!(nslookup(&d, "ona", "web"), Ok(vec!["10.88.0.2".into()]));

    // A crashed responder comes back with the next command that needs it.
    let pid = d.responder_pid().unwrap();
    // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("the responder to die", Duration::from_secs(5), || {
        !alive(pid)
    });
    d.ok(&[
        "run", "-d", "--name", "late", "--net", "a", "busybox", "sleep", "300",
    ]);
    let again = d.responder_pid().unwrap();
    assert_ne!(again, pid);
    assert_eq!(nslookup(&d, "ona", "late"), Ok(vec!["10.88.0.4".into()]));
    assert_eq!(nslookup(&d, "ona", "web"), Ok(vec!["10.88.0.2".into()]));
    let e = nslookup(&d, "onb", "late").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");

    // Stop (not rm) removes the name too.
    d.ok(&["stop", "-t", "1", "late"]);
    let e = nslookup(&d, "ona", "late").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "{e}");

    d.ok(&["rm", "-f", "web", "onb", "ona", "def", "late"]);
    assert_responder_gone(&d, again);
}

/// A tiny DNS server on `addr` inside the netns at `ns_path`: answers
/// `upstream.test` with 203.0.113.7, NXDOMAIN otherwise. Stops on drop.
struct FakeUpstream {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    ready: std::sync::mpsc::Receiver<()>,
}

impl FakeUpstream {
    fn start(ns_path: String, addr: SocketAddr) -> FakeUpstream {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, ready) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path).unwrap();
            assert_eq!(
                // SAFETY: setns on a namespace fd we hold, for this thread only.
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let _ = tx.send(());
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, src)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.queries = q.queries.clone();
                match q.queries.first() {
                    Some(qq) if qq.name().to_ascii().eq_ignore_ascii_case("upstream.test.") => {
                        if qq.query_type() == RecordType::A {
                            r.add_answer(Record::from_rdata(
                                qq.name().clone(),
                                60,
                                RData::A(ip("203.0.113.7").into()),
                            ));
                        }
                    }
                    _ => r.metadata.response_code = ResponseCode::NXDomain,
                }
                let _ = s.send_to(&r.to_vec().unwrap(), src);
            }
        });
        let up = FakeUpstream {
            stop,
            thread: Some(thread),
            ready,
        };
        up.ready
            .recv_timeout(Duration::from_secs(5))
            .expect("fake upstream up");
        up
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn outside_names_are_forwarded_to_the_host_nameservers() {
    // A search domain: resolvers try NAME.corp.test before NAME.
    let d = DnsHost::with_resolv(&format!("nameserver {UPSTREAM}\nsearch corp.test\n"));
    // The fake upstream host: its own netns, joined to the test host by a veth.
    let up = Peer::new(&d.h, "up", "198.51.100.1/24", "198.51.100.53/24");
    let _server = FakeUpstream::start(
        format!("/run/netns/{}", up.ns),
        format!("{UPSTREAM}:53").parse().unwrap(),
    );
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    d.ok(&[
        "run", "-d", "--name", "client", "--net", "testbr", "busybox", "sleep", "300",
    ]);
    assert_eq!(
        nslookup(&d, "client", "upstream.test"),
        Ok(vec!["203.0.113.7".into()])
    );
    let e = nslookup(&d, "client", "nothing.test").unwrap_err();
    assert!(e.contains("NXDOMAIN"), "upstream's own answer: {e}");
    // Container names still answer locally, also under the search domain.
    let resolv = stdout(&d.exec("client", &["cat", "/etc/resolv.conf"]));
    assert_eq!(resolv, "nameserver 10.88.0.1\nsearch corp.test\n");
    for name in ["client", "client.corp.test"] {
        assert_eq!(nslookup(&d, "client", name), Ok(vec!["10.88.0.2".into()]));
    }
    d.ok(&["rm", "-f", "client"]);
}

#[test]
fn lookups_stay_right_while_containers_come_and_go() {
    let d = DnsHost::new();
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    d.ok(&[
        "run", "-d", "--name", "web", "--net", "testbr", "busybox", "sleep", "300",
    ]);
    d.ok(&[
        "run", "-d", "--name", "client", "--net", "testbr", "busybox", "sleep", "300",
    ]);
    let client = d.pid("client");
    let done = AtomicBool::new(false);
    let churned = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) || n < 2 {
                let name = format!("tmp{n}");
                d.ok(&[
                    "run", "-d", "--name", &name, "--net", "testbr", "busybox", "sleep", "300",
                ]);
                d.ok(&["rm", "-f", &name]);
                n += 1;
            }
            n
        });
        let answers = in_netns_of(client, || {
            (0..50)
                .map(|i| {
                    std::thread::sleep(Duration::from_millis(if i % 5 == 0 { 50 } else { 5 }));
                    query(ip("10.88.0.1"), "web")
                })
                .collect::<Vec<_>>()
        });
        done.store(true, Ordering::SeqCst);
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(
                a,
                &(ResponseCode::NoError, vec![ip("10.88.0.2")]),
                "lookup {i}"
            );
        }
        churn.join().expect("churn")
    });
    assert!(churned >= 2);
    // The churned names are all gone.
    in_netns_of(client, || {
        for n in 0..churned {
            assert_eq!(
                query(ip("10.88.0.1"), &format!("tmp{n}")).0,
                ResponseCode::NXDomain
            );
        }
    });
    d.ok(&["rm", "-f", "web", "client"]);
}

/// By default the responder outlives its last member for a while: the next
/// container reuses it (no process start per `run --rm`), and meanwhile it
/// holds no DNS socket. With a short linger it leaves on its own.
#[test]
fn the_responder_lingers_for_the_next_member_without_holding_port_53() {
    let d = DnsHost::new();
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    let run_rm = |linger: &str, rest: &[&str]| {
        let mut args = vec!["run", "--rm", "--net", "testbr"];
        args.extend_from_slice(rest);
        let o =
            d.h.command(&args)
                .env("MINIRT_HOST_RESOLV_CONF", &d.resolv)
                .env("MINIRT_DNS_LINGER", linger)
                .output()
                .expect("run minirt");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let lookup_self = [
        "--name",
        "probe",
        "busybox",
        "nslookup",
        "probe",
        "10.88.0.1",
    ];
    // A short linger: the responder serves, then leaves by itself.
    let seen = run_rm("1", &lookup_self);
    assert!(seen.contains("Address: 10.88.0."), "{seen}");
    let short = d.responder_pid().expect("a lingering responder");
    assert_responder_gone(&d, short);

    // A long one: port 53 is let go with the last member, the process stays
    // and the next member reuses it.
    let seen = run_rm("60", &lookup_self);
    assert!(seen.contains("Address: 10.88.0."), "{seen}");
    let long = d.responder_pid().expect("a lingering responder");
    assert!(alive(long));
    let dns_sockets = stdout(&d.h.in_ns("ss", &["-H", "-lnu", "sport = :53"]));
    assert_eq!(dns_sockets.trim(), "", "port 53 still bound while idle");
    let seen = run_rm("60", &lookup_self);
    assert!(seen.contains("Address: 10.88.0."), "{seen}");
    assert_eq!(d.responder_pid(), Some(long), "restarted, not reused");
}

//! The IPv6 loopback proxy: `-p [::1]:HOSTPORT:CTRPORT` (TCP).
//!
//! IPv6 has no `route_localnet`: the kernel drops a packet from ::1 that a
//! DNAT sends out of `lo` to a container, so nftables cannot serve a port
//! published on [::1] (every other host address stays in the kernel). As
//! Docker's userland proxy does, a small process, `minirt __proxy6 PORT
//! TARGET PIDFILE`, listens on [::1]:PORT and copies each connection to the
//! container's address (its IPv6 one, else its IPv4 one: a v4-only container
//! is reachable from [::1] too). It listens on ::1 only, so nothing off the
//! host reaches it (the guard chain drops ::1 not arriving on `lo` anyway).
//!
//! It starts after the container's network step through
//! `network::service` (new session, inherited fds closed): the first process
//! binds, forks the proxy, writes the proxy's pid and start time into the
//! container's run dir and exits, so a port in use fails the start with the
//! bind's error. It is killed with the container's network teardown
//! (`endpoint::detach*`, which `rm`, the monitor's finish and reconcile all
//! go through), after its start time is checked.

use super::NetworkError;
use crate::store::networks::{EndpointRow, PortBindingRow};
use crate::{util, Instance};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One proxied port: [::1]:host_port to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    pub host_port: u16,
    pub target: SocketAddr,
}

/// The forwards of an endpoint's bindings: the TCP ones on [::1], to the
/// endpoint's IPv6 address when it has one, else its IPv4 address. Pure.
pub(crate) fn forwards(ep: &EndpointRow, ports: &[PortBindingRow]) -> Vec<Forward> {
    let addr: IpAddr = match (ep.ip6, ep.ip4()) {
        (Some(ip6), _) => ip6.into(),
        (None, Some(ip4)) => ip4.into(),
        (None, None) => return vec![],
    };
    ports
        .iter()
        .filter(|p| p.endpoint_id == ep.id && p.proto == "tcp")
        .filter(|p| p.host_ip.parse::<Ipv6Addr>().is_ok_and(|h| h.is_loopback()))
        .map(|p| Forward {
            host_port: p.host_port,
            target: SocketAddr::new(addr, p.container_port),
        })
        .collect()
}

fn pid_file(inst: &Instance, id: &str, port: u16) -> PathBuf {
    inst.container_run_dir(id)
        .join(format!("proxy6-{port}.pid"))
}

fn log_file(inst: &Instance, id: &str) -> PathBuf {
    inst.container_run_dir(id).join("proxy6.log")
}

/// Starts one proxy per forward; on a failure the ones started are killed
/// and the error is the proxy's own line (e.g. the port is in use).
pub(crate) fn start(inst: &Instance, id: &str, fwds: &[Forward]) -> Result<(), NetworkError> {
    if fwds.is_empty() {
        return Ok(());
    }
    let log = log_file(inst, id);
    for f in fwds {
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|out| {
                let before = out.metadata().map(|m| m.len()).unwrap_or(0);
                let args = [
                    f.host_port.to_string(),
                    f.target.to_string(),
                    pid_file(inst, id, f.host_port).display().to_string(),
                ];
                super::service::start_args(inst, "__proxy6", &args, out.into())
                    .map_err(|e| std::io::Error::other(last_line(&log, before, e)))
            });
        if let Err(e) = res {
            stop(inst, id);
            return Err(NetworkError::Conflict(format!(
                "publishing [::1]:{}: {e}",
                f.host_port
            )));
        }
    }
    Ok(())
}

/// The proxy's error line (what it wrote past `from`), else `e`.
fn last_line(log: &Path, from: u64, e: std::io::Error) -> String {
    std::fs::read(log)
        .ok()
        .and_then(|b| {
            let tail = String::from_utf8_lossy(b.get(from as usize..)?).into_owned();
            tail.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim_start_matches("minirt: ").to_string())
        })
        .unwrap_or_else(|| e.to_string())
}

/// Kills the container's proxies (the recorded pid, if it is still the
/// process that started then) and waits until they are gone, so the port
/// is free when this returns. Harmless when there are none.
pub(crate) fn stop(inst: &Instance, id: &str) {
    let Ok(dir) = std::fs::read_dir(inst.container_run_dir(id)) else {
        return;
    };
    let mut pids = vec![];
    for e in dir.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("proxy6-") && name.ends_with(".pid")) {
            continue;
        }
        if let Some((pid, start)) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|s| parse_pid_file(&s))
        {
            if util::process_alive(pid, start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                pids.push((pid, start));
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
    util::wait_until(Duration::from_secs(2), Duration::from_millis(1), || {
        !pids.iter().any(|(p, s)| util::process_alive(*p, *s))
    });
}

/// "PID START" as the proxy's first process writes it: the guardian's pid
/// file format without the binary's identity, read by the same parser.
pub(crate) fn parse_pid_file(s: &str) -> Option<(i32, u64)> {
    super::guard::parse_pid_file(s).map(|(pid, start, _)| (pid, start))
}

/// `minirt __proxy6 PORT TARGET PIDFILE`: binds [::1]:PORT (the error is
/// the start's error), forks the proxy, records its pid and start time in
/// PIDFILE and returns; the proxy serves until it is killed.
pub fn run(port: u16, target: SocketAddr, pid_file: &Path) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port))
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind [::1]:{port}: {e}")))?;
    // No thread exists yet.
    if let Some(child) = super::service::detach_pid()? {
        let start = util::process_start_time(child).unwrap_or(0);
        let tmp = pid_file.with_extension("tmp");
        std::fs::write(&tmp, format!("{child} {start}\n"))?;
        std::fs::rename(&tmp, pid_file)?;
        return Ok(());
    }
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        // A failed spawn (thread limit) drops the connection.
        let _ = spawn(move || serve(client, target));
    }
    Ok(())
}

/// Small stacks: a connection needs two threads and a copy buffer each.
fn spawn<F: FnOnce() + Send + 'static>(f: F) -> std::io::Result<()> {
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(f)
        .map(|_| ())
}

fn serve(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    if spawn(move || pipe(c2, u2)).is_err() {
        return;
    }
    pipe(upstream, client);
}

/// Copies `from` to `to` until end of file, then half-closes `to` (the
/// other direction goes on until its own end of file).
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    // The other side is gone: stop reading this one too.
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, ip6: Option<&str>) -> EndpointRow {
        EndpointRow {
            id: "e1".into(),
            container_id: "c1".into(),
            network_id: "n1".into(),
            ifname: "eth0".into(),
            ip: ip.parse().unwrap(),
            mac: String::new(),
            host_ifname: String::new(),
            aliases: vec![],
            ip6: ip6.map(|s| s.parse().unwrap()),
        }
    }

    fn binding(proto: &str, host_ip: &str, host_port: u16, ctr: u16) -> PortBindingRow {
        PortBindingRow {
            container_id: "c1".into(),
            endpoint_id: "e1".into(),
            proto: proto.into(),
            host_ip: host_ip.into(),
            host_port,
            container_port: ctr,
        }
    }

    #[test]
    fn forwards_only_tcp_on_v6_loopback_preferring_the_v6_address() {
        let ports = [
            binding("tcp", "::1", 8080, 80),
            binding("tcp", "0.0.0.0", 8081, 81),
            binding("tcp", "::", 8082, 82),
            binding("tcp", "127.0.0.1", 8083, 83),
            binding("udp", "::1", 8084, 84),
        ];
        let f = forwards(&ep("10.1.0.2", Some("fd00:1::2")), &ports);
        assert_eq!(
            f,
            vec![Forward {
                host_port: 8080,
                target: "[fd00:1::2]:80".parse().unwrap()
            }]
        );
        let f = forwards(&ep("10.1.0.2", None), &ports);
        assert_eq!(f[0].target, "10.1.0.2:80".parse().unwrap());
        // Another endpoint's bindings are not this one's.
        let mut other = binding("tcp", "::1", 9090, 90);
        other.endpoint_id = "e2".into();
        assert!(forwards(&ep("10.1.0.2", None), &[other]).is_empty());
    }

    #[test]
    fn pid_file_round_trip_and_garbage() {
        assert_eq!(parse_pid_file("123 456\n"), Some((123, 456)));
        assert_eq!(parse_pid_file("123"), None);
        assert_eq!(parse_pid_file("x 1"), None);
    }

    #[test]
    fn proxies_both_ways_with_half_close() {
        // Loopback only: an echo server that uppercases, then closes after
        // the client's end of file.
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut all = vec![];
            s.read_to_end(&mut all).unwrap();
            s.write_all(&all.to_ascii_uppercase()).unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        std::thread::spawn(move || {
            let (c, _) = front.accept().unwrap();
            serve(c, target);
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "HELLO");
    }
}

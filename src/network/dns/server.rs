//! The responder (`minirt __dns`): UDP and TCP port 53 on each served
//! gateway, answers from the records, forwards the rest; reloads on request.

use super::control::{lock_path, members, members_of, pid_path, socket_path};
use super::records::{reply, search_domains, upstreams, Member, Records, Reply};
use super::{host_resolv_conf, DnsError};
use crate::store::Store;
use crate::Instance;
use futures::channel::mpsc;
use futures::StreamExt;
use hickory_proto::op::{Message, ResponseCode};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket, UnixListener};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Per upstream server, per query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every query reads: swapped whole on reload, so a query sees either
/// the old or the new set, never a half-made one, and none waits.
#[derive(Default, Clone)]
struct State {
    records: Records,
    upstreams: Vec<IpAddr>,
}
type Shared = Arc<RwLock<Arc<State>>>;

fn snapshot(shared: &Shared) -> Arc<State> {
    match shared.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// The sockets of one gateway: dropping it closes them.
struct Served {
    tasks: Vec<JoinHandle<()>>,
}

impl Served {
    async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// `minirt __dns`: forks once more (the caller reaps this process at once),
/// then serves until no member has been left for a while (see `linger`).
pub fn run_responder(inst: &Instance) -> Result<(), DnsError> {
    // The control socket listens before the fork: once this process has
    // exited (the starter waits for that), requests queue in the backlog
    // and the starter needs no polling to find the responder ready.
    let _ = std::fs::remove_file(socket_path(inst));
    let control = std::os::unix::net::UnixListener::bind(socket_path(inst))?;
    control.set_nonblocking(true)?;
    // No other thread exists yet (the runtime is built after).
    if !crate::network::service::detach()? {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(async {
        let control = UnixListener::from_std(control)?;
        serve(inst, control).await
    });
    if let Err(e) = &r {
        warn!("{e}");
    }
    let _ = std::fs::remove_file(pid_path(inst));
    r
}

/// How long the responder stays once its last member has left (its DNS
/// sockets closed, only the control socket open), so back-to-back
/// `run --rm` on a network find it running rather than start one each time
/// (a process start and a store read, ~3 ms here). MINIRT_DNS_LINGER
/// (seconds) changes it; 0 leaves at once.
fn linger() -> Duration {
    std::env::var("MINIRT_DNS_LINGER")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// How often a serving responder checks that it is still the one commands
/// reach (one read of the pid file).
const ORPHAN_CHECK: Duration = Duration::from_secs(10);

/// True while the pid file names this process and the control socket is
/// there: the responder commands find.
fn still_ours(inst: &Instance) -> bool {
    let named = std::fs::read_to_string(pid_path(inst))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    named == Some(std::process::id()) && socket_path(inst).exists()
}

/// Leaves if no command is talking to us: under the command's own lock, so
/// a command either finds us serving or finds nothing and starts a new one.
fn try_leave(inst: &Instance) -> bool {
    let Ok(lock) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(inst))
    else {
        // The run root is gone (wiped, unmounted): nobody can reach us.
        return true;
    };
    match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => {
            let _ = std::fs::remove_file(socket_path(inst));
            let _ = std::fs::remove_file(pid_path(inst));
            // Held until the process ends: nobody connects to a socket
            // that is about to go away.
            std::mem::forget(held);
            true
        }
        Err(_) => false,
    }
}

async fn serve(inst: &Instance, control: UnixListener) -> Result<(), DnsError> {
    std::fs::write(pid_path(inst), format!("{}\n", std::process::id()))?;
    let shared: Shared = Arc::default();
    let mut served: BTreeMap<IpAddr, Served> = BTreeMap::new();
    let linger = linger();
    let mut idle = false;
    // Every member, by container: a reload replaces it all, an update one
    // container's entry (so a start or an end costs the same at 1 or 200).
    let mut members: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    loop {
        let (conn, _) = if idle {
            match tokio::time::timeout(linger, control.accept()).await {
                Ok(accepted) => accepted?,
                Err(_) if try_leave(inst) => return Ok(()),
                Err(_) => continue,
            }
        } else {
            match tokio::time::timeout(ORPHAN_CHECK, control.accept()).await {
                Ok(accepted) => accepted?,
                // Another responder took over (its pid in the file) or the
                // run root was wiped: no command can reach us any more.
                Err(_) if !still_ours(inst) => return Ok(()),
                Err(_) => continue,
            }
        };
        let mut lines = BufReader::new(conn);
        let mut line = String::new();
        let read = tokio::time::timeout(TCP_IDLE, lines.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            continue;
        }
        let loaded = match line.trim() {
            "reload" => load_all(inst).map(|all| {
                members = all;
                rebuild(&shared, &members);
            }),
            l => match l.strip_prefix("update ") {
                Some(id) => load_one(inst, id).map(|mine| {
                    let old = members.remove(id).unwrap_or_default();
                    update(&shared, &old, &mine);
                    if !mine.is_empty() {
                        members.insert(id.to_string(), mine);
                    }
                }),
                None => Err(DnsError::Responder(format!("unknown request {l:?}"))),
            },
        };
        let answer = match loaded {
            Err(e) => format!("error {e}"),
            Ok(()) => match serve_gateways(&shared, &mut served).await {
                Ok(true) => {
                    idle = false;
                    "ok".to_string()
                }
                Ok(false) if !linger.is_zero() => {
                    // Nothing left to serve: port 53 is let go at once, the
                    // process waits a while for the next member.
                    for (_, s) in std::mem::take(&mut served) {
                        s.close().await;
                    }
                    idle = true;
                    "ok".to_string()
                }
                Ok(false) => {
                    // Nothing left to serve: close everything, then say so,
                    // so the next start finds port 53 free.
                    for (_, s) in std::mem::take(&mut served) {
                        s.close().await;
                    }
                    let _ = std::fs::remove_file(socket_path(inst));
                    let _ = std::fs::remove_file(pid_path(inst));
                    let _ = lines.get_mut().write_all(b"stopped\n").await;
                    return Ok(());
                }
                Err(e) => format!("error {e}"),
            },
        };
        let _ = lines
            .get_mut()
            .write_all(format!("{answer}\n").as_bytes())
            .await;
    }
}

/// Every member in the store, by container.
fn load_all(inst: &Instance) -> Result<BTreeMap<String, Vec<Member>>, DnsError> {
    let store = Store::open(&inst.db_path())?;
    let mut by_ctr: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for m in members(&store)?
        .into_iter()
        .chain(super::control::remote_members(inst))
    {
        by_ctr.entry(m.container_id.clone()).or_default().push(m);
    }
    Ok(by_ctr)
}

/// One container's members, as the store has them now.
fn load_one(inst: &Instance, id: &str) -> Result<Vec<Member>, DnsError> {
    let store = Store::open(&inst.db_path())?;
    members_of(&store, id)
}

/// Replaces the records with ones built from every member, and re-reads
/// the upstreams.
fn rebuild(shared: &Shared, members: &BTreeMap<String, Vec<Member>>) {
    let resolv = std::fs::read_to_string(host_resolv_conf()).unwrap_or_default();
    let all: Vec<Member> = members.values().flatten().cloned().collect();
    let records = Records::build(&all).with_search(search_domains(&resolv));
    let gateways = records.listen_addresses();
    let state = Arc::new(State {
        upstreams: upstreams(&resolv, &gateways),
        records,
    });
    match shared.write() {
        Ok(mut g) => *g = state,
        Err(p) => *p.into_inner() = state,
    }
}

/// One container's members changed from `old` to `new`: the records are
/// changed in place (copied first only if a query holds them right now), so
/// the cost is that container's, whatever the number of members.
fn update(shared: &Shared, old: &[Member], new: &[Member]) {
    let resolv = std::fs::read_to_string(host_resolv_conf()).unwrap_or_default();
    let mut guard = match shared.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let state = Arc::make_mut(&mut guard);
    state.records.remove(old);
    state.records.add(new);
    state.records.set_search(search_domains(&resolv));
    state.upstreams = upstreams(&resolv, &state.records.listen_addresses());
}

/// Opens sockets on the records' new gateways and closes those of networks
/// left empty. False when nothing is left to serve.
async fn serve_gateways(
    shared: &Shared,
    served: &mut BTreeMap<IpAddr, Served>,
) -> Result<bool, DnsError> {
    let gateways = snapshot(shared).records.listen_addresses();
    let gone: Vec<IpAddr> = served
        .keys()
        .filter(|g| !gateways.contains(g))
        .copied()
        .collect();
    for g in gone {
        if let Some(s) = served.remove(&g) {
            s.close().await;
        }
    }
    let mut errors = vec![];
    for g in &gateways {
        if served.contains_key(g) {
            continue;
        }
        match bind(*g, shared).await {
            Ok(s) => {
                served.insert(*g, s);
            }
            Err(e) => errors.push(format!("cannot listen on {g}:53: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(DnsError::Responder(errors.join("; ")));
    }
    Ok(!gateways.is_empty())
}

async fn bind(gw: IpAddr, shared: &Shared) -> std::io::Result<Served> {
    let addr = SocketAddr::from((gw, 53));
    let udp = UdpSocket::bind(addr).await?;
    let tcp = match gw {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    tcp.set_reuseaddr(true)?;
    tcp.bind(addr)?;
    let tcp = tcp.listen(128)?;
    Ok(Served {
        tasks: vec![
            tokio::spawn(udp_loop(udp, gw, shared.clone())),
            tokio::spawn(tcp_loop(tcp, gw, shared.clone())),
        ],
    })
}

fn servfail(query: &Message) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(
        query.metadata.id,
        query.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = query.queries.clone();
    m.to_vec().ok()
}

/// The wire reply to one wire query, or None for garbage (dropped).
async fn answer(raw: Vec<u8>, gw: IpAddr, shared: &Shared, tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(&raw).ok()?;
    let state = snapshot(shared);
    match reply(&state.records, gw, &query) {
        Reply::Local(m) => m.to_vec().ok(),
        Reply::Forward => match forward(&raw, query.metadata.id, &state.upstreams, tcp).await {
            Some(r) => Some(r),
            None => servfail(&query),
        },
    }
}

/// The query as is to each upstream in turn; the first reply with our id wins.
async fn forward(raw: &[u8], id: u16, ups: &[IpAddr], tcp: bool) -> Option<Vec<u8>> {
    for up in ups {
        let to = SocketAddr::new(*up, 53);
        let r = if tcp {
            tokio::time::timeout(UPSTREAM_TIMEOUT, forward_tcp(raw, to)).await
        } else {
            tokio::time::timeout(UPSTREAM_TIMEOUT, forward_udp(raw, id, to)).await
        };
        match r {
            Ok(Ok(resp)) => return Some(resp),
            Ok(Err(e)) => debug!("upstream {to}: {e}"),
            Err(_) => debug!("upstream {to}: timed out"),
        }
    }
    None
}

async fn forward_udp(raw: &[u8], id: u16, to: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(to).await?;
    s.send(raw).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf).await?;
        if n >= 2 && buf[..2] == id.to_be_bytes() {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(raw: &[u8], to: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(to).await?;
    let len = u16::try_from(raw.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(raw).await?;
    read_framed(&mut s).await
}

async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Each query is answered in its own task (a slow upstream holds up no
/// one); replies come back over a channel so only this loop owns the socket
/// and closing the loop closes it at once.
async fn udp_loop(sock: UdpSocket, gw: IpAddr, shared: Shared) {
    let (tx, mut rx) = mpsc::unbounded::<(Vec<u8>, SocketAddr)>();
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let raw = buf[..n].to_vec();
                let shared = shared.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(resp) = answer(raw, gw, &shared, false).await {
                        let _ = tx.unbounded_send((resp, src));
                    }
                });
            }
            Some((resp, src)) = rx.next() => {
                let _ = sock.send_to(&resp, src).await;
            }
        }
    }
}

async fn tcp_loop(listener: TcpListener, gw: IpAddr, shared: Shared) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok(Ok(raw)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut conn)).await {
                let Some(resp) = answer(raw, gw, &shared, true).await else {
                    return;
                };
                let Ok(len) = u16::try_from(resp.len()) else {
                    return;
                };
                if conn.write_all(&len.to_be_bytes()).await.is_err()
                    || conn.write_all(&resp).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

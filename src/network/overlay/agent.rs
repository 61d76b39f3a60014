//! The overlay agent: one `minirt __overlay` process per root, started by
//! the first command that joins an overlay network (the DNS responder's
//! pattern), gone once the root has no overlay network left. It keeps the
//! host's leases alive, watches the cluster store and converges the
//! kernel to it: per network the VXLAN device and bridge (made again when
//! deleted by hand), one route, neighbour and FDB entry per remote block,
//! the overlay's nftables table (made again when flushed); and it writes
//! this host's endpoint records (names) under its lease, so a container's
//! start makes no store request. A network no local container has used for
//! `MINIRT_OVERLAY_LINGER` seconds (default 30) is released: its row,
//! devices and block go.
//!
//! Files in --run-root: overlay.sock (datagrams: any wakes it up),
//! overlay.lock (held for its life: one agent per root), overlay.pid,
//! overlay.log.

use super::keys::{self, BlockRec, EndpointRec, NetConfig};
use super::store::{self as etcd_store, Etcd, Watched};
use super::{kernel, local, plan, vxlan_name, OverlayError};
use crate::network::driver::{DriverKind, DriverSet};
use crate::network::undo::Undo;
use crate::store::networks::{self as rows, NetworkRow};
use crate::store::Store;
use crate::Instance;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Converge at least this often: renew leases, repair devices and table.
const TICK: Duration = Duration::from_secs(2);
/// One watch call's length; then it is made again.
const WATCH_WAIT: Duration = Duration::from_secs(5);

fn socket_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("overlay.sock")
}
fn lock_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("overlay.lock")
}
fn log_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("overlay.log")
}

fn try_lock(inst: &Instance) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(inst))
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
}

/// Starts the agent unless one runs (its lock is held).
pub(crate) fn ensure_running(inst: &Instance) {
    match try_lock(inst) {
        None => {}
        Some(l) => {
            drop(l);
            if let Err(e) = spawn(inst) {
                tracing::warn!("cannot start the overlay agent: {e}");
            }
        }
    }
}

/// Wakes the agent (it converges at once), starting it when none runs.
pub(crate) fn poke(inst: &Instance) {
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(b"sync", socket_path(inst)));
    if sent.is_err() {
        ensure_running(inst);
    }
}

fn spawn(inst: &Instance) -> std::io::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(inst))?;
    crate::network::service::start(inst, "__overlay", log.into())
}

fn linger() -> Duration {
    Duration::from_secs(
        std::env::var("MINIRT_OVERLAY_LINGER")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    )
}

/// A container of another host on an overlay network this host uses, as
/// the DNS responder serves it (on this host's gateway of the network).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RemoteName {
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub name: String,
    pub container_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

fn names_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("overlay-names.json")
}

/// The remote names the agent last wrote (none when it never did).
pub(crate) fn read_names(inst: &Instance) -> Vec<RemoteName> {
    std::fs::read(names_path(inst))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the remote names (whole, by rename) and tells the DNS responder
/// to re-read them, when they changed.
fn write_names(inst: &Instance, names: &[RemoteName]) {
    if read_names(inst) == names {
        return;
    }
    let tmp = inst.run_root.join("overlay-names.json.tmp");
    let body = serde_json::to_vec(names).unwrap_or_default();
    if std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, names_path(inst)))
        .is_err()
    {
        return;
    }
    if let Err(e) = crate::network::dns::sync(inst) {
        tracing::warn!("overlay agent: {e}");
    }
}

/// What the agent remembers between rounds.
#[derive(Default)]
struct State {
    /// Since when each network (by id) has had no local container.
    empty_since: HashMap<String, Instant>,
    /// The table last applied (rendered), to skip an unchanged one.
    table: String,
    watching: bool,
}

/// `minirt __overlay`: runs until the root has no overlay network.
pub fn run_agent(inst: &Instance) -> Result<(), OverlayError> {
    let Some(lock) = try_lock(inst) else {
        return Ok(());
    };
    let sock = socket_path(inst);
    let _ = std::fs::remove_file(&sock);
    let s = UnixDatagram::bind(&sock)
        .map_err(|e| OverlayError::Kernel(format!("{}: {e}", sock.display())))?;
    // Reachable now (lock held, socket bound): the starter may go on.
    let detached = crate::network::service::detach_keeping(lock)
        .map_err(|e| OverlayError::Kernel(format!("fork: {e}")))?;
    let Some(_lock) = detached else {
        return Ok(());
    };
    let _ = std::fs::write(
        inst.run_root.join("overlay.pid"),
        std::process::id().to_string(),
    );
    let (tx, rx) = mpsc::channel::<()>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while s.recv(&mut buf).is_ok() {
            if tx2.send(()).is_err() {
                break;
            }
        }
    });
    let mut st = State::default();
    let linger = linger();
    loop {
        match converge(inst, &mut st, linger) {
            Ok(Some(spec)) if !st.watching => {
                st.watching = true;
                let tx = tx.clone();
                std::thread::spawn(move || watch(&spec, tx));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => tracing::warn!("overlay agent: {e}"),
        }
        // Several wake-ups in a row make one round.
        let _ = rx.recv_timeout(TICK);
        while rx.try_recv().is_ok() {}
    }
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(inst.run_root.join("overlay.pid"));
    Ok(())
}

/// Watches the overlay's prefix; any change (or a compaction: a re-list
/// follows anyway) wakes the main loop, which lists afresh.
fn watch(spec: &str, tx: mpsc::Sender<()>) {
    let Ok(etcd) = Etcd::new(spec) else {
        return;
    };
    let mut rev = 0;
    loop {
        if rev == 0 {
            match etcd.list(keys::PREFIX) {
                Ok((r, _)) => rev = r,
                Err(_) => {
                    std::thread::sleep(TICK);
                    continue;
                }
            }
        }
        match etcd.watch(keys::PREFIX, rev + 1, WATCH_WAIT) {
            Ok(Watched::Changed(r)) => rev = r,
            Ok(Watched::Compacted) => rev = 0,
            Ok(Watched::Quiet) => continue,
            Err(_) => {
                rev = 0;
                std::thread::sleep(TICK);
                continue;
            }
        }
        if tx.send(()).is_err() {
            return;
        }
    }
}

fn overlay_rows(store: &Store) -> Result<Vec<NetworkRow>, OverlayError> {
    Ok(rows::list_networks(store.conn())
        .map_err(|e| OverlayError::Store(e.to_string()))?
        .into_iter()
        .filter(|n| DriverKind::of(n).ok() == Some(DriverKind::Overlay))
        .collect())
}

fn parse<T: serde::de::DeserializeOwned>(v: &[u8]) -> Option<T> {
    serde_json::from_slice(v).ok()
}

/// One round. None: no overlay network is left, the agent leaves. Some:
/// the store to watch.
fn converge(
    inst: &Instance,
    st: &mut State,
    linger: Duration,
) -> Result<Option<String>, OverlayError> {
    let store = Store::open(&inst.db_path()).map_err(|e| OverlayError::Store(e.to_string()))?;
    let nets = overlay_rows(&store)?;
    let Some(first) = nets.first() else {
        let _ = kernel::apply_table(&inst.tag, &[], &[]);
        write_names(inst, &[]);
        let _ = std::fs::remove_file(names_path(inst));
        return Ok(None);
    };
    let spec = local(first)
        .map_err(|e| OverlayError::Invalid(e.to_string()))?
        .store;
    let etcd = Etcd::new(&spec)?;
    let listed = etcd.list(keys::PREFIX);
    let mut fw = vec![];
    let mut peer_hosts = vec![];
    let mut names = vec![];
    let drivers = crate::network::driver::Drivers::open(inst)
        .map_err(|e| OverlayError::Kernel(e.to_string()))?;
    let mut store = store;
    for net in &nets {
        let l = local(net).map_err(|e| OverlayError::Invalid(e.to_string()))?;
        let eps = rows::endpoints_of_network(store.conn(), &net.id)
            .map_err(|e| OverlayError::Store(e.to_string()))?;
        if eps.is_empty() {
            let since = *st
                .empty_since
                .entry(net.id.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() >= linger {
                super::release(inst, &mut store, net)
                    .map_err(|e| OverlayError::Kernel(e.to_string()))?;
                st.empty_since.remove(&net.id);
                continue;
            }
        } else {
            st.empty_since.remove(&net.id);
        }
        // The kernel side first: it needs no store.
        let mut undo = Undo::new();
        if let Err(e) = drivers
            .driver(DriverKind::Overlay)
            .ensure(net, false, &mut undo)
        {
            tracing::warn!("overlay network {}: {e}", net.name);
        }
        undo.commit();
        fw.push(plan::FwOverlay {
            bridge: net.device.clone(),
            vxlan: vxlan_name(net),
            block: l.block,
            subnet: l.subnet,
            internal: net.internal,
        });
        let Ok((_, kvs)) = &listed else {
            // The store is unreachable: the kernel keeps what it has.
            continue;
        };
        let cfg: Option<NetConfig> = kvs
            .iter()
            .find(|kv| kv.key == keys::network(&net.name))
            .and_then(|kv| parse(&kv.value));
        if !cfg.is_some_and(|c| plan::same_network(&c, &net.id)) {
            // Removed from the store (network rm elsewhere): leave it.
            if eps.is_empty() {
                super::release(inst, &mut store, net)
                    .map_err(|e| OverlayError::Kernel(e.to_string()))?;
                fw.pop();
            }
            continue;
        }
        let mut lease = l.lease;
        if etcd.keepalive(lease)? <= 0 {
            lease = renew(&etcd, &mut store, net, &l)?;
        }
        let bprefix = keys::blocks(&net.name);
        let blocks: Vec<(Ipv4Net, BlockRec)> = kvs
            .iter()
            .filter(|kv| kv.key.starts_with(&bprefix))
            .filter_map(|kv| Some((keys::block_of_key(&kv.key)?, parse(&kv.value)?)))
            .collect();
        let peers = plan::peers(l.advertise, &blocks);
        peer_hosts.extend(peers.iter().map(|p| p.host));
        let vx = vxlan_name(net);
        let d = plan::diff(&peers, &kernel::programmed(&vx)?);
        if d != plan::PeerDiff::default() {
            kernel::apply_peers(&vx, &d)?;
        }
        // This host's endpoint records.
        let want: BTreeMap<String, Vec<u8>> = eps
            .iter()
            .filter_map(|(ep, name)| {
                let rec = EndpointRec {
                    name: name.clone(),
                    ip: ep.ip,
                    aliases: ep.aliases.clone(),
                };
                Some((
                    keys::endpoint(&net.name, l.advertise, &ep.container_id),
                    serde_json::to_vec(&rec).ok()?,
                ))
            })
            .collect();
        // Other hosts' endpoint records: names served here.
        let gw = plan::gateway(l.block);
        for kv in kvs
            .iter()
            .filter(|kv| kv.key.starts_with(&keys::endpoints(&net.name)))
        {
            if keys::host_of_endpoint_key(&kv.key) == Some(l.advertise) {
                continue;
            }
            if let Some(r) = parse::<EndpointRec>(&kv.value) {
                names.push(RemoteName {
                    gateway: gw,
                    ip: r.ip,
                    name: r.name,
                    container_id: kv.key.rsplit('/').next().unwrap_or_default().to_string(),
                    aliases: r.aliases,
                });
            }
        }
        let mine = keys::host_endpoints(&net.name, l.advertise);
        let have: BTreeMap<&str, &Vec<u8>> = kvs
            .iter()
            .filter(|kv| kv.key.starts_with(&mine))
            .map(|kv| (kv.key.as_str(), &kv.value))
            .collect();
        let mut ops = vec![];
        for (k, v) in &want {
            if have.get(k.as_str()) != Some(&v) {
                ops.push(etcd_store::put_op(k, v, lease));
            }
        }
        for k in have.keys() {
            if !want.contains_key(*k) {
                ops.push(etcd_store::delete_op(k));
            }
        }
        if !ops.is_empty() {
            etcd.txn(vec![], ops)?;
        }
    }
    let table = plan::render_table(&inst.tag, &fw, &peer_hosts);
    if (table != st.table || !kernel::table_exists(&inst.tag)) && listed.is_ok() {
        kernel::apply_table(&inst.tag, &fw, &peer_hosts)?;
        st.table = table;
    }
    match listed {
        Ok(_) => write_names(inst, &names),
        Err(e) => tracing::warn!("overlay agent: {e}"),
    }
    Ok(Some(spec))
}

/// The lease ran out (the store was away longer than its TTL): a new one,
/// and the block taken again when nobody took it meanwhile.
fn renew(
    etcd: &Etcd,
    store: &mut Store,
    net: &NetworkRow,
    l: &super::Local,
) -> Result<i64, OverlayError> {
    let lease = etcd.grant(super::LEASE_TTL)?;
    let rec = BlockRec {
        host: l.advertise,
        mac: plan::mac_string(plan::vtep_mac(l.vni, l.advertise)),
    };
    let value = serde_json::to_vec(&rec).map_err(|e| OverlayError::Invalid(e.to_string()))?;
    let key = keys::block(&net.name, l.block);
    let ok = etcd.txn(
        vec![etcd_store::absent(&key)],
        vec![etcd_store::put_op(&key, &value, lease)],
    )?;
    if !ok {
        tracing::warn!(
            "overlay network {}: block {} was taken by another host while this host's lease was down",
            net.name,
            l.block
        );
    }
    let mut row = net.clone();
    row.options
        .insert(super::OPT_LEASE.to_string(), lease.to_string());
    store
        .write(|tx| {
            tx.execute(
                "UPDATE networks SET options = ?1 WHERE id = ?2",
                rusqlite::params![
                    serde_json::to_string(&row.options).unwrap_or_default(),
                    net.id
                ],
            )
            .map_err(crate::store::StoreError::from)
        })
        .map_err(|e| OverlayError::Store(e.to_string()))?;
    Ok(lease)
}

//! The overlay driver (VXLAN, flannel's model): a network spans every host
//! that uses the same cluster store (etcd v3). The store holds the
//! network's config and VNI (reserved in one transaction), the address
//! block each host leases on first use, and the endpoint records for names
//! (keys.rs). Each host has, per network, a local bridge for its
//! containers (gateway: its block's first address) and one VXLAN device
//! (learning off, MTU = underlay MTU - 50, port 4789); per remote block one
//! route, one neighbour and one FDB entry, programmed by the host's agent
//! (agent.rs, `minirt __overlay`) from a watch on the store.
//!
//! - `create`: `network create -d overlay` (store only; no local row)
//! - `join`: the first use on a host (before the container's transaction):
//!   leases a block, inserts the local row, starts the agent. Once the
//!   block is held, a container start makes no store request.
//! - `remove`: `network rm` (refused while any host has endpoints)
//! - `list_remote` / `find_remote`: `network ls` / `inspect` on a host that
//!   has not used the network yet
//!
//! `--cluster-store etcd://H:P[,H:P...]` and `--advertise-addr IP` (or
//! MINIRT_CLUSTER_STORE / MINIRT_ADVERTISE_ADDR) name the store and this
//! host's underlay address; nothing is guessed.

pub mod agent;
pub mod kernel;
pub mod keys;
pub mod plan;
pub mod store;

use super::driver::{DriverKind, DriverPlan, HostNetlink, NetworkDriver, Plug, Sandbox};
use super::netlink;
use super::undo::Undo;
use super::{ipam, names, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance};
use ipnet::Ipv4Net;
use keys::{BlockRec, NetConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use store::Etcd;

pub const STORE_ENV: &str = "MINIRT_CLUSTER_STORE";
pub const ADVERTISE_ENV: &str = "MINIRT_ADVERTISE_ADDR";
/// Seconds a host's lease lives without renewal: a host that dies loses
/// its block and its endpoints this long after its last renewal.
pub(crate) const LEASE_TTL: i64 = 10;

/// Row option keys of an overlay network's local row.
pub(crate) const OPT_SUBNET: &str = "overlay.subnet";
pub(crate) const OPT_BLOCK: &str = "overlay.block";
pub(crate) const OPT_VNI: &str = "overlay.vni";
pub(crate) const OPT_LEASE: &str = "overlay.lease";
pub(crate) const OPT_STORE: &str = "overlay.store";
pub(crate) const OPT_ADVERTISE: &str = "overlay.advertise";
pub(crate) const OPT_UNDERLAY: &str = "overlay.underlay";

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Store(String),
    #[error("overlay: {0}")]
    Kernel(String),
}

impl From<OverlayError> for NetworkError {
    fn from(e: OverlayError) -> NetworkError {
        match e {
            OverlayError::Invalid(m) | OverlayError::Unreachable(m) | OverlayError::Store(m) => {
                NetworkError::Invalid(m)
            }
            OverlayError::Conflict(m) => NetworkError::Conflict(m),
            OverlayError::NotFound(m) => NetworkError::NotFound(m),
            OverlayError::Kernel(m) => NetworkError::Netlink(m),
        }
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// Whether a cluster store is configured for this command.
pub(crate) fn configured() -> bool {
    env(STORE_ENV).is_some()
}

/// The cluster store and this host's advertise address, both required.
pub(crate) struct Cluster {
    pub etcd: Etcd,
    pub advertise: Ipv4Addr,
}

pub(crate) fn cluster() -> Result<Cluster, OverlayError> {
    let Some(spec) = env(STORE_ENV) else {
        return Err(OverlayError::Invalid(
            "the overlay driver needs a cluster store: --cluster-store etcd://HOST:PORT[,HOST:PORT...] (or MINIRT_CLUSTER_STORE)".into(),
        ));
    };
    let Some(adv) = env(ADVERTISE_ENV) else {
        return Err(OverlayError::Invalid(
            "the overlay driver needs this host's underlay address: --advertise-addr IP (or MINIRT_ADVERTISE_ADDR)".into(),
        ));
    };
    let advertise = adv.trim().parse().map_err(|_| {
        OverlayError::Invalid(format!(
            "invalid advertise address {:?}: expected an IPv4 address",
            crate::validate::escape_controls(&adv)
        ))
    })?;
    Ok(Cluster {
        etcd: Etcd::new(&spec)?,
        advertise,
    })
}

fn parse<T: serde::de::DeserializeOwned>(v: &[u8]) -> Option<T> {
    serde_json::from_slice(v).ok()
}

/// Every overlay network in the store, and the store's revision.
pub(crate) fn configs(etcd: &Etcd) -> Result<(i64, Vec<NetConfig>), OverlayError> {
    let (rev, kvs) = etcd.list(&keys::networks())?;
    Ok((rev, kvs.iter().filter_map(|kv| parse(&kv.value)).collect()))
}

/// `network create -d overlay`: the config and its VNI go into the store in
/// one transaction that also checks no other network appeared meanwhile
/// (two hosts creating the same name: one wins, the other is told).
pub fn create(
    store: &Store,
    req: &super::manage::CreateRequest,
) -> Result<NetworkRow, NetworkError> {
    names::validate_name(&req.name)?;
    crate::validate::network_name_not_reserved(&req.name).map_err(NetworkError::Invalid)?;
    if req.gateway.is_some() {
        return Err(NetworkError::Invalid(
            "--gateway is not supported by the overlay driver: each host's block has its own"
                .into(),
        ));
    }
    if req.ipv6 || req.subnet6.is_some() {
        return Err(NetworkError::Invalid(
            "not implemented: --ipv6 with the overlay driver".into(),
        ));
    }
    let spec = plan::create_spec(req.subnet.as_deref(), &req.options)?;
    let c = cluster()?;
    if rows::find_network(store.conn(), &req.name)?.is_some_and(|n| n.name == req.name) {
        return Err(NetworkError::Conflict(format!(
            "network with name {} already exists",
            req.name
        )));
    }
    for _ in 0..5 {
        let (rev, nets) = configs(&c.etcd)?;
        if nets.iter().any(|n| n.name == req.name) {
            return Err(exists(&req.name));
        }
        if let Some(o) = nets.iter().find(|n| plan::overlaps(n.subnet, spec.subnet)) {
            return Err(NetworkError::Conflict(format!(
                "invalid subnet {}: it overlaps with overlay network {} ({})",
                spec.subnet, o.name, o.subnet
            )));
        }
        let taken: Vec<u32> = nets.iter().map(|n| n.vni).collect();
        let vni = match spec.vni {
            Some(v) => {
                if let Some(o) = nets.iter().find(|n| n.vni == v) {
                    return Err(vni_taken(v, &o.name));
                }
                v
            }
            None => plan::pick_vni(&taken)
                .ok_or_else(|| NetworkError::Conflict("no free VNI left".into()))?,
        };
        let cfg = NetConfig {
            id: util::new_id(),
            name: req.name.clone(),
            subnet: spec.subnet,
            block: spec.block,
            vni,
            internal: req.internal,
            created: util::now_nanos(),
        };
        let value = serde_json::to_vec(&cfg)
            .map_err(|e| NetworkError::Invalid(format!("network config: {e}")))?;
        let ok = c.etcd.txn(
            vec![
                store::absent(&keys::network(&req.name)),
                store::absent(&keys::vni(vni)),
                store::unchanged_since(&keys::networks(), rev),
            ],
            vec![
                store::put_op(&keys::network(&req.name), &value, 0),
                store::put_op(&keys::vni(vni), req.name.as_bytes(), 0),
            ],
        )?;
        if ok {
            return Ok(row_of(&cfg));
        }
        // Lost a race: the loop finds out to whom (a name, a VNI, a subnet).
        if let Some(kv) = c.etcd.get(&keys::vni(vni))? {
            if spec.vni.is_some() {
                return Err(vni_taken(vni, &String::from_utf8_lossy(&kv.value)));
            }
        }
    }
    Err(NetworkError::Conflict(format!(
        "network {}: the cluster store kept changing; try again",
        req.name
    )))
}

fn exists(name: &str) -> NetworkError {
    NetworkError::Conflict(format!("network with name {name} already exists"))
}

fn vni_taken(vni: u32, by: &str) -> NetworkError {
    NetworkError::Conflict(format!("vni {vni} is taken by overlay network {by}"))
}

/// The row `network ls`/`inspect` show for a network this host does not use.
pub(crate) fn row_of(cfg: &NetConfig) -> NetworkRow {
    let mut options = BTreeMap::new();
    options.insert(OPT_SUBNET.to_string(), cfg.subnet.to_string());
    options.insert(OPT_BLOCK.to_string(), cfg.block.to_string());
    options.insert(OPT_VNI.to_string(), cfg.vni.to_string());
    NetworkRow {
        id: cfg.id.clone(),
        name: cfg.name.clone(),
        driver: DriverKind::Overlay.as_str().into(),
        subnet: cfg.subnet.to_string(),
        net_start: u32::from(cfg.subnet.network()),
        net_end: u32::from(cfg.subnet.broadcast()),
        gateway: String::new(),
        device: String::new(),
        internal: cfg.internal,
        mtu: 0,
        options,
        created: cfg.created,
        subnet6: String::new(),
        gateway6: String::new(),
    }
}

/// Overlay networks in the store that have no local row (`network ls`).
/// An unreachable store leaves them out with a warning.
pub fn list_remote(local: &[NetworkRow]) -> Vec<NetworkRow> {
    let Ok(c) = cluster() else {
        return vec![];
    };
    match configs(&c.etcd) {
        Ok((_, nets)) => nets
            .iter()
            .filter(|n| !local.iter().any(|l| l.name == n.name))
            .map(row_of)
            .collect(),
        Err(e) => {
            tracing::warn!("{e}");
            vec![]
        }
    }
}

/// An overlay network of the store by name or id (`network inspect`).
pub fn find_remote(key: &str) -> Option<NetworkRow> {
    let c = cluster().ok()?;
    let (_, nets) = configs(&c.etcd).ok()?;
    nets.iter()
        .find(|n| n.name == key || n.id == key)
        .or_else(|| {
            let m: Vec<_> = nets.iter().filter(|n| n.id.starts_with(key)).collect();
            (m.len() == 1).then(|| m[0])
        })
        .map(row_of)
}

/// The overlay's options of a local row.
pub(crate) struct Local {
    pub subnet: Ipv4Net,
    pub block: Ipv4Net,
    pub vni: u32,
    pub lease: i64,
    pub store: String,
    pub advertise: Ipv4Addr,
    pub underlay: String,
}

pub(crate) fn local(net: &NetworkRow) -> Result<Local, NetworkError> {
    let get = |k: &str| {
        net.options.get(k).cloned().ok_or_else(|| {
            NetworkError::Invalid(format!(
                "overlay network {} has no {k} in the store",
                net.name
            ))
        })
    };
    let bad =
        |k: &str| NetworkError::Invalid(format!("overlay network {} has a bad {k}", net.name));
    Ok(Local {
        subnet: get(OPT_SUBNET)?.parse().map_err(|_| bad(OPT_SUBNET))?,
        block: net.subnet.parse().map_err(|_| bad("block"))?,
        vni: get(OPT_VNI)?.parse().map_err(|_| bad(OPT_VNI))?,
        lease: get(OPT_LEASE)?.parse().map_err(|_| bad(OPT_LEASE))?,
        store: get(OPT_STORE)?,
        advertise: get(OPT_ADVERTISE)?
            .parse()
            .map_err(|_| bad(OPT_ADVERTISE))?,
        underlay: get(OPT_UNDERLAY)?,
    })
}

/// The VXLAN device of a network on this host.
pub(crate) fn vxlan_name(net: &NetworkRow) -> String {
    format!("mrx-{}", net.id.get(..11).unwrap_or(&net.id))
}

fn join_lock(inst: &Instance) -> Result<nix::fcntl::Flock<std::fs::File>, NetworkError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(inst.run_root.join("overlay.join.lock"))
        .map_err(|e| NetworkError::Invalid(format!("overlay join lock: {e}")))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| NetworkError::Invalid(format!("overlay join lock: {e}")))
}

/// Before a container's transaction, for `--net NAME` when this host has
/// no network NAME: when the store has an overlay network of that name,
/// lease a block of it for this host, insert the local row and start the
/// agent. Returns whether it joined (false: no such overlay network).
pub(crate) fn join(
    inst: &Instance,
    st: &mut Store,
    name: &str,
    publish: bool,
) -> Result<bool, NetworkError> {
    let _lock = join_lock(inst)?;
    if rows::find_network(st.conn(), name)?.is_some() {
        return Ok(true);
    }
    let c = cluster()?;
    let Some(kv) = c.etcd.get(&keys::network(name))? else {
        return Ok(false);
    };
    let cfg: NetConfig = parse(&kv.value).ok_or_else(|| {
        NetworkError::Invalid(format!("overlay network {name}: bad config in the store"))
    })?;
    // Refused before this host takes anything (allocate says it again).
    if publish {
        return Err(NetworkError::Invalid(format!(
            "not implemented: port publishing on overlay network {name}: its containers \
             are reached on their overlay addresses"
        )));
    }
    let (underlay, mtu) = kernel::underlay(c.advertise)?;
    let lease = c.etcd.grant(LEASE_TTL)?;
    let me = c.advertise;
    let rec = BlockRec {
        host: me,
        mac: plan::mac_string(plan::vtep_mac(cfg.vni, me)),
    };
    let value = serde_json::to_vec(&rec)
        .map_err(|e| NetworkError::Invalid(format!("block record: {e}")))?;
    let mut block = None;
    for _ in 0..10 {
        let (_, kvs) = c.etcd.list(&keys::blocks(name))?;
        let held: Vec<(Ipv4Net, BlockRec)> = kvs
            .iter()
            .filter_map(|kv| Some((keys::block_of_key(&kv.key)?, parse(&kv.value)?)))
            .collect();
        // A block this host held before a crash is taken back.
        let want = match held.iter().find(|(_, r)| r.host == me) {
            Some((b, _)) => *b,
            None => {
                let taken: Vec<Ipv4Net> = held.iter().map(|(b, _)| *b).collect();
                plan::pick_block(cfg.subnet, cfg.block, &taken).ok_or_else(|| {
                    NetworkError::Conflict(format!(
                        "overlay network {name}: no free /{} block left in {}",
                        cfg.block, cfg.subnet
                    ))
                })?
            }
        };
        let mine = held.iter().any(|(b, r)| *b == want && r.host == me);
        let mut cmp = vec![store::present(&keys::network(name))];
        if !mine {
            cmp.push(store::absent(&keys::block(name, want)));
        }
        if c.etcd.txn(
            cmp,
            vec![store::put_op(&keys::block(name, want), &value, lease)],
        )? {
            block = Some(want);
            break;
        }
    }
    let Some(block) = block else {
        let _ = c.etcd.revoke(lease);
        return Err(NetworkError::Conflict(format!(
            "overlay network {name}: could not lease a block (the store kept changing)"
        )));
    };
    let mut options = BTreeMap::new();
    options.insert(OPT_SUBNET.to_string(), cfg.subnet.to_string());
    options.insert(OPT_BLOCK.to_string(), cfg.block.to_string());
    options.insert(OPT_VNI.to_string(), cfg.vni.to_string());
    options.insert(OPT_LEASE.to_string(), lease.to_string());
    options.insert(OPT_STORE.to_string(), c.etcd.spec.clone());
    options.insert(OPT_ADVERTISE.to_string(), me.to_string());
    options.insert(OPT_UNDERLAY.to_string(), underlay);
    let row = NetworkRow {
        id: cfg.id.clone(),
        name: cfg.name.clone(),
        driver: DriverKind::Overlay.as_str().into(),
        subnet: block.to_string(),
        net_start: u32::from(block.network()),
        net_end: u32::from(block.broadcast()),
        gateway: plan::gateway(block).to_string(),
        device: names::bridge_name(&cfg.id),
        internal: cfg.internal,
        mtu: mtu.saturating_sub(plan::VXLAN_OVERHEAD),
        options,
        created: cfg.created,
        subnet6: String::new(),
        gateway6: String::new(),
    };
    let inserted = st.write(|tx| {
        let s = (u32::from(block.network()), u32::from(block.broadcast()));
        if let Some(o) = rows::overlapping_networks(tx, s.0, s.1)?.first() {
            return Err(NetworkError::Conflict(format!(
                "overlay network {name}: block {block} overlaps with network {} ({})",
                o.name, o.subnet
            )));
        }
        rows::insert_network(tx, &row)?;
        Ok::<_, NetworkError>(())
    });
    if let Err(e) = inserted {
        let _ = c.etcd.revoke(lease);
        return Err(e);
    }
    agent::ensure_running(inst);
    Ok(true)
}

/// Releases this host's part of a network that no local container uses:
/// the local row (only when still unused), its devices, its block and
/// endpoint records (the lease's keys). Returns whether it was released.
pub(crate) fn release(
    inst: &Instance,
    st: &mut Store,
    net: &NetworkRow,
) -> Result<bool, NetworkError> {
    let gone = st.write(|tx| {
        if !rows::endpoints_of_network(tx, &net.id)?.is_empty() {
            return Ok::<_, NetworkError>(false);
        }
        rows::delete_network(tx, &net.id)?;
        Ok(true)
    })?;
    if !gone {
        return Ok(false);
    }
    let _ = inst;
    let _ = kernel::delete_link(&vxlan_name(net));
    let _ = netlink::Netlink::open().and_then(|nl| nl.delete_link(&net.device));
    if let Ok(l) = local(net) {
        if let Ok(etcd) = Etcd::new(&l.store) {
            if let Err(e) = etcd.revoke(l.lease) {
                tracing::warn!("releasing the block of {}: {e}", net.name);
            }
        }
    }
    Ok(true)
}

/// `network rm` of an overlay network: refused while any host has
/// endpoints on it (naming the hosts); else its config, VNI, blocks and
/// records leave the store in one transaction, and this host's row and
/// devices go (the other hosts' agents see the config go and follow).
/// None: `key` names no overlay network.
pub(crate) fn remove(
    inst: &Instance,
    st: &mut Store,
    key: &str,
) -> Result<Option<NetworkRow>, NetworkError> {
    let localrow = rows::find_network(st.conn(), key)?;
    if localrow
        .as_ref()
        .is_some_and(|n| DriverKind::of(n).ok() != Some(DriverKind::Overlay))
    {
        return Ok(None);
    }
    if localrow.is_none() && !configured() {
        return Ok(None);
    }
    let c = cluster()?;
    let (_, nets) = configs(&c.etcd)?;
    let cfg = match &localrow {
        Some(n) => nets.into_iter().find(|c| c.id == n.id),
        None => nets.into_iter().find(|c| c.name == key || c.id == key),
    };
    let Some(cfg) = cfg else {
        return match localrow {
            // The store forgot it (or another store): only the local part goes.
            Some(n) => {
                release(inst, st, &n)?;
                Ok(Some(n))
            }
            None => Ok(None),
        };
    };
    let (_, eps) = c.etcd.list(&keys::endpoints(&cfg.name))?;
    let mut hosts: Vec<String> = eps
        .iter()
        .filter_map(|kv| keys::host_of_endpoint_key(&kv.key))
        .map(|h| h.to_string())
        .collect();
    if let Some(n) = &localrow {
        if !rows::endpoints_of_network(st.conn(), &n.id)?.is_empty() {
            hosts.push(c.advertise.to_string());
        }
    }
    hosts.sort();
    hosts.dedup();
    if !hosts.is_empty() {
        return Err(NetworkError::Conflict(format!(
            "cannot remove network {}: in use by containers on host{} {}",
            cfg.name,
            if hosts.len() > 1 { "s" } else { "" },
            hosts.join(", ")
        )));
    }
    c.etcd.txn(
        vec![],
        vec![
            store::delete_op(&keys::network(&cfg.name)),
            store::delete_op(&keys::vni(cfg.vni)),
            store::delete_prefix_op(&keys::blocks(&cfg.name)),
            store::delete_prefix_op(&keys::endpoints(&cfg.name)),
        ],
    )?;
    if let Some(n) = &localrow {
        release(inst, st, n)?;
        agent::poke(inst);
    }
    Ok(Some(row_of(&cfg)))
}

pub(crate) struct OverlayDriver {
    inst: Instance,
    nl: Rc<HostNetlink>,
}

impl OverlayDriver {
    pub(crate) fn new(inst: &Instance, nl: Rc<HostNetlink>) -> OverlayDriver {
        OverlayDriver {
            inst: inst.clone(),
            nl,
        }
    }
}

impl NetworkDriver for OverlayDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }

    fn plan(&self, options: &[String], _internal: bool) -> Result<DriverPlan, NetworkError> {
        plan::create_spec(None, options)?;
        Ok(DriverPlan::default())
    }

    /// The local bridge (the block's gateway, proxy ARP: the containers'
    /// addresses carry the overlay's prefix, so they ask for remote
    /// addresses on the bridge) and the VXLAN device; when either had to
    /// be made, the agent is told to program the peers and the table.
    fn ensure(&self, net: &NetworkRow, _fresh: bool, _undo: &mut Undo) -> Result<(), NetworkError> {
        let vx = vxlan_name(net);
        let nl = self.nl.get()?;
        let has_bridge = nl.link(&net.device)?.is_some();
        if has_bridge && kernel::link_exists(&vx) {
            return Ok(());
        }
        let l = local(net)?;
        if !has_bridge {
            let addr = Ipv4Net::new(plan::gateway(l.block), l.block.prefix_len())
                .map_err(|e| NetworkError::Invalid(format!("network {}: {e}", net.name)))?;
            match nl.create_bridge(&net.device, net.mtu, Some(addr)) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        netlink::set_sysctl(&format!("net.ipv4.conf.{}.proxy_arp", net.device), "1")?;
        netlink::enable_ip_forward()?;
        let mac = plan::mac_string(plan::vtep_mac(l.vni, l.advertise));
        kernel::ensure_vxlan(
            &vx,
            l.vni,
            l.advertise,
            &l.underlay,
            net.mtu,
            &mac,
            plan::vtep_addr(l.block),
        )?;
        agent::poke(&self.inst);
        Ok(())
    }

    fn remove(&self, net: &NetworkRow) -> Result<(), NetworkError> {
        kernel::delete_link(&vxlan_name(net))?;
        self.nl.get()?.delete_link(&net.device)?;
        Ok(())
    }

    /// A veth into the bridge; the container's address carries the
    /// overlay's prefix; the default route via the block's gateway (none
    /// on an internal network: the overlay is all it reaches).
    fn connect(&self, p: &Plug, sb: &Sandbox, undo: &mut Undo) -> Result<(), NetworkError> {
        let (net, ep) = (p.net, p.ep);
        let l = local(net)?;
        let nl = self.nl.get()?;
        sb.plug_veth(&nl, ep, &net.device, ipam::mac_for(ep.ip), net.mtu, undo)?;
        let route = (p.default_route && !net.internal).then_some(plan::gateway(l.block));
        sb.address_v4(&ep.ifname, ep.ip, l.subnet.prefix_len(), route)?;
        // The agent publishes the name now rather than at its next round
        // (one datagram; no store request here).
        agent::poke(&self.inst);
        Ok(())
    }

    fn disconnect(
        &self,
        _net: &NetworkRow,
        ep: &EndpointRow,
        _ports: &[PortBindingRow],
        sb: Option<&Sandbox>,
    ) -> Vec<String> {
        agent::poke(&self.inst);
        if sb.is_none() {
            return vec![];
        }
        match self
            .nl
            .get()
            .and_then(|nl| Ok(nl.delete_link(&ep.host_ifname)?))
        {
            Ok(_) => vec![],
            Err(e) => vec![e.to_string()],
        }
    }
}

//! Where the overlay keeps its shared state in the cluster store, and the
//! records' shapes (JSON values). Everything lives under one prefix:
//!
//! - `networks/NAME`: the network's config ([`NetConfig`]), no lease
//! - `vnis/VNI`: the network name holding that VXLAN id, no lease
//! - `blocks/NAME/A.B.C.D-LEN`: the host holding that address block
//!   ([`BlockRec`]), under the host's lease (gone when the host is)
//! - `endpoints/NAME/HOST/CONTAINER`: a container's name and address
//!   ([`EndpointRec`]), written by the host's agent under its lease

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub(crate) const PREFIX: &str = "/minirt/overlay/";

pub(crate) fn networks() -> String {
    format!("{PREFIX}networks/")
}
pub(crate) fn network(name: &str) -> String {
    format!("{PREFIX}networks/{name}")
}
pub(crate) fn vni(vni: u32) -> String {
    format!("{PREFIX}vnis/{vni}")
}
pub fn vnis() -> String {
    format!("{PREFIX}vnis/")
}
pub(crate) fn blocks(name: &str) -> String {
    format!("{PREFIX}blocks/{name}/")
}
pub(crate) fn block(name: &str, b: Ipv4Net) -> String {
    format!("{PREFIX}blocks/{name}/{}-{}", b.network(), b.prefix_len())
}
pub(crate) fn endpoints(name: &str) -> String {
    format!("{PREFIX}endpoints/{name}/")
}
pub fn host_endpoints(name: &str, host: Ipv4Addr) -> String {
    format!("{PREFIX}endpoints/{name}/{host}/")
}
pub fn endpoint(name: &str, host: Ipv4Addr, container: &str) -> String {
    format!("{PREFIX}endpoints/{name}/{host}/{container}")
}

/// The block a `blocks/NAME/A.B.C.D-LEN` key names.
pub(crate) fn block_of_key(key: &str) -> Option<Ipv4Net> {
    let last = key.rsplit('/').next()?;
    let (a, l) = last.split_once('-')?;
    Ipv4Net::new(a.parse().ok()?, l.parse().ok()?).ok()
}

/// The host of an `endpoints/NAME/HOST/CONTAINER` key.
pub(crate) fn host_of_endpoint_key(key: &str) -> Option<Ipv4Addr> {
    let mut parts = key.rsplit('/');
    parts.next()?;
    parts.next()?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    pub id: String,
    pub name: String,
    pub subnet: Ipv4Net,
    /// Prefix length of the blocks hosts lease.
    pub block: u8,
    pub vni: u32,
    pub internal: bool,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRec {
    /// The holder's underlay (advertise) address: where its VXLAN packets go.
    pub host: Ipv4Addr,
    /// The MAC of the holder's VXLAN device.
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRec {
    pub name: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let b: Ipv4Net = "10.42.3.0/24".parse().unwrap();
        assert_eq!(block("n", b), "/minirt/overlay/blocks/n/10.42.3.0-24");
        assert_eq!(block_of_key(&block("n", b)), Some(b));
        let h: Ipv4Addr = "198.51.100.2".parse().unwrap();
        assert_eq!(host_of_endpoint_key(&endpoint("n", h, "abc")), Some(h));
        assert!(endpoint("n", h, "abc").starts_with(&host_endpoints("n", h)));
    }
}

//! The firewall seam: what the network code asks of a firewall, modelled on
//! netavark's narrow `FirewallDriver`. The caller builds every input (the
//! network and port models of `firewall.rs`, and for a rebuild the whole
//! desired state from the store, `desired::snapshot`); a backend never
//! opens the database.
//!
//! Backends, chosen per process by `MINIRT_FIREWALL`:
//! - `nftables` (the default): one `inet` table per instance (`rules.rs`
//!   applies what `firewall.rs` renders; port maps over nfnetlink), healed
//!   by structure and watched by the guardian (`guard.rs`).
//! - `none`: minirt leaves the host's firewall alone: no NAT, no
//!   isolation, no port publishing (`-p` is refused). For hosts whose
//!   firewall is managed by something else.

use super::firewall::{FwNetwork, FwPort};
use super::undo::Undo;
use super::{nfnl, rules, NetworkError};
use crate::Instance;
use std::rc::Rc;

/// Everything the firewall should hold, as the store says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FwSnapshot {
    pub networks: Vec<FwNetwork>,
    pub ports: Vec<FwPort>,
}

/// Asked when an undo considers removing shared state (the base table):
/// whether the instance still has networks at that moment.
pub(crate) type InUse = Rc<dyn Fn() -> bool>;

pub(crate) trait FirewallBackend {
    fn name(&self) -> &'static str;

    /// Makes the base (table, maps, base chains) when missing; the undo
    /// removes it only while `in_use` says no network needs it. Returns
    /// whether it had to be made.
    fn ensure_base(&self, undo: &mut Undo, in_use: InUse) -> Result<bool, NetworkError>;

    /// Adds (idempotently) a network's rules; the undo only with `fresh`
    /// (re-applying the rules of a network in use must never remove them).
    fn add_network(
        &self,
        net: &FwNetwork,
        fresh: bool,
        undo: &mut Undo,
    ) -> Result<(), NetworkError>;

    /// Removes a network's rules; absent is fine.
    fn del_network(&self, net: &FwNetwork) -> Result<(), NetworkError>;

    /// Adds port mappings; `what` names them in undo warnings.
    fn add_ports(&self, ports: &[FwPort], what: &str, undo: &mut Undo) -> Result<(), NetworkError>;

    /// Removes port mappings; absent ones are fine.
    fn del_ports(&self, ports: &[FwPort]) -> Result<(), NetworkError>;

    /// The nfnetlink elements `del_ports` removes, for a caller that
    /// removes them in one batch with its own (none for a backend without
    /// port maps).
    fn port_elements_to_del(&self, ports: &[FwPort]) -> Vec<nfnl::Element>;

    /// Replaces everything with `want` (nothing at all when it has no
    /// network); the user's own chain survives.
    fn rebuild(&self, want: &FwSnapshot) -> Result<(), NetworkError>;

    /// Whether the live state is exactly `want` (read only).
    #[cfg(test)]
    fn is_intact(&self, want: &FwSnapshot) -> Result<bool, NetworkError>;

    /// Repairs the live state towards `want`; returns whether it had to.
    /// `generation`: the nftables generation read before (None: unknown,
    /// the state is checked in full).
    fn heal(&self, want: &FwSnapshot, generation: Option<u32>) -> Result<bool, NetworkError>;
}

/// The instance's nftables table.
pub(crate) struct Nftables {
    inst: Instance,
}

impl FirewallBackend for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn ensure_base(&self, undo: &mut Undo, in_use: InUse) -> Result<bool, NetworkError> {
        rules::ensure_base(&self.inst, undo, in_use)
    }

    fn add_network(
        &self,
        net: &FwNetwork,
        fresh: bool,
        undo: &mut Undo,
    ) -> Result<(), NetworkError> {
        rules::ensure_network(&self.inst, net, fresh, undo)
    }

    fn del_network(&self, net: &FwNetwork) -> Result<(), NetworkError> {
        rules::remove_network(&self.inst, net)
    }

    fn add_ports(&self, ports: &[FwPort], what: &str, undo: &mut Undo) -> Result<(), NetworkError> {
        rules::add_ports(&self.inst, ports, what, undo)
    }

    fn del_ports(&self, ports: &[FwPort]) -> Result<(), NetworkError> {
        rules::remove_ports(&self.inst, ports)
    }

    fn port_elements_to_del(&self, ports: &[FwPort]) -> Vec<nfnl::Element> {
        nfnl::port_del_elements(ports)
    }

    fn rebuild(&self, want: &FwSnapshot) -> Result<(), NetworkError> {
        rules::reload(&self.inst, want)
    }

    #[cfg(test)]
    fn is_intact(&self, want: &FwSnapshot) -> Result<bool, NetworkError> {
        rules::is_intact(&self.inst, want)
    }

    fn heal(&self, want: &FwSnapshot, generation: Option<u32>) -> Result<bool, NetworkError> {
        rules::heal(&self.inst, want, generation)
    }
}

/// Leaves the host's firewall alone.
pub(crate) struct NoFirewall;

impl FirewallBackend for NoFirewall {
    fn name(&self) -> &'static str {
        "none"
    }
    fn ensure_base(&self, _: &mut Undo, _: InUse) -> Result<bool, NetworkError> {
        Ok(false)
    }
    fn add_network(&self, _: &FwNetwork, _: bool, _: &mut Undo) -> Result<(), NetworkError> {
        Ok(())
    }
    fn del_network(&self, _: &FwNetwork) -> Result<(), NetworkError> {
        Ok(())
    }
    fn add_ports(&self, ports: &[FwPort], _: &str, _: &mut Undo) -> Result<(), NetworkError> {
        match ports.is_empty() {
            true => Ok(()),
            false => Err(no_ports()),
        }
    }
    fn del_ports(&self, _: &[FwPort]) -> Result<(), NetworkError> {
        Ok(())
    }
    fn port_elements_to_del(&self, _: &[FwPort]) -> Vec<nfnl::Element> {
        vec![]
    }
    fn rebuild(&self, _: &FwSnapshot) -> Result<(), NetworkError> {
        Ok(())
    }
    #[cfg(test)]
    fn is_intact(&self, _: &FwSnapshot) -> Result<bool, NetworkError> {
        Ok(true)
    }
    fn heal(&self, _: &FwSnapshot, _: Option<u32>) -> Result<bool, NetworkError> {
        Ok(false)
    }
}

fn no_ports() -> NetworkError {
    NetworkError::Invalid(
        "port publishing needs a firewall: MINIRT_FIREWALL=none leaves the host's alone".into(),
    )
}

/// Which backend `MINIRT_FIREWALL` names (pure).
pub(crate) fn choose(value: Option<&str>) -> Result<&'static str, NetworkError> {
    match value.unwrap_or("") {
        "" | "nftables" => Ok("nftables"),
        "none" => Ok("none"),
        v => Err(NetworkError::Invalid(format!(
            "invalid MINIRT_FIREWALL {:?}: expected nftables or none",
            crate::validate::escape_controls(v)
        ))),
    }
}

/// The backend of this process (see the module's comment).
pub(crate) fn for_instance(inst: &Instance) -> Result<Rc<dyn FirewallBackend>, NetworkError> {
    let v = std::env::var("MINIRT_FIREWALL").ok();
    Ok(match choose(v.as_deref())? {
        "none" => Rc::new(NoFirewall),
        _ => Rc::new(Nftables { inst: inst.clone() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_chosen_by_name_and_none_refuses_ports() {
        assert_eq!(choose(None).unwrap(), "nftables");
        assert_eq!(choose(Some("nftables")).unwrap(), "nftables");
        assert_eq!(choose(Some("none")).unwrap(), "none");
        assert!(choose(Some("iptables"))
            .unwrap_err()
            .to_string()
            .contains("expected nftables or none"));
        let mut undo = Undo::new();
        assert!(NoFirewall.add_ports(&[], "x", &mut undo).is_ok());
        let p = FwPort {
            proto: super::super::portspec::Proto::Tcp,
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: 80,
            ctr_ip: "10.0.0.2".parse().unwrap(),
            ctr_port: 80,
            routed: false,
        };
        assert!(NoFirewall.add_ports(&[p], "x", &mut undo).is_err());
        assert!(NoFirewall.is_intact(&FwSnapshot::default()).unwrap());
    }

    /// The nftables backend through the trait, on the real kernel in a
    /// namespace of its own: rebuild, is-intact, tamper, heal, ports, and
    /// an empty snapshot removing everything.
    #[test]
    fn nftables_backend_rebuilds_checks_and_heals() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use super::super::firewall::tests::{net_a, net_b, ports};
        use super::super::nft;
        let ns = super::super::testns::TestNs::new("fwb");
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::new(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let table = inst.nft_table();
        ns.run(|| {
            let fw = Nftables { inst: inst.clone() };
            let want = FwSnapshot {
                networks: vec![net_a(), net_b()],
                ports: ports(),
            };
            assert!(!fw.is_intact(&want).unwrap());
            fw.rebuild(&want).unwrap();
            assert!(fw.is_intact(&want).unwrap());
            let generation = || crate::network::nftgen::generation().ok();
            assert!(!fw.heal(&want, generation()).unwrap(), "nothing to heal");
            nft::apply(&format!("flush chain inet {table} guard\n")).unwrap();
            assert!(!fw.is_intact(&want).unwrap());
            assert!(fw.heal(&want, generation()).unwrap());
            assert!(fw.is_intact(&want).unwrap());
            // Ports added and removed through the trait; the undo removes them too.
            let more = FwSnapshot {
                networks: want.networks.clone(),
                ports: want.ports[..1].to_vec(),
            };
            fw.del_ports(&want.ports[1..]).unwrap();
            assert!(fw.is_intact(&more).unwrap());
            let mut undo = Undo::new();
            fw.add_ports(&want.ports[1..], "test", &mut undo).unwrap();
            assert!(fw.is_intact(&want).unwrap());
            drop(undo);
            assert!(fw.is_intact(&more).unwrap());
            // A network's rules out and back.
            fw.del_network(&net_b()).unwrap();
            assert!(!fw.is_intact(&more).unwrap());
            let mut undo = Undo::new();
            fw.add_network(&net_b(), true, &mut undo).unwrap();
            undo.commit();
            assert!(fw.is_intact(&more).unwrap());
            // No network: no table.
            fw.rebuild(&FwSnapshot::default()).unwrap();
            assert!(nft::list_table(&table).is_err());
            assert!(fw.is_intact(&FwSnapshot::default()).unwrap());
        });
    }
}

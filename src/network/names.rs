//! Pure naming rules: network names, bridge and veth device names derived
//! from ids, and the `-o key=value` driver options of `network create`.

use super::firewall::GatewayMode;
use super::NetworkError;
use std::net::Ipv4Addr;

/// Longest network name we accept (Docker sets none; 64 keeps tables and
/// error lines readable and leaves room in any derived name).
pub const MAX_NAME_LEN: usize = 64;

/// Linux's IFNAMSIZ minus the terminating NUL.
pub(crate) const MAX_IFNAME_LEN: usize = 15;

/// Name of the network used when `run` names none.
pub(crate) const DEFAULT_NETWORK: &str = "bridge";

/// Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most MAX_NAME_LEN chars.
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    use crate::validate::{object_name, NameProblem};
    let why = match object_name(name, MAX_NAME_LEN) {
        Ok(()) => return Ok(()),
        Err(NameProblem::Empty) => "empty".to_string(),
        Err(NameProblem::BadFirst) => "must start with a letter or digit".to_string(),
        Err(NameProblem::BadChar) => "only letters, digits, '_', '.' and '-' are allowed".into(),
        Err(NameProblem::TooLong) => format!("longer than {MAX_NAME_LEN} characters"),
    };
    Err(NetworkError::Invalid(format!(
        "invalid network name {name:?}: {why}"
    )))
}

/// Bridge of a user network: "mrb-" + 11 hex of its id (15 chars). Docker's
/// devices are `docker0` and `br-<12 hex>`, so the prefix never collides.
pub(crate) fn bridge_name(network_id: &str) -> String {
    format!("mrb-{}", prefix(network_id, 11))
}

/// Bridge of the default network: fixed per instance (derived from the root),
/// so two minirt roots on one host never share it.
pub(crate) fn default_bridge_name(instance_tag: &str) -> String {
    format!("mr0-{}", prefix(instance_tag, 8))
}

/// Host end of an endpoint's veth pair: "mrv" + 12 hex of the endpoint id.
pub(crate) fn host_veth_name(endpoint_id: &str) -> String {
    format!("mrv{}", prefix(endpoint_id, 12))
}

/// Interface name inside the container for its `n`th network.
pub(crate) fn container_ifname(n: usize) -> String {
    format!("eth{n}")
}

fn prefix(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// A user-chosen bridge name (`-o bridge_name=`): a valid Linux device name
/// that is not one of Docker's.
pub fn validate_bridge_name(name: &str) -> Result<(), NetworkError> {
    let bad = |why: &str| NetworkError::Invalid(format!("invalid bridge name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(bad(&format!("longer than {MAX_IFNAME_LEN} characters")));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(bad(
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        ));
    }
    if name == "docker0" || name.starts_with("br-") {
        return Err(bad("reserved for Docker"));
    }
    Ok(())
}

/// Docker's option keys, as `network inspect` shows them under "Options".
pub(crate) const OPT_GATEWAY_MODE: &str = "com.docker.network.bridge.gateway_mode_ipv4";
pub(crate) const OPT_TRUSTED_IFS: &str = "com.docker.network.bridge.trusted_host_interfaces";
pub(crate) const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
pub(crate) const OPT_GATEWAY_MODE6: &str = "com.docker.network.bridge.gateway_mode_ipv6";

/// Driver options of `network create -o`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeOptions {
    pub mtu: Option<u32>,
    pub bridge_name: Option<String>,
    pub gateway_mode: Option<GatewayMode>,
    /// `gateway_mode_ipv6`: nat (NAT66) or routed, for the IPv6 side.
    pub gateway_mode6: Option<GatewayMode>,
    /// Host interfaces allowed to route to published container ports directly.
    pub trusted_interfaces: Vec<String>,
    /// Host address `-p` binds to when the spec names none.
    pub host_binding: Option<Ipv4Addr>,
    /// `-o minirt.antispoof=false`: the network's containers may send
    /// any source address (see antispoof.rs).
    pub antispoof: Option<bool>,
}

/// Interface names of `trusted_host_interfaces` (colon separated, as Docker).
pub(crate) fn parse_trusted_interfaces(v: &str) -> Result<Vec<String>, NetworkError> {
    let mut out = vec![];
    for name in v.split(':').filter(|n| !n.is_empty()) {
        let ok = name.len() <= MAX_IFNAME_LEN
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
        if !ok {
            return Err(NetworkError::Invalid(format!(
                "invalid trusted_host_interfaces {v:?}: {name:?} is not an interface name"
            )));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// Parses `-o mtu=N`, `-o bridge_name=NAME` (Docker's long keys
/// `com.docker.network.driver.mtu` / `com.docker.network.bridge.name` too)
/// and Docker 28's gateway mode, trusted interfaces and host binding.
pub fn parse_options(opts: &[String]) -> Result<BridgeOptions, NetworkError> {
    let mut out = BridgeOptions::default();
    for o in opts {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            NetworkError::Invalid(format!("invalid option {o:?}: expected KEY=VALUE"))
        })?;
        match k {
            "mtu" | "com.docker.network.driver.mtu" => {
                let mtu: u32 = v
                    .parse()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| {
                        NetworkError::Invalid(format!(
                            "invalid mtu {v:?}: expected a number from 68 to 65535"
                        ))
                    })?;
                out.mtu = Some(mtu);
            }
            "bridge_name" | "com.docker.network.bridge.name" => {
                validate_bridge_name(v)?;
                out.bridge_name = Some(v.to_string());
            }
            OPT_GATEWAY_MODE => {
                let m = GatewayMode::parse(v).ok_or_else(|| {
                    NetworkError::Invalid(format!(
                        "invalid gateway_mode_ipv4 {v:?}: expected nat, nat-unprotected, routed or isolated"
                    ))
                })?;
                out.gateway_mode = Some(m);
            }
            OPT_GATEWAY_MODE6 => {
                let m = GatewayMode::parse(v)
                    .filter(|m| matches!(m, GatewayMode::Nat | GatewayMode::Routed))
                    .ok_or_else(|| {
                        NetworkError::Invalid(format!(
                            "invalid gateway_mode_ipv6 {v:?}: expected nat or routed"
                        ))
                    })?;
                out.gateway_mode6 = Some(m);
            }
            OPT_TRUSTED_IFS => out.trusted_interfaces = parse_trusted_interfaces(v)?,
            OPT_HOST_BINDING => {
                let ip: Ipv4Addr = v.parse().map_err(|_| {
                    NetworkError::Invalid(format!(
                        "invalid host_binding_ipv4 {v:?}: expected an IPv4 address"
                    ))
                })?;
                out.host_binding = Some(ip);
            }
            "minirt.antispoof" => {
                out.antispoof = Some(match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(NetworkError::Invalid(format!(
                            "invalid minirt.antispoof {v:?}: expected true or false"
                        )))
                    }
                });
            }
            _ => {
                return Err(NetworkError::Invalid(format!(
                    "unknown option {k:?}: the bridge driver knows mtu, bridge_name, \
                     {OPT_GATEWAY_MODE}, {OPT_GATEWAY_MODE6}, {OPT_TRUSTED_IFS}, {OPT_HOST_BINDING} \
                     and minirt.antispoof"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in [
            "testbr",
            "a",
            "0net",
            "my_net.v1-2",
            &"n".repeat(MAX_NAME_LEN),
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-net",
            ".net",
            "_x",
            "has space",
            "a/b",
            "ünï",
            &"n".repeat(65),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid network name"), "{e}");
        }
    }

    #[test]
    fn derived_device_names_fit_ifnamsiz_and_avoid_docker() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let b = bridge_name(id);
        assert_eq!(b, "mrb-0123456789a");
        assert_eq!(b.len(), MAX_IFNAME_LEN);
        assert!(validate_bridge_name(&b).is_ok());
        let v = host_veth_name(id);
        assert_eq!(v, "mrv0123456789ab");
        assert_eq!(v.len(), MAX_IFNAME_LEN);
        assert_eq!(default_bridge_name("deadbeef"), "mr0-deadbeef");
        assert_eq!(container_ifname(2), "eth2");
    }

    #[test]
    fn bridge_name_option_rules() {
        assert!(validate_bridge_name("mybr0").is_ok());
        for bad in [
            "",
            "docker0",
            "br-123",
            "sixteen-chars-xx",
            "a b",
            "-x",
            "a/b",
        ] {
            assert!(validate_bridge_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_parse_and_refuse_clearly() {
        let o = parse_options(&["mtu=1400".into(), "bridge_name=br0x".into()]).unwrap();
        assert_eq!(
            o,
            BridgeOptions {
                mtu: Some(1400),
                bridge_name: Some("br0x".into()),
                ..Default::default()
            }
        );
        let o = parse_options(&["minirt.antispoof=false".into()]).unwrap();
        assert_eq!(o.antispoof, Some(false));
        let o = parse_options(&["com.docker.network.driver.mtu=9000".into()]).unwrap();
        assert_eq!(o.mtu, Some(9000));
        for (bad, msg) in [
            ("mtu=abc", "invalid mtu"),
            ("mtu=10", "invalid mtu"),
            ("mtu", "expected KEY=VALUE"),
            ("color=red", "unknown option"),
            ("bridge_name=waytoolongbridgename", "invalid bridge name"),
            (
                "com.docker.network.bridge.gateway_mode_ipv4=open",
                "invalid gateway_mode_ipv4",
            ),
            (
                "com.docker.network.bridge.trusted_host_interfaces=eth0:a b",
                "invalid trusted_host_interfaces",
            ),
            (
                "com.docker.network.bridge.host_binding_ipv4=localhost",
                "invalid host_binding_ipv4",
            ),
            ("minirt.antispoof=off", "expected true or false"),
        ] {
            let e = parse_options(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod gateway_option_tests {
    use super::*;

    #[test]
    fn docker_28_options_parse() {
        let o = parse_options(&[
            format!("{OPT_GATEWAY_MODE}=routed"),
            format!("{OPT_TRUSTED_IFS}=eth3:vxlan.1"),
            format!("{OPT_HOST_BINDING}=127.0.0.1"),
        ])
        .unwrap();
        assert_eq!(o.gateway_mode, Some(GatewayMode::Routed));
        assert_eq!(o.trusted_interfaces, vec!["eth3", "vxlan.1"]);
        assert_eq!(o.host_binding, Some(Ipv4Addr::LOCALHOST));
        for m in ["nat", "nat-unprotected", "routed", "isolated"] {
            let o = parse_options(&[format!("{OPT_GATEWAY_MODE}={m}")]).unwrap();
            assert_eq!(o.gateway_mode.map(GatewayMode::as_str), Some(m));
        }
        let o = parse_options(&[format!("{OPT_GATEWAY_MODE6}=routed")]).unwrap();
        assert_eq!(o.gateway_mode6, Some(GatewayMode::Routed));
        assert!(parse_options(&[format!("{OPT_GATEWAY_MODE6}=isolated")])
            .unwrap_err()
            .to_string()
            .contains("expected nat or routed"));
        assert!(parse_trusted_interfaces("eth0:").unwrap() == vec!["eth0"]);
        assert!(parse_trusted_interfaces("a:sixteen-chars-xx").is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn network_names_are_valid_exactly_by_the_rule(s in "\\PC{0,70}|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,70}") {
            let by_rule = !s.is_empty()
                && s.len() <= MAX_NAME_LEN
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            prop_assert_eq!(validate_name(&s).is_ok(), by_rule, "{:?}", s);
        }

        #[test]
        fn derived_device_names_fit_ifnamsiz(id in "[0-9a-f]{0,64}") {
            for n in [bridge_name(&id), default_bridge_name(&id), host_veth_name(&id)] {
                prop_assert!(n.len() <= MAX_IFNAME_LEN, "{}", n);
                prop_assert!(validate_bridge_name(&n).is_ok() || n.starts_with("mrv"), "{}", n);
            }
        }
    }
}

//! Published ports as elements of the instance table's maps (`pm_*` DNAT
//! maps, `pub_*` sets): the element texts, the scripts that add and remove
//! them, and the single-element fixes a heal applies.

use super::{declarations, q, FwPort};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The elements of one published port: its DNAT mapping (not on routed
/// networks) and its container address . port in `pub_*`.
pub fn port_elements(p: &FwPort) -> Vec<(String, String)> {
    let proto = p.proto.to_string();
    let six = if p.ctr_ip.is_ipv6() { "6" } else { "" };
    let value = format!("{} . {}", p.ctr_ip, p.ctr_port);
    let mut v = vec![];
    if !p.routed {
        if p.host_ip.is_unspecified() {
            v.push((
                format!("pm{six}_any_{proto}"),
                format!("{} : {value}", p.host_port),
            ));
        } else {
            v.push((
                format!("pm{six}_{proto}"),
                format!("{} . {} : {value}", p.host_ip, p.host_port),
            ));
        }
    }
    v.push((format!("pub{six}_{proto}"), value));
    v
}

/// Every element of these ports, once (two mappings may publish the same
/// container port: one `pub_*` element, which a batch must delete once).
fn unique_elements(ports: &[FwPort]) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    ports
        .iter()
        .flat_map(port_elements)
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// Map elements for published ports (one line each, one batch).
pub fn render_ports_add(table: &str, ports: &[FwPort]) -> String {
    let mut s = String::new();
    for (map, e) in unique_elements(ports) {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    }
    s
}

/// Removes published ports; absent ones are not an error.
pub fn render_ports_del(table: &str, ports: &[FwPort]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let mut s = declarations(table);
    s += &render_ports_add(table, ports);
    for (map, e) in unique_elements(ports) {
        let key = e.split(" : ").next().unwrap_or(&e).to_string();
        let _ = writeln!(s, "delete element inet {table} {map} {{ {key} }}");
    }
    s
}

/// Adds and deletes single elements (what the heal check found missing or
/// extra); `del` holds keys or `key : value` texts as `Desired` has them.
pub fn render_elements_fix(
    table: &str,
    add: &[(String, String)],
    del: &[(String, String)],
) -> String {
    let mut s = String::new();
    for (map, e) in del {
        // Re-add first: the element may have gone meanwhile.
        let _ = writeln!(
            s,
            "add element inet {table} {map} {{ {} }}",
            quote_elem(map, e)
        );
        let key = e.split(" : ").next().unwrap_or(e);
        let _ = writeln!(
            s,
            "delete element inet {table} {map} {{ {} }}",
            quote_elem(map, key)
        );
    }
    for (map, e) in add {
        let _ = writeln!(
            s,
            "add element inet {table} {map} {{ {} }}",
            quote_elem(map, e)
        );
    }
    s
}

/// `Desired` keeps interface names unquoted; scripts need them quoted.
fn quote_elem(map: &str, e: &str) -> String {
    let ifname_keyed = matches!(
        map,
        "bridges" | "fwd_iif" | "fwd_oif" | "post_dnat_oif" | "guard_iif"
    );
    if !ifname_keyed {
        return e.to_string();
    }
    match e.split_once(" : ") {
        Some((k, v)) => format!("{} : {v}", q(k)),
        None => q(e),
    }
}

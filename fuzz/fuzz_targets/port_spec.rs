//! Fuzzes `-p` parsing (and the MINIRT_PORT_RANGE parser): never panics, and
//! every accepted explicit mapping round-trips through its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minirt::network::portspec::{parse_port_range, parse_publish};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse_port_range(s) {
        assert!(*r.start() >= 1 && r.start() <= r.end());
    }
    let Ok(maps) = parse_publish(s) else {
        return;
    };
    assert!(!maps.is_empty());
    for m in maps {
        assert_ne!(m.container_port, 0);
        assert_ne!(m.host_port, Some(0));
        let canon = match m.host_port {
            Some(h) => format!("{}:{h}:{}/{}", m.host_ip, m.container_port, m.proto),
            None => format!("{}::{}/{}", m.host_ip, m.container_port, m.proto),
        };
        assert_eq!(parse_publish(&canon).ok(), Some(vec![m]), "{canon}");
    }
});

//! User namespaces: the spec's `uidMappings`/`gidMappings` checked (pure)
//! and written by the parent into the new namespace of the cloned init
//! (uid_map, then setgroups, then gid_map) before it is told to go on. The
//! rootfs is used as it is (as runc does): the user prepares it, owned by
//! the host ids the container's root maps to.

use oci_spec::runtime::{LinuxIdMapping, Spec};
use std::path::Path;

/// The spec's mappings, as the text of /proc/PID/uid_map and gid_map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// The host ids of the container's root (what owns what the runtime
    /// makes for it, e.g. exec.fifo), if it is mapped.
    pub root: (Option<u32>, Option<u32>),
}

/// The host id that id 0 of the container maps to.
fn host_root(maps: &[LinuxIdMapping]) -> Option<u32> {
    maps.iter()
        .find(|m| m.container_id() == 0 && m.size() > 0)
        .map(|m| m.host_id())
}

/// One line per mapping ("inside outside count"), as the kernel reads it.
/// The kernel takes at most 340 lines and no overlaps; a mapping of zero
/// ids is refused here, with the field's name.
pub(crate) fn map_text(what: &str, maps: &[LinuxIdMapping]) -> Result<String, String> {
    if maps.is_empty() {
        return Err(format!(
            "a new user namespace needs linux.{what} (the spec has none)"
        ));
    }
    if maps.len() > 340 {
        return Err(format!("linux.{what}: at most 340 mappings"));
    }
    let mut text = String::new();
    for m in maps {
        if m.size() == 0 {
            return Err(format!("linux.{what}: a mapping of size 0"));
        }
        text += &format!("{} {} {}\n", m.container_id(), m.host_id(), m.size());
    }
    Ok(text)
}

/// What the spec asks for: None without a new user namespace; an error
/// for mappings without one, or one without mappings.
pub fn plan(spec: &Spec, new_userns: bool) -> Result<Option<IdMaps>, String> {
    let linux = spec.linux().clone().unwrap_or_default();
    let uids = linux.uid_mappings().clone().unwrap_or_default();
    let gids = linux.gid_mappings().clone().unwrap_or_default();
    if !new_userns {
        if uids.is_empty() && gids.is_empty() {
            return Ok(None);
        }
        return Err(
            "linux.uidMappings/gidMappings need a new user namespace in linux.namespaces".into(),
        );
    }
    Ok(Some(IdMaps {
        uid_map: map_text("uidMappings", &uids)?,
        gid_map: map_text("gidMappings", &gids)?,
        root: (host_root(&uids), host_root(&gids)),
    }))
}

/// Parent side: the spec's rlimits on process `pid` (in a user namespace,
/// where it may not raise a hard limit itself), as runc sets them.
pub(crate) fn set_rlimits(pid: i32, rlimits: &[super::process::Rlimit]) -> Result<(), String> {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: prlimit reads one valid rlimit struct and writes nothing
        // (null old-limit pointer).
        let rc = unsafe { libc::prlimit(pid, r.resource as _, &lim, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(format!(
                "rlimit {} to {}:{}: {}",
                r.resource,
                r.soft,
                r.hard,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Parent side: writes the maps of process `pid` (in its new user
/// namespace, waiting for them). setgroups stays allowed: the parent is
/// root, and the container's process calls setgroups for its user.
pub(crate) fn write_maps(pid: i32, maps: &IdMaps) -> Result<(), String> {
    let proc = Path::new("/proc").join(pid.to_string());
    let write = |name: &str, text: &str| {
        std::fs::write(proc.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("uid_map", &maps.uid_map)?;
    write("setgroups", "allow")?;
    write("gid_map", &maps.gid_map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut v = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "r"}});
        if let (Some(v), serde_json::Value::Object(more)) = (v.as_object_mut(), json) {
            v.extend(more);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mappings_become_map_lines_and_need_a_new_user_namespace() {
        let s = spec(serde_json::json!({"linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536},
                            {"containerID": 65536, "hostID": 5000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 10}],
        }}));
        assert_eq!(
            plan(&s, true).unwrap(),
            Some(IdMaps {
                uid_map: "0 100000 65536\n65536 5000 1\n".into(),
                gid_map: "0 200000 10\n".into(),
                root: (Some(100000), Some(200000)),
            })
        );
        let e = plan(&s, false).unwrap_err();
        assert!(e.contains("need a new user namespace"), "{e}");
        assert_eq!(plan(&spec(serde_json::json!({})), false).unwrap(), None);
        let e = plan(&spec(serde_json::json!({})), true).unwrap_err();
        assert!(e.contains("linux.uidMappings"), "{e}");
        let zero = spec(serde_json::json!({"linux": {
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 0}],
            "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
        }}));
        assert!(plan(&zero, true).unwrap_err().contains("size 0"));
    }
}

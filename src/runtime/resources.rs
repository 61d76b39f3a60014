//! A spec's `linux.resources` on the container's cgroup (v1 files): memory
//! (limit, reservation, swap, swappiness, OOM killer), cpu (shares, quota,
//! period, realtime, cpuset), pids, and the device list. `plan` is pure; a
//! file whose controller this host lacks is an error, never skipped.

use crate::cgroups::{Cgroup, Resources};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use std::path::PathBuf;

/// The device rules every container needs for the nodes runc (and we)
/// always create, appended after the spec's own (runc's order).
pub(crate) const DEFAULT_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// What `Cgroup::create` itself writes (and checks a home for).
pub fn base(res: Option<&LinuxResources>) -> Resources {
    let mut out = Resources::default();
    if let Some(r) = res {
        out.memory = r
            .memory()
            .as_ref()
            .and_then(|m| m.limit())
            .filter(|l| *l > 0);
        out.pids_limit = r.pids().as_ref().map(|p| p.limit()).filter(|l| *l > 0);
    }
    out
}

fn device_rule(d: &LinuxDeviceCgroup) -> (&'static str, String) {
    let file = if d.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let typ = d
        .typ()
        .map(|t| t.as_str().to_string())
        .unwrap_or("a".into());
    let num = |n: Option<i64>| n.map(|v| v.to_string()).unwrap_or("*".into());
    let access = d
        .access()
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm".into());
    let rule = if typ == "a" {
        "a".to_string()
    } else {
        format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
    };
    (file, rule)
}

/// The (file, value) writes, in order, beyond what `base` covers; `update`
/// adds the memory and pids limits themselves.
pub fn plan(res: &LinuxResources, update: bool) -> Result<Vec<(String, String)>, String> {
    let mut w: Vec<(String, String)> = Vec::new();
    let mut put = |f: &str, v: String| w.push((f.to_string(), v));
    if let Some(m) = res.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err("not implemented: kernel memory limits (removed from Linux)".into());
        }
        if update {
            if let Some(l) = m.limit() {
                put("memory.limit_in_bytes", l.to_string());
            }
        }
        if let Some(r) = m.reservation() {
            put("memory.soft_limit_in_bytes", r.to_string());
        }
        match (m.swap(), m.limit()) {
            (Some(s), _) => put("memory.memsw.limit_in_bytes", s.to_string()),
            (None, Some(l)) if update => put("memory.memsw.limit_in_bytes", l.to_string()),
            _ => {}
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(format!("invalid memory swappiness {s}: 0..100"));
            }
            put("memory.swappiness", s.to_string());
        }
        if m.disable_oom_killer() == Some(true) {
            put("memory.oom_control", "1".into());
        }
    }
    if let Some(c) = res.cpu() {
        if c.idle().is_some() || c.burst().is_some() {
            return Err("not implemented: cpu idle/burst (cgroup v2 only)".into());
        }
        if let Some(s) = c.shares() {
            put("cpu.shares", s.to_string());
        }
        if let Some(p) = c.period() {
            put("cpu.cfs_period_us", p.to_string());
        }
        if let Some(q) = c.quota() {
            put("cpu.cfs_quota_us", q.to_string());
        }
        if let Some(p) = c.realtime_period() {
            put("cpu.rt_period_us", p.to_string());
        }
        if let Some(r) = c.realtime_runtime() {
            put("cpu.rt_runtime_us", r.to_string());
        }
        if let Some(s) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            put("cpuset.cpus", s.clone());
        }
        if let Some(s) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            put("cpuset.mems", s.clone());
        }
    }
    if update {
        if let Some(p) = res.pids() {
            put(
                "pids.max",
                if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                },
            );
        }
    }
    if let Some(devs) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        for d in devs {
            let (f, r) = device_rule(d);
            put(f, r);
        }
        for r in DEFAULT_ALLOW {
            put("devices.allow", r.to_string());
        }
    }
    Ok(w)
}

/// Writes the plan into whichever of the cgroup's directories has the file.
pub fn apply(cg: &Cgroup, res: &LinuxResources, update: bool) -> Result<(), String> {
    let dirs: Vec<PathBuf> = cg.paths();
    let writes = plan(res, update)?;
    let mut pending_memsw = None;
    for (file, value) in writes {
        let dir = dirs
            .iter()
            .find(|d| d.join(&file).exists())
            .ok_or_else(|| format!("cannot set {file}: this host's cgroups have no such file"))?;
        let path = dir.join(&file);
        let res = std::fs::write(&path, &value);
        // memsw must stay >= the memory limit: a raise of both needs memsw
        // first, a cut the limit first; retry the memsw write after the limit.
        match (res, file.as_str()) {
            (Ok(()), _) => {}
            (Err(_), "memory.memsw.limit_in_bytes") if update => {
                pending_memsw = Some((path, value));
            }
            (Err(e), _) => return Err(format!("writing {value} to {}: {e}", path.display())),
        }
        if file == "memory.limit_in_bytes" {
            if let Some((p, v)) = pending_memsw.take() {
                std::fs::write(&p, &v)
                    .map_err(|e| format!("writing {v} to {}: {e}", p.display()))?;
            }
        }
    }
    if let Some((p, v)) = pending_memsw {
        std::fs::write(&p, &v).map_err(|e| format!("writing {v} to {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn podmans_resources_become_v1_writes() {
        let r = res(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 67108864, "swap": 134217728},
            "pids": {"limit": 2048}}));
        assert_eq!(base(Some(&r)).memory, Some(67108864));
        assert_eq!(base(Some(&r)).pids_limit, Some(2048));
        let w = plan(&r, false).unwrap();
        assert_eq!(
            w[0],
            ("memory.memsw.limit_in_bytes".into(), "134217728".into())
        );
        assert_eq!(w[1], ("devices.deny".into(), "a".into()));
        assert_eq!(w.len(), 2 + DEFAULT_ALLOW.len());
        assert!(w
            .iter()
            .any(|(f, v)| f == "devices.allow" && v == "c 1:3 rwm"));
    }

    #[test]
    fn cpu_period_is_written_before_quota_and_update_adds_limits() {
        let r = res(serde_json::json!({
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "memory": {"limit": 1000000}, "pids": {"limit": 0}}));
        let w = plan(&r, true).unwrap();
        let files: Vec<&str> = w.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "cpuset.cpus",
                "pids.max"
            ]
        );
        assert_eq!(w[6].1, "max");
    }

    #[test]
    fn device_rules_keep_their_type_numbers_and_access() {
        let r = res(serde_json::json!({"devices": [
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"},
            {"allow": true, "type": "b", "major": 8}]}));
        let w = plan(&r, false).unwrap();
        assert_eq!(w[0].1, "c 10:200 rw");
        assert_eq!(w[1].1, "b 8:* rwm");
    }

    #[test]
    fn what_v1_cannot_do_is_refused() {
        let r = res(serde_json::json!({"memory": {"kernel": 1000}}));
        assert!(plan(&r, false).unwrap_err().contains("kernel memory"));
        let r = res(serde_json::json!({"memory": {"swappiness": 200}}));
        assert!(plan(&r, false).is_err());
    }
}

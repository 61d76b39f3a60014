//! `update`: new limits for a container, written into its cgroup while it
//! runs and kept in its configuration for the next start. The cgroup file
//! writes are a pure plan (v1 or v2 file names), ordered so that v1's
//! `memsw` limit never falls below the memory limit.

use super::lifecycle;
use super::runtime::cgroup_of;
use super::spec::CPU_PERIOD;
use super::ContainerError;
use crate::store::{containers, Store};
use crate::Instance;

/// The limits an `update` asks for; None leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes; 0 removes the limit.
    pub memory: Option<i64>,
    /// Billionths of a CPU; 0 removes the limit.
    pub nano_cpus: Option<i64>,
    /// Tasks; 0 or less removes the limit.
    pub pids_limit: Option<i64>,
    /// `--restart`: the policy the monitor applies at the next exit (it
    /// reads the stored configuration then).
    pub restart: Option<super::restart::RestartPolicy>,
}

/// (file, value) writes for `new` on a v1 or v2 hierarchy. `raise` says
/// whether the new memory limit is above the old one (v1 wants memsw
/// raised first, lowered last).
pub fn plan(new: &Limits, v2: bool, raise: bool) -> Vec<(&'static str, String)> {
    let mut w = vec![];
    if let Some(m) = new.memory {
        if v2 {
            w.push((
                "memory.max",
                if m > 0 { m.to_string() } else { "max".into() },
            ));
        } else {
            let v = if m > 0 { m.to_string() } else { "-1".into() };
            if raise {
                w.push(("memory.memsw.limit_in_bytes", v.clone()));
                w.push(("memory.limit_in_bytes", v));
            } else {
                w.push(("memory.limit_in_bytes", v.clone()));
                w.push(("memory.memsw.limit_in_bytes", v));
            }
        }
    }
    if let Some(n) = new.nano_cpus {
        let quota = (n as i128 * CPU_PERIOD as i128 / 1_000_000_000) as i64;
        if v2 {
            let q = if n > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            w.push(("cpu.max", format!("{q} {CPU_PERIOD}")));
        } else {
            w.push(("cpu.cfs_period_us", CPU_PERIOD.to_string()));
            w.push((
                "cpu.cfs_quota_us",
                if n > 0 {
                    quota.to_string()
                } else {
                    "-1".into()
                },
            ));
        }
    }
    if let Some(p) = new.pids_limit {
        w.push(("pids.max", if p > 0 { p.to_string() } else { "max".into() }));
    }
    w
}

/// Applies `new` to container `key`: its cgroup if it runs, its stored
/// configuration always.
pub fn update(inst: &Instance, key: &str, new: &Limits) -> crate::Result<()> {
    let row = lifecycle::lookup(inst, key)?;
    let mut cfg = lifecycle::config_of(&row);
    let old_memory = cfg.resources.memory.unwrap_or(0);
    if new.restart.is_some_and(|p| !p.is_none()) && cfg.auto_remove {
        return Err(ContainerError::Invalid(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
                .into(),
        )
        .into());
    }
    if lifecycle::is_running(&row) {
        let cg = cgroup_of(inst, &row.id);
        let mut dirs = cg.paths();
        let v2 = !dirs.iter().any(|d| {
            d.join("memory.limit_in_bytes").exists() || d.join("cpu.cfs_quota_us").exists()
        });
        if let Some(d) = cg.v2_dir() {
            dirs.push(d.to_path_buf());
        }
        let raise = new
            .memory
            .is_some_and(|m| m == 0 || old_memory == 0 || m > old_memory);
        for (file, value) in plan(new, v2, raise) {
            let Some(dir) = dirs.iter().find(|d| d.join(file).exists()) else {
                // No swap accounting on this host: nothing to keep in step.
                if file == "memory.memsw.limit_in_bytes" {
                    continue;
                }
                return Err(ContainerError::Runtime(format!(
                    "cannot set {file}: this host's cgroups have no such file"
                ))
                .into());
            };
            std::fs::write(dir.join(file), &value)
                .map_err(|e| ContainerError::Runtime(format!("writing {value} to {file}: {e}")))?;
        }
    }
    let put = |v: Option<i64>, old: Option<i64>| match v {
        Some(n) if n > 0 => Some(n),
        Some(_) => None,
        None => old,
    };
    cfg.resources.memory = put(new.memory, cfg.resources.memory);
    cfg.resources.nano_cpus = put(new.nano_cpus, cfg.resources.nano_cpus);
    cfg.resources.pids_limit = put(new.pids_limit, cfg.resources.pids_limit);
    if let Some(p) = new.restart {
        cfg.restart = p;
    }
    let json = serde_json::to_string(&cfg).map_err(crate::store::StoreError::from)?;
    let s = Store::open(&inst.db_path())?;
    containers::set_config(s.conn(), &row.id, &json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memsw_moves_with_the_limit_in_a_safe_order() {
        let up = Limits {
            memory: Some(128 << 20),
            ..Default::default()
        };
        assert_eq!(
            plan(&up, false, true),
            [
                ("memory.memsw.limit_in_bytes", "134217728".to_string()),
                ("memory.limit_in_bytes", "134217728".to_string()),
            ]
        );
        assert_eq!(plan(&up, false, false)[0].0, "memory.limit_in_bytes");
    }

    #[test]
    fn v2_and_v1_cpu_and_pids_files() {
        let l = Limits {
            memory: None,
            nano_cpus: Some(500_000_000),
            pids_limit: Some(0),
            restart: None,
        };
        assert_eq!(
            plan(&l, true, false),
            [
                ("cpu.max", "50000 100000".to_string()),
                ("pids.max", "max".to_string())
            ]
        );
        assert_eq!(
            plan(&l, false, false),
            [
                ("cpu.cfs_period_us", "100000".to_string()),
                ("cpu.cfs_quota_us", "50000".to_string()),
                ("pids.max", "max".to_string())
            ]
        );
        let m = Limits {
            memory: Some(0),
            ..Default::default()
        };
        assert_eq!(plan(&m, true, true), [("memory.max", "max".to_string())]);
    }
}

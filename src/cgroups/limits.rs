//! Writing one container's limits into its cgroup directories (through the
//! cgroups-rs controllers), and the pure values behind them.

use std::io;
use std::path::Path;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;

use super::devices::DevicePolicy;
use super::{CgroupError, Resources, Result};

/// CFS period Docker uses for `--cpus`, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// The limits a `Resources` asks for, zero and negative values meaning "no
/// limit" as in Docker (`-m 0`, `--pids-limit -1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wanted {
    pub memory: Option<i64>,
    /// CFS quota in microseconds per `CPU_PERIOD_US`.
    pub cpu_quota_us: Option<i64>,
    pub pids: Option<i64>,
    pub all_devices: bool,
}

impl Wanted {
    pub fn from(res: &Resources) -> Result<Wanted> {
        let positive = |v: Option<i64>| v.filter(|v| *v > 0);
        if let Some(m) = res.memory {
            if m < 0 {
                return Err(CgroupError::Invalid(format!(
                    "invalid memory limit {m}: it cannot be negative"
                )));
            }
        }
        if let Some(n) = res.nano_cpus {
            if n < 0 {
                return Err(CgroupError::Invalid(format!(
                    "invalid CPU limit {n}: it cannot be negative"
                )));
            }
        }
        Ok(Wanted {
            memory: positive(res.memory),
            cpu_quota_us: positive(res.nano_cpus).map(cpu_quota_us),
            pids: positive(res.pids_limit),
            all_devices: res.all_devices,
        })
    }
}

/// quota = nano_cpus * period / 1e9, never below the kernel's 1 ms minimum.
pub(crate) fn cpu_quota_us(nano_cpus: i64) -> i64 {
    let q = (nano_cpus as i128 * CPU_PERIOD_US as i128 / 1_000_000_000) as i64;
    q.max(1000)
}

/// Turns a cgroups-rs error into one line naming what failed and where.
fn cg_err(what: &str, dir: &Path, e: cgroups_rs::fs::error::Error) -> CgroupError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return CgroupError::Io(format!("cannot {what} in {}: {io}", dir.display()));
        }
        cause = c.source();
    }
    CgroupError::Io(format!("cannot {what} in {}: {}", dir.display(), e.kind()))
}

/// Memory limit and no swap beyond it. `v2` selects memory.max/memory.swap.max
/// over memory.limit_in_bytes/memory.memsw.limit_in_bytes.
pub(crate) fn write_memory(dir: &Path, mount: &Path, v2: bool, bytes: i64) -> Result<()> {
    let c = MemController::new(dir.to_path_buf(), mount.to_path_buf(), v2);
    c.set_limit(bytes)
        .map_err(|e| cg_err(&format!("set the memory limit to {bytes} bytes"), dir, e))?;
    // Without swap accounting (v1) or swap (v2) the file is absent: nothing to escape to.
    if v2 {
        if dir.join("memory.swap.max").exists() {
            c.set_memswap_limit(0)
                .map_err(|e| cg_err("disable swap", dir, e))?;
        }
    } else if dir.join("memory.memsw.limit_in_bytes").exists() {
        c.set_memswap_limit(bytes)
            .map_err(|e| cg_err("limit memory+swap", dir, e))?;
    }
    Ok(())
}

pub(crate) fn write_cpu(dir: &Path, mount: &Path, v2: bool, quota_us: i64) -> Result<()> {
    let c = CpuController::new(dir.to_path_buf(), mount.to_path_buf(), v2);
    c.set_cfs_quota_and_period(Some(quota_us), Some(CPU_PERIOD_US))
        .map_err(|e| cg_err(&format!("set the CPU quota to {quota_us}us"), dir, e))
}

pub(crate) fn write_pids(dir: &Path, mount: &Path, v2: bool, max: i64) -> Result<()> {
    let c = PidController::new(dir.to_path_buf(), mount.to_path_buf(), v2);
    c.set_pid_max(MaxValue::Value(max))
        .map_err(|e| cg_err(&format!("set the process limit to {max}"), dir, e))
}

/// Sets the v1 devices hierarchy's list to `policy`: its default first
/// (`a` in devices.allow or devices.deny clears the list), then each rule.
pub(crate) fn write_devices(dir: &Path, policy: &DevicePolicy) -> Result<()> {
    use std::io::Write;
    // Each rule is one write(2) (the kernel parses one rule per write), on
    // one open file per name instead of an open and close per rule.
    let mut files: [Option<std::fs::File>; 2] = [None, None];
    let mut write = |allow: bool, rule: &str| {
        let name = if allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let path = dir.join(name);
        let err = |e: std::io::Error| {
            CgroupError::Io(format!("cannot write '{rule}' to {}: {e}", path.display()))
        };
        let slot = &mut files[usize::from(allow)];
        let f = match slot {
            Some(f) => f,
            None => slot.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(err)?,
            ),
        };
        f.write_all(rule.as_bytes()).map_err(err)
    };
    write(policy.default_allow, "a")?;
    policy
        .rules
        .iter()
        .try_for_each(|r| write(r.allow, &r.to_string()))
}

/// The value of `key` in a flat-keyed cgroup file ("oom_kill 3").
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_follows_docker_formula() {
        assert_eq!(cpu_quota_us(500_000_000), 50_000);
        assert_eq!(cpu_quota_us(2_000_000_000), 200_000);
        assert_eq!(cpu_quota_us(10_000_000), 1000);
        assert_eq!(cpu_quota_us(1), 1000, "kernel minimum");
        assert_eq!(cpu_quota_us(i64::MAX), i64::MAX / 10_000);
    }

    #[test]
    fn zero_and_negative_mean_no_limit_except_invalid_ones() {
        let w = Wanted::from(&Resources {
            memory: Some(0),
            nano_cpus: Some(0),
            pids_limit: Some(-1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(w, Wanted::default());
        let w = Wanted::from(&Resources {
            memory: Some(64 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(10),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(w.memory, Some(64 << 20));
        assert_eq!(w.cpu_quota_us, Some(150_000));
        assert_eq!(w.pids, Some(10));
        assert!(Wanted::from(&Resources {
            memory: Some(-5),
            ..Default::default()
        })
        .is_err());
        assert!(Wanted::from(&Resources {
            nano_cpus: Some(-5),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn flat_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(flat_keyed(v1, "oom_kill"), Some(2));
        assert_eq!(flat_keyed(v1, "oom_kill_disable"), Some(0));
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(flat_keyed(v2, "oom_kill"), Some(1));
        assert_eq!(flat_keyed(v2, "oom"), Some(1));
        assert_eq!(flat_keyed("oom_kill x\n", "oom_kill"), None);
        assert_eq!(flat_keyed("", "oom_kill"), None);
    }
}

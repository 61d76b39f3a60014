//! Resource limits through cgroups (cgroups-rs), on v1, v2 and hybrid hosts.
//! Contract used by the run path (owned by the cgroups work):
//!
//! - `Resources` (memory bytes, cpu quota from --cpus, pids limit) and the
//!   parsers `parse_memory("64m")`, `parse_cpus("0.5")`
//! - `Cgroup::create(parent, id, &Resources)`, `Cgroup::open(parent, id)`,
//!   `add_task(pid)`, `oom_killed()`, `procs()`, `remove()`

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0}")]
    Invalid(String),
    #[error("cgroup: {0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// Limits for one container, as the user asked for them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Memory limit in bytes (`-m`).
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU (`--cpus 0.5` = 500_000_000).
    pub nano_cpus: Option<i64>,
    /// Maximum number of tasks (`--pids-limit`).
    pub pids_limit: Option<i64>,
}

// ---- PLACEHOLDER until the `cgroups` branch lands (it owns this file) ----
pub struct Cgroup;
impl Cgroup {
    pub fn create(_parent: &str, _id: &str, _res: &Resources) -> Result<Cgroup> {
        Ok(Cgroup)
    }
    pub fn open(_parent: &str, _id: &str) -> Cgroup {
        Cgroup
    }
    pub fn add_task(&self, _pid: i32) -> Result<()> {
        Ok(())
    }
    pub fn procs_files(&self) -> Vec<std::path::PathBuf> {
        vec![]
    }
    pub fn procs(&self) -> Vec<i32> {
        vec![]
    }
    pub fn oom_killed(&self) -> bool {
        false
    }
    pub fn kill_all(&self, _sig: nix::sys::signal::Signal) -> Result<()> {
        Ok(())
    }
    pub fn remove(&self) -> Result<()> {
        Ok(())
    }
}
pub fn parse_memory(s: &str) -> Result<i64> {
    s.parse().map_err(|_| CgroupError::Invalid(s.into()))
}
pub fn parse_cpus(s: &str) -> Result<i64> {
    s.parse::<f64>()
        .map(|c| (c * 1e9) as i64)
        .map_err(|_| CgroupError::Invalid(s.into()))
}

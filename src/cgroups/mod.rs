//! Resource limits through cgroups, on v1, v2 and hybrid hosts.
//! Contract used by the run path (owned by the cgroups work):
//!
//! - `Resources` (memory bytes, cpu quota from --cpus, pids limit) and the
//!   parsers `parse_memory("64m")`, `parse_cpus("0.5")`
//! - `Cgroup::create(parent, id, &Resources)`, `Cgroup::open(parent, id)`,
//!   `add_task(pid)`, `join_self(born_in_v2)` (a new child moves itself:
//!   no global lock, see [`join_self`]), `procs_files()`, `procs()`, `oom_killed()`,
//!   `kill_all(sig)`, `remove()`, and `remove_parent_if_empty(parent)`
//!
//! # Layout handling
//!
//! The layout is read from /proc/self/mountinfo, never assumed
//! ([`layout::Layout::from_mountinfo`]):
//!
//! - **Unified** (only a cgroup2 mount, usually /sys/fs/cgroup): one directory
//!   `<mount>/<parent>/<id>`; memory, pids, cpu, cpuset and io are enabled in
//!   `cgroup.subtree_control` of every ancestor; `memory.swap.max` is 0.
//! - **Legacy** (v1 only): one directory `<mount>/<parent>/<id>` in every
//!   hierarchy holding a controller we use (memory, cpu, cpuacct, pids,
//!   cpuset, devices, freezer, blkio). A shared mount such as `cpu,cpuacct` is
//!   one directory. cpuset directories get `cpus`/`mems` copied from their
//!   parent (v1 creates them empty, and an empty cpuset refuses tasks);
//!   `memory.memsw.limit_in_bytes` equals the memory limit so swap is no way
//!   out; devices get Docker's default allow-list.
//! - **Devices on cgroup v2** (no devices controller there): the same rule
//!   list compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` eBPF program
//!   ([`devices`], [`ebpf`]) attached to the container's cgroup2 directory
//!   ([`v2_devices`]). A host with neither a v1 devices hierarchy nor a
//!   cgroup2 mount cannot restrict devices: creating a cgroup there fails.
//! - **Hybrid** (v1 controllers plus a cgroup2 mount, e.g. this build host's
//!   /sys/fs/cgroup/unified holding only hugetlb): as Legacy, plus a directory
//!   in the cgroup2 mount (best effort) that tracks the same processes; it
//!   gives `cgroup.kill`, which kills a whole cgroup without racing forks. A
//!   controller missing from v1 but offered by the cgroup2 mount is used there.
//!
//! cgroups-rs 0.5 writes the limit files (memory, cpu, pids) and drives the
//! freezer. Its hierarchy detection is not used: it picks v1 or v2 by the
//! filesystem type of /sys/fs/cgroup alone, hard-codes that path for v2, and
//! ignores the cgroup2 mount of a hybrid host; its directory creation
//! (create_dir_all, errors of the cpuset copy only logged) cannot tell what it
//! made, so a failed create could not be undone; its delete sleeps blindly.
//! Directories, `cgroup.subtree_control`, `cgroup.procs` and removal are
//! therefore driven here, on the paths found in mountinfo.

mod cgroup;
mod create;
pub mod devices;
pub mod ebpf;
#[cfg(test)]
mod kernel_tests;
mod kill;
pub mod layout;
mod limits;
mod oom;
mod parse;
mod plan;
mod remove;
mod v2_devices;

pub use cgroup::{join_self, Cgroup};
pub use layout::{Layout, Mode};
pub use parse::{online_cpus, parse_cpus, parse_cpus_for, parse_memory, parse_size, MIN_MEMORY};
pub use remove::remove_parent_if_empty;

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
    /// Memory limit in bytes (`-m`); 0 means none, as `-m 0` in Docker.
    /// Swap is not allowed beyond it.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU (`--cpus 0.5` = 500_000_000); 0 means none.
    pub nano_cpus: Option<i64>,
    /// Maximum number of tasks (`--pids-limit`); 0 or negative means none.
    pub pids_limit: Option<i64>,
    /// Every device readable and writable (`--privileged`) instead of Docker's allow-list.
    #[serde(default)]
    pub all_devices: bool,
}

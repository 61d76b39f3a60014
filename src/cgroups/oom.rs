//! Whether the kernel's OOM killer struck a container's cgroup.

use super::cgroup::Cgroup;
use super::limits;

impl Cgroup {
    /// True if the kernel's OOM killer killed a task of this cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(d) = self
            .dirs
            .iter()
            .find(|d| d.has("memory"))
            .or_else(|| self.dirs.iter().find(|d| d.v2))
        else {
            return false;
        };
        let file = if d.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(d.path.join(file))
            .ok()
            .and_then(|t| limits::flat_keyed(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }
}

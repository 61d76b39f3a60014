//! `update`: new resource limits written into a live container's cgroup.

use super::{err, Result, Runtime};
use crate::runtime::resources;
use crate::runtime::state::Status;
use oci_spec::runtime::LinuxResources;

impl Runtime {
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let rec = self.record(id)?;
        if self.status_of(&rec) == Status::Stopped {
            return Err(err(format!("container {id} is not running")));
        }
        resources::apply(&Self::cgroup(&rec), res, true).map_err(err)
    }
}

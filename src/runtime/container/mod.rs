//! The OCI lifecycle over a state directory (`<root>/<id>/`), one file per
//! operation: `bundle` (reading and checking a bundle), `create` (the init
//! blocked on `exec.fifo`, the `create` process gone), `start` (the gate
//! opened), `kill` (kill, delete), `exec`, `pause` (pause/resume), `update`;
//! here the state root itself and the queries (state, list, ps). Each
//! operation is a library call; `src/cli/oci.rs` only parses and prints.

mod bundle;
mod create;
mod exec;
mod kill;
mod pause;
mod start;
mod update;

pub use bundle::load_bundle;
pub use create::CreateOptions;
pub use exec::ExecOptions;

use super::state::{self, OciState, Record, Status, EXEC_FIFO};
use crate::cgroups::Cgroup;
use crate::util;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OciError(pub String);

type Result<T> = std::result::Result<T, OciError>;

fn err(msg: impl Into<String>) -> OciError {
    OciError(msg.into())
}

/// The resolved spec, kept beside the record: `exec` needs its seccomp
/// profile and namespaces after the bundle may have changed.
const SPEC_COPY: &str = "config.json";

/// A state root (runc's `--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

impl Runtime {
    pub fn new(root: &Path) -> Runtime {
        Runtime {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        state::check_id(id).is_ok() && self.dir(id).join(state::STATE_FILE).exists()
    }

    fn record(&self, id: &str) -> Result<Record> {
        state::check_id(id).map_err(err)?;
        state::load(&self.dir(id)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(format!("container {id} does not exist")),
            _ => err(format!("reading the state of {id}: {e}")),
        })
    }

    fn cgroup(rec: &Record) -> Cgroup {
        Cgroup::open(&rec.cgroup_parent, &rec.cgroup_name)
    }

    fn status_of(&self, rec: &Record) -> Status {
        let alive = util::process_alive(rec.pid, rec.pid_start);
        let gate = self.dir(&rec.id).join(EXEC_FIFO).exists();
        state::status(alive, gate, alive && pause::frozen(&Self::cgroup(rec)))
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let rec = self.record(id)?;
        Ok(state::oci_state(&rec, self.status_of(&rec)))
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(rec) = state::load(&e.path()) {
                if rec.id == id {
                    out.push(state::oci_state(&rec, self.status_of(&rec)));
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let rec = self.record(id)?;
        let mut p = Self::cgroup(&rec).procs();
        p.sort();
        Ok(p)
    }
}

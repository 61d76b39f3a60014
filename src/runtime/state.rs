//! The OCI state of a container: what `create` records in the state
//! directory (`<root>/<id>/state.json`), how the status follows from the
//! facts (init alive, start gate still there, cgroup frozen), and the
//! runtime-spec state document `state` prints. Pure but for `load`/`save`.

use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The runtime-spec version this runtime reports.
pub const OCI_VERSION: &str = "1.2.0";
/// The FIFO the init blocks on until `start` (runc's name).
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
pub(crate) const STATE_FILE: &str = "state.json";

/// What `create` recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// The init's start time (clock ticks), so a recycled pid is not it.
    pub pid_start: u64,
    pub bundle: PathBuf,
    /// RFC 3339.
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup as `Cgroup::open(parent, name)` takes it.
    pub cgroup_parent: String,
    pub cgroup_name: String,
    /// The init is the first process of its own pid namespace (killing it
    /// ends every process of the container).
    pub own_pid_ns: bool,
    /// Hooks to run later (poststart, poststop), kept: the bundle may change.
    #[serde(default)]
    pub hooks: Option<Hooks>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The status from the facts: a live init that has not passed its start
/// gate is created; a frozen one paused.
pub fn status(alive: bool, gate_pending: bool, frozen: bool) -> Status {
    match (alive, gate_pending, frozen) {
        (false, _, _) => Status::Stopped,
        (true, _, true) => Status::Paused,
        (true, true, false) => Status::Created,
        (true, false, false) => Status::Running,
    }
}

/// The runtime-spec state document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// Absent once stopped (the spec: "pid ... MUST be set when status is
    /// created or running").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub annotations: HashMap<String, String>,
    /// Not in the spec; runc and crun print it, and engines read it.
    pub created: String,
}

pub(crate) fn oci_state(rec: &Record, status: Status) -> OciState {
    OciState {
        oci_version: OCI_VERSION.to_string(),
        id: rec.id.clone(),
        status,
        pid: (status != Status::Stopped).then_some(rec.pid),
        bundle: rec.bundle.clone(),
        annotations: rec.annotations.clone(),
        created: rec.created.clone(),
    }
}

/// A container id names a directory: one plain path segment.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id {id:?}: use letters, digits and - _ . +"
        ))
    }
}

/// The cgroup (parent, name) for a spec's cgroupsPath: its last segment is
/// the container's directory; no path (or one segment) puts it under
/// `minirt-oci/`.
pub(crate) fn cgroup_names(cgroups_path: Option<&Path>, id: &str) -> (String, String) {
    let segs: Vec<String> = cgroups_path
        .map(|p| {
            p.to_string_lossy()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match segs.split_last() {
        Some((last, parent)) if !parent.is_empty() => (parent.join("/"), last.clone()),
        Some((last, _)) => ("minirt-oci".to_string(), last.clone()),
        None => ("minirt-oci".to_string(), id.to_string()),
    }
}

pub fn load(dir: &Path) -> std::io::Result<Record> {
    let text = std::fs::read(dir.join(STATE_FILE))?;
    serde_json::from_slice(&text).map_err(std::io::Error::other)
}

/// Written aside and renamed: a reader never sees half a record.
pub fn save(dir: &Path, rec: &Record) -> std::io::Result<()> {
    let tmp = dir.join(".state.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(rec).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, dir.join(STATE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            id: "c1".into(),
            pid: 42,
            pid_start: 7,
            bundle: "/b".into(),
            created: "2026-01-01T00:00:00Z".into(),
            annotations: HashMap::from([("k".to_string(), "v".to_string())]),
            cgroup_parent: "minirt-oci".into(),
            cgroup_name: "c1".into(),
            own_pid_ns: true,
            hooks: None,
        }
    }

    #[test]
    fn status_follows_the_facts() {
        assert_eq!(status(true, true, false), Status::Created);
        assert_eq!(status(true, false, false), Status::Running);
        assert_eq!(status(true, false, true), Status::Paused);
        assert_eq!(status(false, true, false), Status::Stopped);
        assert_eq!(status(false, false, true), Status::Stopped);
    }

    #[test]
    fn state_document_reads_as_the_specs_state() {
        for (st, pid) in [(Status::Created, Some(42)), (Status::Stopped, None)] {
            let json = serde_json::to_string(&oci_state(&rec(), st)).unwrap();
            let parsed: oci_spec::runtime::State = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed.id(), "c1");
            assert_eq!(*parsed.pid(), pid);
            assert_eq!(parsed.bundle(), Path::new("/b"));
            assert_eq!(parsed.version(), OCI_VERSION);
            assert_eq!(parsed.annotations().as_ref().unwrap()["k"], "v");
            assert_eq!(parsed.status().to_string(), st.to_string());
        }
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert!(check_id("abc-1_2.3").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cgroups_path_splits_into_parent_and_name() {
        let n = |p: Option<&str>| cgroup_names(p.map(Path::new), "id");
        assert_eq!(
            n(Some("/libpod_parent/libpod-abc")),
            ("libpod_parent".into(), "libpod-abc".into())
        );
        assert_eq!(n(Some("a/b/c")), ("a/b".into(), "c".into()));
        assert_eq!(n(Some("/x")), ("minirt-oci".into(), "x".into()));
        assert_eq!(n(None), ("minirt-oci".into(), "id".into()));
    }

    #[test]
    fn records_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &rec()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), rec());
    }
}

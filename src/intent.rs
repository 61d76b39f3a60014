//! Write-ahead intents: before a command makes or removes something the
//! store's transaction cannot take back (a bridge, a veth, firewall rules, a
//! layer dir), it records what in `<run-root>/intents/` and holds an flock
//! on that file while it works. A command that dies (SIGKILL, OOM, power cut
//! of the process) leaves the file with no lock on it; the next command
//! claims it by taking the lock and heals: it rolls a creation back when
//! its row was never committed, and rolls a removal forward when its row is
//! still there.
//!
//! The flock is the liveness test: the kernel drops it with the process, so
//! there is no pid to be reused and no start time to compare, and two
//! commands healing at once never claim the same intent.

use crate::{util, Instance};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a command is about to do, with what undoing or finishing it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Intent {
    /// `network create`: bridge and rules of a network whose row is in
    /// the same (uncommitted) transaction.
    NetworkCreate {
        id: String,
        name: String,
        /// The network's driver (older records, from before macvlan: bridge).
        #[serde(default = "bridge_driver")]
        driver: String,
        /// The network's host-side device (network::driver).
        bridge: String,
        subnet: String,
        gateway: String,
        internal: bool,
    },
    /// `network rm` of the network with this id.
    NetworkRemove { id: String },
    /// `network connect`: a veth whose endpoint row is uncommitted.
    Connect { host_veth: String },
    /// `network disconnect` of a container from a network (ids).
    Disconnect {
        container_id: String,
        network_id: String,
    },
    /// `rm` of a container (id).
    ContainerRemove { id: String },
    /// A layer dir renamed into the layer store before its row is committed.
    Layer { digest: String },
}

impl Intent {
    fn kind(&self) -> &'static str {
        match self {
            Intent::NetworkCreate { .. } => "network-create",
            Intent::NetworkRemove { .. } => "network-rm",
            Intent::Connect { .. } => "connect",
            Intent::Disconnect { .. } => "disconnect",
            Intent::ContainerRemove { .. } => "rm",
            Intent::Layer { .. } => "layer",
        }
    }
}

fn bridge_driver() -> String {
    "bridge".into()
}

/// The journal directory of an instance.
pub fn dir(inst: &Instance) -> PathBuf {
    inst.run_root.join("intents")
}

/// An intent this process holds: the file goes (then the lock) on drop,
/// whether the work succeeded or its undo ran.
pub struct Held {
    path: PathBuf,
    keep: bool,
    _lock: Flock<File>,
}

impl Held {
    /// Leaves the file for a later command (the healing failed; retry then).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn lock_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// Records `intent` and holds it until the returned guard drops. The file
/// is written under a dot name and renamed, so a reader never sees it half
/// written; the lock is taken before the rename, so it is never seen unlocked
/// while its owner lives.
pub(crate) fn begin(inst: &Instance, intent: &Intent) -> io::Result<Held> {
    let dir = dir(inst);
    fs::create_dir_all(&dir)?;
    let name = format!("{}-{}.json", intent.kind(), &util::new_id()[..16]);
    let tmp = dir.join(format!(".{name}"));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| lock_err(e))?;
    let body = serde_json::to_vec(intent).map_err(io::Error::other)?;
    // No fsync: run-root is volatile, and a machine crash takes the devices
    // an intent names with it.
    let written = lock.write_all(&body).and_then(|_| {
        let path = dir.join(&name);
        fs::rename(&tmp, &path).map(|_| path)
    });
    match written {
        Ok(path) => Ok(Held {
            path,
            keep: false,
            _lock: lock,
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// An intent whose owner died, claimed by this process (its lock held).
pub(crate) struct Orphan {
    pub intent: Intent,
    pub held: Held,
}

/// A dot file older than this belongs to a `begin` that died before its
/// rename: nothing was done under it yet.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// Claims every intent whose owner is gone. Cheap when there is none: one
/// read of a (usually empty or missing) directory.
pub(crate) fn orphans(inst: &Instance) -> Vec<Orphan> {
    let dir = dir(inst);
    let Ok(rd) = fs::read_dir(&dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') {
            remove_stale_temp(&path);
            continue;
        }
        if let Some(o) = claim(&path) {
            out.push(o);
        }
    }
    out
}

fn remove_stale_temp(path: &Path) {
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_TEMP);
    if old {
        let _ = fs::remove_file(path);
    }
}

fn claim(path: &Path) -> Option<Orphan> {
    let f = OpenOptions::new().read(true).write(true).open(path).ok()?;
    // Held: its owner lives (or another command is healing it right now).
    let mut lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).ok()?;
    // A healer that finished between our open and our lock unlinked it.
    let same = match (lock.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    if !same {
        return None;
    }
    let mut body = String::new();
    let held = |lock| Held {
        path: path.to_path_buf(),
        keep: false,
        _lock: lock,
    };
    if lock.read_to_string(&mut body).is_err() {
        return None;
    }
    match serde_json::from_str::<Intent>(&body) {
        Ok(intent) => Some(Orphan {
            intent,
            held: held(lock),
        }),
        Err(_) => {
            // Not ours to understand (a newer minirt's kind): leave it.
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> (tempfile::TempDir, Instance) {
        let d = tempfile::tempdir().unwrap();
        let i = Instance::new(&d.path().join("root"), &d.path().join("run")).unwrap();
        (d, i)
    }

    fn files(i: &Instance) -> Vec<String> {
        crate::util::dir_names(&dir(i))
    }

    #[test]
    fn a_held_intent_is_not_an_orphan_and_goes_with_its_guard() {
        let (_d, i) = inst();
        assert!(orphans(&i).is_empty());
        let held = begin(&i, &Intent::NetworkRemove { id: "n1".into() }).unwrap();
        assert_eq!(files(&i).len(), 1);
        assert!(files(&i)[0].starts_with("network-rm-"));
        // Another open file description: the lock holds it off, as it holds
        // off another process.
        assert!(orphans(&i).is_empty());
        drop(held);
        assert!(files(&i).is_empty());
    }

    #[test]
    fn an_unlocked_intent_is_claimed_once_and_removed_when_done() {
        let (_d, i) = inst();
        let intent = Intent::Connect {
            host_veth: "mrv0123".into(),
        };
        // A dead owner: the file stays, the lock goes.
        begin(&i, &intent).unwrap().keep();
        let mut got = orphans(&i);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].intent, intent);
        // Claimed: a second healer (another description) does not get it.
        assert!(orphans(&i).is_empty());
        let o = got.pop().unwrap();
        drop(o.held);
        assert!(files(&i).is_empty());
        assert!(orphans(&i).is_empty());
    }

    #[test]
    fn a_failed_heal_keeps_the_intent_for_the_next_command() {
        let (_d, i) = inst();
        begin(&i, &Intent::ContainerRemove { id: "c".into() })
            .unwrap()
            .keep();
        let o = orphans(&i).pop().unwrap();
        o.held.keep();
        assert_eq!(orphans(&i).len(), 1);
    }

    #[test]
    fn fresh_temp_files_stay_and_unknown_kinds_are_left_alone() {
        let (_d, i) = inst();
        fs::create_dir_all(dir(&i)).unwrap();
        fs::write(dir(&i).join(".rm-x.json"), b"{").unwrap();
        fs::write(dir(&i).join("future-x.json"), br#"{"kind":"future"}"#).unwrap();
        assert!(orphans(&i).is_empty());
        assert_eq!(files(&i), vec![".rm-x.json", "future-x.json"]);
    }
}

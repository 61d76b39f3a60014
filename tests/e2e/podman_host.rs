//! Debian's Podman run privately for the tests that compare with it or
//! hand it what minirt made: its own storage (--root/--runroot/--tmpdir),
//! its own containers.conf (CONTAINERS_CONF: cgroupfs, file events, runc,
//! netavark with a private config dir), in the test's network namespace,
//! one at a time (`podman_serial`), removed again on drop.

use crate::common::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Host paths Podman creates whatever its --root says; removed on drop when
/// this test created them.
const PODMAN_HOST_PATHS: &[&str] = &["/run/containers", "/var/lib/containers"];

pub struct Podman<'a> {
    host: &'a TestHost,
    dir: PathBuf,
    conf: PathBuf,
    preexisting: Vec<PathBuf>,
    /// Last: released after the cleanup in Drop.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl<'a> Podman<'a> {
    /// None (the caller skips its Podman part with a note) without podman.
    pub fn try_new(host: &'a TestHost) -> Option<Podman<'a>> {
        if cmd("sh", &["-c", "command -v podman"]).stdout.is_empty() {
            eprintln!("podman not installed: Podman part skipped (CI installs it)");
            return None;
        }
        Some(Podman::new(host))
    }

    pub fn new(host: &'a TestHost) -> Podman<'a> {
        let serial = podman_serial();
        let dir = host.root.parent().unwrap().join("podman");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\nruntime = \"runc\"\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{d}/net\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut preexisting: Vec<PathBuf> = PODMAN_HOST_PATHS
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        preexisting.extend(libpod_parents());
        Podman {
            host,
            dir,
            conf,
            preexisting,
            _serial: serial,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.netns_path()))
            .arg("--")
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .arg("--storage-driver")
            .arg("overlay")
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

fn libpod_parents() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("libpod_parent"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        for args in [
            &["rm", "-af", "-t", "0"][..],
            &["network", "rm", "-f", "compat"],
            &["rmi", "-af"],
        ] {
            let _ = self.run(args);
        }
        // Storage may hold overlay mounts until podman let go of them.
        for m in mounts_under(&self.dir) {
            let _ = cmd("umount", &["-l", &m]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in PODMAN_HOST_PATHS {
            let p = PathBuf::from(p);
            if !self.preexisting.contains(&p) {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
        for d in libpod_parents() {
            if self.preexisting.contains(&d) {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                for sub in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(sub.path());
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

//! The cgroup code against the real kernel (tests run as root): limits,
//! OOM, kill, removal and the cgroup2 device filter, each in a scratch cgroup
//! that its `Drop` removes. `scripts/vm-test` runs them again on a
//! cgroup-v2-only kernel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::cgroup::{wait_until, Cgroup, SETTLE_TIMEOUT};
use super::layout::{Layout, Mode};
use super::remove::remove_parent_on;
use super::{limits, v2_devices, Resources, Result};

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const BUSYBOX: &str = "/bin/busybox";

/// Orphans of killed shells must be reaped by us (pid 1 here does not reap).
fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    });
}

fn unique_parent(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "minirt-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Owns everything a test made: kills and reaps its processes, removes
/// the cgroup and its parent, even when the test panics.
struct Scratch {
    layout: Layout,
    parent: String,
    cg: Option<Cgroup>,
    children: Vec<Child>,
    seen: BTreeSet<i32>,
}

impl Scratch {
    fn new(layout: Layout, tag: &str) -> Scratch {
        become_subreaper();
        Scratch {
            layout,
            parent: unique_parent(tag),
            cg: None,
            children: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    fn create(&mut self, res: &Resources) -> Result<&Cgroup> {
        let cg = Cgroup::create_on(&self.layout, &self.parent, "c1", res)?;
        Ok(self.cg.insert(cg))
    }

    fn cg(&self) -> &Cgroup {
        self.cg.as_ref().expect("cgroup created")
    }

    /// A busybox shell that waits for one line on stdin before running `script`.
    fn spawn_held(&mut self, script: &str) -> usize {
        let child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn busybox");
        self.children.push(child);
        self.children.len() - 1
    }

    fn release(&mut self, i: usize) {
        let stdin = self.children[i].stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("release child");
    }

    /// A held shell of `script` put into the cgroup, then let go: its index
    /// and pid.
    fn start_inside(&mut self, script: &str) -> (usize, i32) {
        let i = self.spawn_held(script);
        let pid = self.children[i].id() as i32;
        self.cg().add_task(pid).unwrap();
        self.release(i);
        (i, pid)
    }

    /// The first line child `i` writes on stdout (or stderr).
    fn first_line(&mut self, i: usize, stderr: bool) -> String {
        let mut line = String::new();
        let c = &mut self.children[i];
        if stderr {
            BufReader::new(c.stderr.take().expect("stderr")).read_line(&mut line)
        } else {
            BufReader::new(c.stdout.take().expect("stdout")).read_line(&mut line)
        }
        .unwrap();
        line
    }

    fn note_procs(&mut self) -> Vec<i32> {
        let p = self.cg().procs();
        self.seen.extend(p.iter().copied());
        p
    }

    /// Everything under the test's parent, in any hierarchy.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mounts = self.layout.v1.iter().map(|h| &h.mount_point);
        mounts
            .chain(self.layout.unified.iter())
            .map(|m| m.join(&self.parent))
            .filter(|p| p.exists())
            .collect()
    }

    fn reap_seen(&mut self) {
        let pids: Vec<i32> = self.seen.iter().copied().collect();
        wait_until(SETTLE_TIMEOUT, || {
            pids.iter().all(|&p| {
                use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                match waitpid(Pid::from_raw(p), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => false,
                    Ok(_) => true,
                    Err(_) => !Path::new(&format!("/proc/{p}")).exists(),
                }
            })
        });
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(cg) = self.cg.take() {
            self.seen.extend(cg.procs());
            let _ = cg.kill_all(Signal::SIGKILL);
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            self.reap_seen();
            let _ = cg.remove();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = remove_parent_on(&self.layout, &self.parent);
    }
}

fn host() -> Layout {
    Layout::detect().expect("cgroup layout of this host")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn dir_with<'a>(cg: &'a Cgroup, controller: &str) -> &'a Path {
    let d = cg.dirs.iter().find(|d| d.has(controller));
    &d.unwrap_or_else(|| panic!("no {controller} dir")).path
}

#[test]
fn create_writes_limits_and_remove_leaves_nothing() {
    let mut s = Scratch::new(host(), "limits");
    let res = Resources {
        memory: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(20),
        ..Default::default()
    };
    s.create(&res).unwrap();
    let cg = s.cg();
    assert!(!cg.dirs.is_empty());
    assert!(cg.dirs.iter().all(|d| d.path.is_dir()));
    assert_eq!(cg.procs_files().len(), cg.dirs.len());
    if s.layout.mode == Mode::Hybrid {
        assert!(cg.dirs.iter().any(|d| d.v2), "hybrid: cgroup2 dir made too");
    }
    if s.layout.mode == Mode::Unified {
        let d = &cg.dirs[0].path;
        assert_eq!(read(d, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(d, "cpu.max"), "50000 100000");
        assert_eq!(read(d, "pids.max"), "20");
    } else {
        let mem = dir_with(cg, "memory");
        assert_eq!(
            read(mem, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(mem, "memory.memsw.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
        }
        let cpu = dir_with(cg, "cpu");
        assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(dir_with(cg, "pids"), "pids.max"), "20");
        let cpuset = dir_with(cg, "cpuset");
        let mount = s.layout.v1_mount("cpuset").unwrap();
        assert_eq!(read(cpuset, "cpuset.cpus"), read(mount, "cpuset.cpus"));
        assert_eq!(read(cpuset, "cpuset.mems"), read(mount, "cpuset.mems"));
        // The parent this create made hands its cpus and mems to the next
        // container at mkdir (the kernel copies the flag into each child).
        assert_eq!(read(cpuset.parent().unwrap(), "cgroup.clone_children"), "1");
        let devices = read(dir_with(cg, "devices"), "devices.list");
        assert!(devices.lines().any(|l| l == "c 1:3 rwm"), "{devices}");
        assert!(!devices.contains("a *:*"), "{devices}");
    }
    // open() finds the same directories; the public calls work as the run path uses them.
    let opened = Cgroup::open(&s.parent, "c1");
    assert_eq!(opened.paths(), cg.paths());
    assert_eq!(opened.name(), format!("{}/c1", s.parent));

    opened.remove().unwrap();
    assert!(cg.dirs.iter().all(|d| !d.path.exists()));
    cg.remove().unwrap(); // already gone is fine
    Cgroup::remove_parent_if_empty(&s.parent).unwrap();
    assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn failed_create_leaves_nothing_and_existing_cgroup_is_not_reused() {
    let mut s = Scratch::new(host(), "rollback");
    // pids.max refuses more than the kernel's PID_MAX_LIMIT: fails after every mkdir.
    let bad = Resources {
        memory: Some(64 << 20),
        pids_limit: Some(1 << 40),
        ..Default::default()
    };
    let e = s.create(&bad).unwrap_err().to_string();
    assert!(e.contains("process limit"), "{e}");
    assert!(!e.contains('\n'));
    assert_eq!(s.leftovers(), Vec::<PathBuf>::new());

    s.create(&Resources::default()).unwrap();
    let again = Cgroup::create_on(&s.layout, &s.parent, "c1", &Resources::default());
    let e = again.unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert!(
        s.cg().dirs.iter().all(|d| d.path.is_dir()),
        "first one intact"
    );
}

#[test]
fn memory_hog_is_oom_killed() {
    let mut s = Scratch::new(host(), "oom");
    s.create(&Resources {
        memory: Some(16 << 20),
        ..Default::default()
    })
    .unwrap();
    let i = s.spawn_held(&format!(
        "exec {BUSYBOX} dd if=/dev/zero of=/dev/null bs=64M count=1"
    ));
    let pid = s.children[i].id() as i32;
    s.cg().add_task(pid).unwrap();
    assert_eq!(s.note_procs(), vec![pid]);
    assert!(!s.cg().oom_killed());
    s.release(i);
    let status = s.children[i].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(s.cg().oom_killed());
    assert!(s.cg().procs().is_empty());
}

#[test]
fn pids_limit_stops_forks_and_kill_all_empties_the_cgroup() {
    let mut s = Scratch::new(host(), "pids");
    s.create(&Resources {
        pids_limit: Some(10),
        ..Default::default()
    })
    .unwrap();
    // busybox sh gives up on the first failed fork, so it spawns sleepers
    // until the limit bites and then exits, leaving them behind.
    let (i, pid) = s.start_inside(&format!(
        "i=0; while [ $i -lt 30 ]; do {BUSYBOX} sleep 60 & i=$((i+1)); done; echo all 30 started"
    ));
    let line = s.first_line(i, true);
    assert!(line.contains("can't fork"), "{line:?}");
    let status = s.children[i].wait().unwrap();
    assert!(!status.success(), "{status:?}");
    let procs = s.note_procs();
    assert!(!procs.contains(&pid));
    // The shell held one of the 10 slots while it forked the sleepers.
    assert_eq!(procs.len(), 9, "{procs:?}");
    if s.layout.mode != Mode::Unified {
        let events = read(dir_with(s.cg(), "pids"), "pids.events");
        assert!(
            limits::flat_keyed(&events, "max").unwrap_or(0) > 0,
            "{events}"
        );
    }

    // SIGTERM goes through the freezer; every sleeper and the shell die.
    s.cg().kill_all(Signal::SIGTERM).unwrap();
    s.reap_seen();
    assert!(wait_until(SETTLE_TIMEOUT, || s.cg().procs().is_empty()));
    s.cg().remove().unwrap();
    remove_parent_on(&s.layout, &s.parent).unwrap();
    assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn sigkill_reaches_every_process_and_remove_waits_for_exits() {
    let mut s = Scratch::new(host(), "kill");
    s.create(&Resources::default()).unwrap();
    let (i, _) = s.start_inside(&format!(
        "for i in 1 2 3; do {BUSYBOX} sleep 60 & done; echo spawned; wait"
    ));
    s.first_line(i, false); // the shell has started its children
    assert_eq!(s.note_procs().len(), 4);
    s.cg().kill_all(Signal::SIGKILL).unwrap();
    // No wait for the exits here: remove() polls until the kernel lets go.
    s.cg().remove().unwrap();
    let status = s.children[i].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(s.cg().dirs.iter().all(|d| !d.path.exists()));
}

#[test]
fn remove_of_a_busy_cgroup_fails_after_a_bounded_wait() {
    let mut s = Scratch::new(host(), "busy");
    s.create(&Resources::default()).unwrap();
    let i = s.spawn_held("exit 0");
    s.cg().add_task(s.children[i].id() as i32).unwrap();
    s.note_procs();
    let t = Instant::now();
    let e = s.cg().remove().unwrap_err().to_string();
    assert!(t.elapsed() < SETTLE_TIMEOUT + Duration::from_secs(2));
    assert!(
        t.elapsed() >= SETTLE_TIMEOUT,
        "it waited for the tasks to leave"
    );
    assert!(e.contains("processes still inside"), "{e}");
    // The parent is still in use: it stays, without an error.
    remove_parent_on(&s.layout, &s.parent).unwrap();
    assert!(!s.leftovers().is_empty());
}

/// A unified layout: the host's own on a cgroup2-only host (the VM of
/// scripts/vm-test), else this host's cgroup2 mount taken as unified.
fn unified_layout() -> Option<Layout> {
    let h = host();
    if h.mode == Mode::Unified {
        return Some(h);
    }
    Some(Layout {
        mode: Mode::Unified,
        v1: vec![],
        unified: Some(h.unified?),
    })
}

/// Runs `script` in a busybox shell inside the scratch cgroup; its output.
fn run_inside(s: &mut Scratch, script: &str) -> (bool, String) {
    let (i, _) = s.start_inside(&format!("{script} 2>&1"));
    let mut out = String::new();
    let mut stdout = s.children[i].stdout.take().expect("stdout");
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    (s.children[i].wait().unwrap().success(), out)
}

#[test]
fn cgroup2_device_filter_refuses_disks_and_goes_with_the_cgroup() {
    let Some(layout) = unified_layout() else {
        panic!("this test needs a cgroup2 mount");
    };
    let mut s = Scratch::new(layout, "dev");
    s.create(&Resources::default()).unwrap();
    let dir = s.cg().v2_dir().unwrap().to_path_buf();
    let ids = v2_devices::attached_ids(&dir).unwrap();
    assert_eq!(ids.len(), 1, "one device program on {}", dir.display());
    let nodes = tempfile::tempdir().unwrap();
    let n = nodes.path().display();
    // mknod of any device is allowed (Docker's `b *:* m`), opening a disk is not.
    let (ok, out) = run_inside(
        &mut s,
        &format!("{BUSYBOX} mknod {n}/disk b 8 0 && {BUSYBOX} head -c1 {n}/disk"),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(nodes.path().join("disk").exists(), "mknod itself worked");
    let (ok, out) = run_inside(
        &mut s,
        &format!("{BUSYBOX} mknod {n}/null c 1 3 && {BUSYBOX} head -c1 {n}/null && echo read-ok"),
    );
    assert!(ok && out.contains("read-ok"), "{out}");
    // The same open outside the cgroup is not refused with EPERM: the filter did it.
    let outside = Command::new(BUSYBOX)
        .args(["head", "-c1", &format!("{n}/disk")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&outside.stderr);
    assert!(!err.contains("Operation not permitted"), "{err}");

    s.reap_seen();
    s.cg().remove().unwrap();
    s.cg = None;
    // The kernel frees the program once the directory is gone.
    assert!(
        wait_until(Duration::from_secs(20), || {
            !v2_devices::program_exists(ids[0]).unwrap()
        }),
        "program {} still loaded after the cgroup was removed",
        ids[0]
    );

    // A privileged container gets no filter at all.
    s.create(&Resources {
        all_devices: true,
        ..Default::default()
    })
    .unwrap();
    let dir = s.cg().v2_dir().unwrap().to_path_buf();
    assert_eq!(v2_devices::attached_ids(&dir).unwrap(), Vec::<u32>::new());
}

/// The cgroup2 code path, on this host's cgroup2 mount taken as unified.
#[test]
fn cgroup2_mount_as_unified_layout() {
    let Some(mount) = host().unified else {
        return; // no cgroup2 mount at all: nothing to drive
    };
    let layout = Layout {
        mode: Mode::Unified,
        v1: vec![],
        unified: Some(mount.clone()),
    };
    let offered = read(&mount, "cgroup.controllers");
    let mut s = Scratch::new(layout, "v2");
    let limited = Resources {
        memory: Some(32 << 20),
        pids_limit: Some(50),
        ..Default::default()
    };
    if offered.split_whitespace().any(|c| c == "memory") {
        s.create(&limited).unwrap();
        assert_eq!(
            read(&s.cg().dirs[0].path, "memory.max"),
            (32u64 << 20).to_string()
        );
        s.cg().remove().unwrap();
        s.cg = None;
    } else {
        let e = s.create(&limited).unwrap_err().to_string();
        assert!(e.contains("no memory cgroup controller"), "{e}");
        assert_eq!(s.leftovers(), Vec::<PathBuf>::new(), "checked before mkdir");
    }

    s.create(&Resources::default()).unwrap();
    let (i, _) = s.start_inside(&format!("{BUSYBOX} sleep 60 & echo spawned; wait"));
    s.first_line(i, false); // the shell has started its child
    assert_eq!(s.note_procs().len(), 2);
    assert!(!s.cg().oom_killed());

    // SIGTERM: frozen through cgroup.freeze, signalled, thawed.
    s.cg().kill_all(Signal::SIGTERM).unwrap();
    let status = s.children[i].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    s.reap_seen();
    assert!(wait_until(SETTLE_TIMEOUT, || s.cg().procs().is_empty()));
    assert_eq!(
        read(&s.cg().dirs[0].path, "cgroup.freeze"),
        "0",
        "thawed again"
    );

    // SIGKILL through cgroup.kill.
    let j = s.spawn_held("exit 0");
    let pid = s.children[j].id() as i32;
    s.cg().add_task(pid).unwrap();
    s.cg().kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(s.children[j].wait().unwrap().signal(), Some(libc::SIGKILL));
    s.cg().remove().unwrap();
    remove_parent_on(&s.layout, &s.parent).unwrap();
    assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
}

//! The test host: a private network namespace plus private minirt roots.
//! minirt runs inside the namespace through `nsenter --net` (only the network
//! namespace changes, so mounts stay visible to the leak checks).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const BIN: &str = env!("CARGO_BIN_EXE_minirt");

/// Held by each test that drives Podman: Podman keeps host-wide state
/// beside its private roots (/run/containers, libpod's locks, conmon's
/// attach sockets), and two tests driving it at once disturbed each other
/// (an `-it` run lost its output). Poisoning by a failed test is ignored.
pub fn podman_serial() -> std::sync::MutexGuard<'static, ()> {
    static PODMAN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PODMAN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a host command, returns its output (never panics on exit status).
pub fn cmd(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts exactly one non-empty line on stderr and returns it.
pub fn one_line(err: &str) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err:?}");
    lines[0].to_string()
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Entries of the layer store (sorted).
pub fn layer_entries(h: &TestHost) -> Vec<String> {
    dir_entries(&h.root.join("layers"))
}

/// Device names in the test host's netns, sorted, without `lo`.
pub fn links(h: &TestHost) -> Vec<String> {
    let o = cmd("ip", &["-n", &h.ns, "-o", "link", "show"]);
    assert!(o.status.success(), "ip link: {}", stderr(&o));
    let mut v: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect();
    v.sort();
    v
}

/// The name of the test host's nftables table (minirt's per-instance table).
pub fn nft_table(h: &TestHost) -> String {
    format!("minirt_{}", h.cgroup_parent().trim_start_matches("minirt-"))
}

/// Names in directory `p` (sorted; none when it does not exist).
pub fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A process a test started; killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Another network namespace joined to the test host by a veth: a LAN
/// client or attacker, an upstream server. The host end is `v<role>` with
/// `host_addr`, the peer's is `eth0` with `addr`. Deleted on drop.
pub struct Peer {
    pub ns: String,
}

impl Peer {
    /// A peer with its loopback up.
    pub fn new(h: &TestHost, role: &str, host_addr: &str, addr: &str) -> Peer {
        let p = Peer::joined(h, role, host_addr, addr);
        p.ip(&["link", "set", "lo", "up"]);
        p
    }

    /// A neighbour set up like an attacker on the LAN: its own loopback is
    /// down, `routes` (127.0.0.1, a container subnet) go to the host, and it
    /// accepts replies from a loopback source.
    pub fn neighbour(
        h: &TestHost,
        role: &str,
        host_addr: &str,
        addr: &str,
        routes: &[&str],
    ) -> Peer {
        let p = Peer::joined(h, role, host_addr, addr);
        let host_ip = host_addr.split('/').next().unwrap_or(host_addr);
        for r in routes {
            p.ip(&["route", "add", r, "via", host_ip, "dev", "eth0"]);
        }
        // Replies to 127.0.0.1 come from a loopback source (only then: it
        // also changes the namespace's source address choice).
        let keys: &[&str] = if routes.iter().any(|r| r.starts_with("127.")) {
            &["all", "eth0"]
        } else {
            &[]
        };
        for key in keys {
            let o = p.run(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{key}.route_localnet=1")],
            );
            assert!(o.status.success(), "sysctl: {}", stderr(&o));
        }
        p
    }

    fn joined(h: &TestHost, role: &str, host_addr: &str, addr: &str) -> Peer {
        let ns = format!("{}-{role}", h.ns);
        let _ = cmd("ip", &["netns", "del", &ns]);
        let o = cmd("ip", &["netns", "add", &ns]);
        assert!(o.status.success(), "netns add: {}", stderr(&o));
        let p = Peer { ns };
        let host_if = format!("v{role}");
        let run = |args: &[&str]| {
            let o = cmd("ip", args);
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        run(&[
            "link", "add", &host_if, "netns", &h.ns, "type", "veth", "peer", "name", "eth0",
            "netns", &p.ns,
        ]);
        run(&["-n", &h.ns, "addr", "add", host_addr, "dev", &host_if]);
        run(&["-n", &h.ns, "link", "set", &host_if, "up"]);
        p.ip(&["addr", "add", addr, "dev", "eth0"]);
        p.ip(&["link", "set", "eth0", "up"]);
        p
    }

    /// `ip -n <peer> ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        let o = cmd("ip", &all);
        assert!(o.status.success(), "ip {all:?}: {}", stderr(&o));
    }

    /// Runs `program` inside the peer's namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }

    /// One bounded HTTP GET; the page, or None when nothing answered.
    pub fn get(&self, url: &str) -> Option<String> {
        let o = self.run("curl", &["-sf", "--max-time", "2", url]);
        o.status.success().then(|| stdout(&o))
    }

    /// Waits until `url` answers (the path works), returns the page.
    pub fn wait_get(&self, url: &str) -> String {
        let mut page = None;
        wait_for(
            &format!("{url} from {}", self.ns),
            Duration::from_secs(20),
            || {
                page = self.get(url);
                page.is_some()
            },
        );
        page.unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = cmd("ip", &["netns", "del", &self.ns]);
    }
}

fn sh_args<'a>(flags: &[&'a str], script: &'a str) -> Vec<&'a str> {
    let mut args = vec!["run", "--rm", "--net", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    args
}

pub struct TestHost {
    /// Network namespace name (`ip netns`), "minirt-t-<pid>-<n>".
    pub ns: String,
    pub root: PathBuf,
    pub run_root: PathBuf,
    dir: PathBuf,
}

impl TestHost {
    pub fn new() -> TestHost {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("minirt-t-{}-{}", std::process::id(), n);
        let dir = std::env::temp_dir().join(format!("minirt-e2e-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let o = cmd("ip", &["netns", "add", &ns]);
        assert!(o.status.success(), "ip netns add: {}", stderr(&o));
        let o = cmd("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        assert!(o.status.success(), "lo up: {}", stderr(&o));
        TestHost {
            root: dir.join("root"),
            run_root: dir.join("run"),
            ns,
            dir,
        }
    }

    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }

    /// A Command that runs minirt with this host's roots, inside its netns.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path()))
            .arg("--")
            .arg(BIN)
            .arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .args(args)
            .stdin(Stdio::null())
            // The DNS responder leaves with its last member, not 30 s later,
            // so tests see it go (dns::the_responder_lingers_for_the_next_member
            // covers the default).
            .env("MINIRT_DNS_LINGER", "0");
        c
    }

    /// Runs minirt, returns the output whatever the exit status.
    pub fn minirt(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run minirt")
    }

    /// Runs minirt, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.minirt(args);
        assert!(
            o.status.success(),
            "minirt {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs minirt, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.minirt(args);
        assert!(
            !o.status.success(),
            "minirt {args:?} should fail but succeeded: {}",
            stdout(&o)
        );
        (o.status.code().unwrap_or(-1), stderr(&o))
    }

    /// Runs a program inside the test host's network namespace.
    /// `run --rm --net none FLAGS busybox sh -c SCRIPT`: a one-off shell in a
    /// container without a network.
    pub fn run_sh(&self, flags: &[&str], script: &str) -> Output {
        self.minirt(&sh_args(flags, script))
    }

    /// `run_sh` that must succeed; its stdout.
    pub fn sh_ok(&self, flags: &[&str], script: &str) -> String {
        self.ok(&sh_args(flags, script))
    }

    pub fn in_ns(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }

    /// Mount points under this host's roots (for leak checks).
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(&self.dir)
    }

    /// The instance tag minirt derives from the root (same rule as instance.rs).
    pub fn cgroup_parent(&self) -> String {
        use sha2::{Digest, Sha256};
        let canon = std::fs::canonicalize(&self.root).unwrap_or(self.root.clone());
        let d = Sha256::digest(canon.as_os_str().as_encoded_bytes());
        format!("minirt-{}", hex::encode(&d[..4]))
    }

    /// Every cgroup directory this instance has under any v1 hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        let mut out = vec![];
        for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let Ok(rd) = std::fs::read_dir(base) else {
                continue;
            };
            for h in rd.flatten() {
                let p = h.path().join(&parent);
                if let Ok(children) = std::fs::read_dir(&p) {
                    for c in children.flatten() {
                        if c.path().is_dir() {
                            out.push(c.path());
                        }
                    }
                }
            }
        }
        out
    }
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // 1. Ask minirt itself to remove everything it made.
        if let Ok(o) = self.command(&["ps", "-aq"]).output() {
            let ids: Vec<String> = stdout(&o).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.command(&args).output();
            }
        }
        let _ = self.command(&["network", "prune", "-f"]).output();
        // The DNS responder leaves with the last container; should it not
        // have, kill it (only if the pid is still a responder of our root).
        if let Ok(pid) = std::fs::read_to_string(self.run_root.join("dns.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                let run_root =
                    std::fs::canonicalize(&self.run_root).unwrap_or(self.run_root.clone());
                if cmdline.contains("__dns") && cmdline.contains(&*run_root.to_string_lossy()) {
                    // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        // 2. Whatever is still there: kill processes in our cgroups (they are
        //    ours: the cgroup parent is derived from our private root).
        for cg in self.cgroups() {
            if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        for cg in self.cgroups() {
            for _ in 0..50 {
                if std::fs::remove_dir(&cg).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let parent = self.cgroup_parent();
        for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            if let Ok(rd) = std::fs::read_dir(base) {
                for h in rd.flatten() {
                    let _ = std::fs::remove_dir(h.path().join(&parent));
                }
            }
        }
        // 3. Unmount leftovers, deepest first, then delete files and the netns.
        let mut ms = self.mounts();
        ms.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ms {
            let _ = cmd("umount", &["-l", &m]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = cmd("ip", &["netns", "del", &self.ns]);
    }
}

/// A scratch directory of this test process, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("minirt-tmp-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles the C program `source` statically into a fresh directory (a
/// container can run it from a `-v` bind); the binary is `<dir>/<name>`.
pub fn build_static_c(name: &str, source: &str) -> TempDir {
    let dir = TempDir::new(name);
    let src = dir.0.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("C source");
    let out = dir.0.join(name);
    let o = cmd(
        "gcc",
        &[
            "-static",
            "-O1",
            "-o",
            out.to_str().expect("utf-8 path"),
            src.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        o.status.success(),
        "compiling {name} (gcc -static) failed: {}",
        stderr(&o)
    );
    dir
}

/// Writes `dir/name`, a shell script that runs minirt with the host's roots
/// inside its network namespace, and returns a PATH with `dir` first: how
/// the script tests run a user's unchanged `docker`/`minirt` commands.
pub fn minirt_shim(h: &TestHost, dir: &Path, name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let shim = dir.join(name);
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec nsenter --net={} -- {BIN} --root {} --run-root {} \"$@\"\n",
            h.netns_path(),
            h.root.display(),
            h.run_root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

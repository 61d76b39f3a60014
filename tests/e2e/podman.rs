//! The real Podman (Debian's 4.3, conmon, netavark) with minirt as its OCI
//! runtime: private storage and containers.conf, cgroupfs under the test
//! host's cgroup parent, inside the test host's network namespace.

use crate::common::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Podman {
    h: TestHost,
    dir: PathBuf,
    conf: PathBuf,
    /// Last: released after the cleanup in Drop.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Podman {
    /// None (the test is skipped with a note) when podman is not installed.
    fn new() -> Option<Podman> {
        if cmd("sh", &["-c", "command -v podman"]).stdout.is_empty() {
            eprintln!("podman not installed: skipped (CI installs it, see .ci/run)");
            return None;
        }
        let serial = podman_serial();
        let h = TestHost::new();
        let dir = h.root.parent().unwrap().join("podman");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{}/net\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let p = Podman {
            h,
            dir,
            conf,
            _serial: serial,
        };
        let o = p.run(&[
            "load",
            "-i",
            concat!(env!("CARGO_MANIFEST_DIR"), "/images/busybox.tar"),
        ]);
        assert!(o.status.success(), "podman load: {}", stderr(&o));
        Some(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.h.netns_path()))
            .arg("--")
            .arg("podman")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--storage-driver")
            .arg("overlay")
            .arg("--runtime")
            .arg(BIN)
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed ({:?}):\n{}{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// `run` arguments that keep the container's cgroups under the test
    /// host's parent (so its leak checks see them).
    fn cgroup_parent(&self) -> String {
        format!("--cgroup-parent=/{}", self.h.cgroup_parent())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["network", "prune", "-f"]);
        let _ = self.run(&["rmi", "-af"]);
        let _ = cmd(
            "umount",
            &["-R", "-l", self.dir.join("root/overlay").to_str().unwrap()],
        );
    }
}

#[test]
fn run_rm_passes_the_exit_code_and_output_through() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    let out = p.ok(&["run", "--rm", &cg, "busybox", "echo", "hi from minirt"]);
    assert_eq!(out, "hi from minirt\n");
    let o = p.run(&["run", "--rm", &cg, "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = p.run(&["run", "--rm", &cg, "busybox", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(p.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn run_detached_exec_stop_rm() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    p.ok(&[
        "run", "-d", "--name", "web", &cg, "busybox", "sleep", "1000",
    ]);
    let ps = p.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    let out = p.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "cat /proc/1/cmdline; echo; hostname",
    ]);
    assert!(out.starts_with("sleep\x001000"), "{out:?}");
    let o = p.run(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    p.ok(&["stop", "-t", "1", "web"]);
    let st = p.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(st.starts_with("web Exited"), "{st}");
    p.ok(&["rm", "web"]);
    assert!(p.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn run_it_gets_a_terminal_through_the_console_socket() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    // `script` gives podman a pty of its own, as a user's terminal would.
    // The container prints only after a line typed on that terminal has
    // reached it (`read` must succeed): podman forwards input only once it
    // is attached, and output written before that can be lost (podman's
    // own tests of `run -it` work around the same race with a sleep).
    let inner: Vec<String> = p
        .command(&[
            "run",
            "-it",
            "--rm",
            &cg,
            "busybox",
            "sh",
            "-c",
            "read line && tty && echo tty-ok",
        ])
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let line = format!(
        "CONTAINERS_CONF={} nsenter {}",
        p.conf.display(),
        inner
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut script = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    {
        use std::io::Write;
        let mut typed = script.stdin.take().expect("script's stdin");
        typed.write_all(b"go\n").expect("type a line");
    }
    let o = script.wait_with_output().expect("script");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("/dev/pts/0") && out.contains("tty-ok"),
        "{out:?}"
    );
}

#[test]
fn run_network_joins_netavarks_namespace_and_memory_is_enforced() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    p.ok(&[
        "network",
        "create",
        "--disable-dns",
        "--subnet",
        "10.247.0.0/24",
        "mnet",
    ]);
    p.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        &cg,
        "--network",
        "mnet",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "echo served-by-minirt > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let ip = p.ok(&[
        "inspect",
        "srv",
        "--format",
        "{{.NetworkSettings.Networks.mnet.IPAddress}}",
    ]);
    let ip = ip.trim().to_string();
    assert!(ip.starts_with("10.247.0."), "{ip}");
    // minirt joined the namespace netavark wired: the bridge reaches it.
    let url = format!("http://{ip}/");
    let mut body = String::new();
    let got = eventually(Duration::from_secs(10), || {
        body = stdout(&p.h.in_ns("wget", &["-T", "2", "-qO-", &url]));
        body.contains("served-by-minirt")
    });
    assert!(
        got,
        "the container on netavark's bridge did not answer: {body:?}"
    );
    let limit = p.ok(&[
        "exec",
        "srv",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // Enforced: a process that needs more is OOM-killed (137).
    let o = p.run(&[
        "run",
        "--rm",
        &cg,
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}{}", stdout(&o), stderr(&o));
    p.ok(&["rm", "-f", "-t", "0", "srv"]);
}

/// netavark's DNAT of a published port to a container minirt runs. Seen
/// failing for a few minutes while another worktree's Podman tests ran on
/// this machine (the container answered on its own address meanwhile);
/// passing again right after, alone and beside the rest.
#[test]
fn run_network_with_a_published_port() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    p.ok(&[
        "network",
        "create",
        "--disable-dns",
        "--subnet",
        "10.248.0.0/24",
        "pnet",
    ]);
    p.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        &cg,
        "--network",
        "pnet",
        "-p",
        "18348:80",
        "busybox",
        "sh",
        "-c",
        "echo served-by-minirt > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let mut body = String::new();
    let got = eventually(Duration::from_secs(10), || {
        body = stdout(&p.h.in_ns("wget", &["-T", "2", "-qO-", "http://10.248.0.1:18348/"]));
        body.contains("served-by-minirt")
    });
    assert!(got, "port map did not answer: {body:?}");
    p.ok(&["rm", "-f", "-t", "0", "srv"]);
}

#[test]
fn run_with_a_uid_map_runs_in_a_user_namespace() {
    let Some(p) = Podman::new() else { return };
    let cg = p.cgroup_parent();
    let out = p.ok(&[
        "run",
        "--rm",
        &cg,
        "--network",
        "none",
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u",
    ]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines, [vec!["0", "100000", "65536"], vec!["0"]], "{out}");
}

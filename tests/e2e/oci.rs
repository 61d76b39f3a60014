//! minirt as an OCI runtime, driven directly on bundles the way runc is
//! (conmon's and containerd's command lines): the create/start split, the
//! state document, kill/delete, exec, pid files, hooks, the spec's process
//! settings, joined namespaces, and every bad input the issue lists: one
//! line, exit 1, nothing left behind.

use crate::common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static CALLS: AtomicU32 = AtomicU32::new(0);

const BUSYBOX_TAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/images/busybox.tar");

/// A test host plus an OCI state root and a place for bundles.
pub struct OciHost {
    pub h: TestHost,
    pub state: PathBuf,
    pub work: PathBuf,
}

/// Unpacks the bundled busybox image (a docker-save archive) into `dir`.
pub fn unpack_busybox(dir: &Path) {
    let tmp = dir.with_extension("image");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let o = cmd("tar", &["-xf", BUSYBOX_TAR, "-C", tmp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(tmp.join("manifest.json")).unwrap()).unwrap();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let path = tmp.join(layer.as_str().unwrap());
        let o = cmd(
            "tar",
            &["-xf", path.to_str().unwrap(), "-C", dir.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

impl OciHost {
    pub fn new() -> OciHost {
        let h = TestHost::new();
        let base = h.root.parent().unwrap().to_path_buf();
        let state = base.join("oci-state");
        let work = base.join("oci-work");
        std::fs::create_dir_all(&work).unwrap();
        OciHost { h, state, work }
    }

    /// A bundle `name` running `args`; `edit` changes the config first.
    pub fn bundle(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.work.join(name);
        unpack_busybox(&dir.join("rootfs"));
        let mut cfg = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                    "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                    "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "ocitest",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                               {"type": "mount"}, {"type": "network"}],
                "cgroupsPath": format!("/{}/{}", self.h.cgroup_parent(), name),
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        });
        edit(&mut cfg);
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
        dir
    }

    /// A runc-style call, inside the host's netns, with this state root.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.h.netns_path()))
            .arg("--")
            .arg(BIN)
            .arg("--root")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs a call with its output in files: a created container's init
    /// keeps create's stdio open (as conmon wants), so pipes would not end.
    pub fn run(&self, args: &[&str]) -> Output {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        let (out, err) = (
            self.work.join(format!(".out{n}")),
            self.work.join(format!(".err{n}")),
        );
        let status = self
            .command(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("run minirt");
        Output {
            status,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "minirt {args:?} failed ({:?}):\n{}{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Asserts exit 1 with one error line; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "minirt {args:?} should fail with 1: {}{}",
            stdout(&o),
            stderr(&o)
        );
        one_line(&stderr(&o))
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Nothing of container `id` is left: state, cgroup, process.
    pub fn assert_gone(&self, id: &str, pid: Option<i32>) {
        assert!(!self.state.join(id).exists(), "state dir of {id} left");
        assert!(
            !self.h.cgroups().iter().any(|c| c.ends_with(id)),
            "cgroup of {id} left: {:?}",
            self.h.cgroups()
        );
        if let Some(p) = pid {
            wait_for("the init to go", Duration::from_secs(5), || !alive(p));
        }
    }
}

impl Drop for OciHost {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.state) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.run(&["delete", "--force", &id]);
            }
        }
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn create_start_state_kill_delete() {
    let o = OciHost::new();
    let b = o.bundle(
        "life",
        &["sh", "-c", "echo ran > /tmp/x; touch /ran; sleep 1000"],
        |_| {},
    );
    let pidfile = o.work.join("life.pid");
    o.ok(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        "life",
    ]);
    let pid = read_pid(&pidfile);
    assert!(alive(pid));
    // Created: the init waits; the user's process has not run.
    let st = o.state("life");
    let parsed: oci_spec::runtime::State = serde_json::from_value(st.clone()).unwrap();
    assert_eq!(parsed.id(), "life");
    assert_eq!(*parsed.pid(), Some(pid));
    assert_eq!(parsed.bundle(), b.canonicalize().unwrap().as_path());
    assert_eq!(st["status"], "created");
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."));
    assert!(!b.join("rootfs/ran").exists(), "ran before start");
    // Podman's `start` comes without any OCI flag: the id decides.
    o.ok(&["start", "life"]);
    wait_for("the process to run", Duration::from_secs(5), || {
        b.join("rootfs/ran").exists()
    });
    assert_eq!(o.status("life"), "running");
    // Its /tmp is the spec's tmpfs, not the bundle's.
    assert!(!b.join("rootfs/tmp/x").exists());
    let line = o.fails(&["start", "life"]);
    assert!(line.contains("running"), "{line}");
    let line = o.fails(&["delete", "life"]);
    assert!(
        line.contains("running") && line.contains("--force"),
        "{line}"
    );
    assert!(alive(pid), "a refused delete touched the container");
    o.ok(&["kill", "life", "KILL"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("life") == "stopped"
    });
    assert!(o.state("life").get("pid").is_none());
    o.ok(&["delete", "life"]);
    o.assert_gone("life", Some(pid));
    let line = o.fails(&["state", "life"]);
    assert!(line.contains("does not exist"), "{line}");
}

#[test]
fn delete_force_kills_a_created_container() {
    let o = OciHost::new();
    let b = o.bundle("forced", &["true"], |_| {});
    o.ok(&["create", "-b", b.to_str().unwrap(), "forced"]);
    let pid = o.state("forced")["pid"].as_i64().unwrap() as i32;
    assert!(o.fails(&["delete", "forced"]).contains("created"));
    o.ok(&["delete", "--force", "forced"]);
    o.assert_gone("forced", Some(pid));
}

#[test]
fn exit_status_and_output_reach_the_caller_stdio() {
    let o = OciHost::new();
    let b = o.bundle(
        "io",
        &["sh", "-c", "echo out-line; echo err-line >&2"],
        |_| {},
    );
    // The init inherits create's stdio (conmon's pipes).
    let out = o.work.join("out");
    let f = std::fs::File::create(&out).unwrap();
    let status = o
        .command(&["create", "-b", b.to_str().unwrap(), "io"])
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    assert!(status.success());
    o.ok(&["start", "io"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("io") == "stopped"
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("out-line") && text.contains("err-line"),
        "{text}"
    );
    o.ok(&["delete", "io"]);
    o.assert_gone("io", None);
}

#[test]
fn exec_runs_in_the_container_and_writes_its_pid_file() {
    let o = OciHost::new();
    let b = o.bundle("ex", &["sleep", "1000"], |_| {});
    o.ok(&["create", "-b", b.to_str().unwrap(), "ex"]);
    o.ok(&["start", "ex"]);
    let out = o.ok(&["exec", "ex", "sh", "-c", "hostname; cat /proc/1/cmdline"]);
    assert!(out.starts_with("ocitest\nsleep"), "{out:?}");
    let e = o.run(&["exec", "ex", "sh", "-c", "exit 7"]);
    assert_eq!(e.status.code(), Some(7));
    // readonlyPaths: /proc/sys is read-only even for root.
    let e = o.run(&["exec", "ex", "sh", "-c", "echo 1 > /proc/sys/kernel/shmmax"]);
    assert!(stderr(&e).contains("Read-only"), "{}", stderr(&e));
    // conmon's form: --process FILE --detach --pid-file.
    let process = o.work.join("process.json");
    std::fs::write(
        &process,
        json!({"args": ["sleep", "999"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "env": ["PATH=/bin"]})
        .to_string(),
    )
    .unwrap();
    let pidfile = o.work.join("exec.pid");
    o.ok(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "ex",
    ]);
    let pid = read_pid(&pidfile);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\0999\0");
    let ps: Vec<i32> = serde_json::from_str(&o.ok(&["ps", "--format", "json", "ex"])).unwrap();
    assert!(ps.contains(&pid), "{ps:?}");
    let line = o.fails(&["exec", "ex", "nosuchcmd"]);
    assert!(line.contains("executable file not found"), "{line}");
    o.ok(&["delete", "--force", "ex"]);
    o.assert_gone("ex", Some(pid));
}

#[test]
fn the_specs_process_settings_are_honoured() {
    let o = OciHost::new();
    let script = "id -u; id -G; umask; ulimit -n; cat /proc/sys/kernel/shmmax; \
                  grep CapEff /proc/self/status; ls /proc/bus | wc -l";
    let b = o.bundle("proc", &["sh", "-c", script], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "umask": 63,
                                      "additionalGids": [5, 7]});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
        c["process"]["capabilities"] = json!({"bounding": ["CAP_KILL"],
            "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]});
        c["linux"]["sysctl"] = json!({"kernel.shmmax": "123456789"});
        c["linux"]["maskedPaths"] = json!(["/proc/bus"]);
    });
    let out = o.work.join("out");
    let f = std::fs::File::create(&out).unwrap();
    assert!(o
        .command(&["create", "-b", b.to_str().unwrap(), "proc"])
        .stdout(f)
        .status()
        .unwrap()
        .success());
    o.ok(&["start", "proc"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("proc") == "stopped"
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000 5 7");
    assert_eq!(lines[2], "0077");
    assert_eq!(lines[3], "256");
    assert_eq!(lines[4], "123456789");
    // A non-root user keeps no capability (runc's rule without ambient).
    assert_eq!(lines[5], "CapEff:\t0000000000000000", "{text}");
    assert_eq!(lines[6].trim(), "0", "/proc/bus not masked: {text}");
    o.ok(&["delete", "proc"]);
}

#[test]
fn a_network_namespace_named_by_path_is_joined() {
    let o = OciHost::new();
    let ns = o.h.netns_path();
    let link = cmd(
        "ip",
        &[
            "-n",
            &o.h.ns,
            "link",
            "add",
            "ocidummy0",
            "type",
            "veth",
            "peer",
            "name",
            "ocidummy1",
        ],
    );
    assert!(link.status.success(), "{}", stderr(&link));
    let b = o.bundle("joined", &["cat", "/proc/net/dev"], |c| {
        c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
            {"type": "network", "path": ns}]);
    });
    let out = o.work.join("out");
    let f = std::fs::File::create(&out).unwrap();
    assert!(o
        .command(&["create", "-b", b.to_str().unwrap(), "joined"])
        .stdout(f)
        .status()
        .unwrap()
        .success());
    o.ok(&["start", "joined"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("joined") == "stopped"
    });
    assert!(std::fs::read_to_string(&out).unwrap().contains("ocidummy0"));
    o.ok(&["delete", "joined"]);
    // A path that is not a namespace: refused before anything is made.
    let b = o.bundle("notns", &["true"], |c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"},
            {"type": "network", "path": "/etc/hostname"}]);
    });
    let line = o.fails(&["create", "-b", b.to_str().unwrap(), "notns"]);
    assert!(line.contains("not a namespace"), "{line}");
    o.assert_gone("notns", None);
}

#[test]
fn hooks_get_the_state_and_a_failing_one_removes_the_container() {
    let o = OciHost::new();
    let log = o.work.join("hooks.log");
    let hook = |what: &str| {
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("echo {what}; cat; echo", what = what)],
               "env": ["A=1"]})
    };
    let record = |what: &str| {
        let mut h = hook(what);
        h["args"][2] = json!(format!("(echo {what}; cat; echo) >> {}", log.display()));
        h
    };
    let b = o.bundle("hooked", &["true"], |c| {
        c["hooks"] = json!({"createRuntime": [record("createRuntime")],
                            "poststart": [record("poststart")],
                            "poststop": [record("poststop")]});
    });
    o.ok(&["create", "-b", b.to_str().unwrap(), "hooked"]);
    o.ok(&["start", "hooked"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("hooked") == "stopped"
    });
    o.ok(&["delete", "hooked"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let kinds: Vec<&str> = text.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(kinds, ["createRuntime", "poststart", "poststop"], "{text}");
    let states: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(states[0]["status"], "creating");
    assert_eq!(states[0]["id"], "hooked");
    assert_eq!(states[2]["status"], "stopped");

    for (name, h) in [
        ("failhook", json!({"path": "/bin/false"})),
        (
            "slowhook",
            json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}),
        ),
    ] {
        let b = o.bundle(name, &["sleep", "100"], |c| {
            c["hooks"] = json!({"prestart": [h]});
        });
        let line = o.fails(&["create", "-b", b.to_str().unwrap(), name]);
        assert!(line.contains("prestart hook"), "{line}");
        o.assert_gone(name, None);
    }
}

#[test]
fn bad_inputs_are_one_line_exit_1_and_leave_nothing() {
    let o = OciHost::new();
    let missing = o.work.join("nope");
    let line = o.fails(&["create", "-b", missing.to_str().unwrap(), "a"]);
    assert!(line.contains("nope"), "{line}");

    let b = o.bundle("badjson", &["true"], |_| {});
    std::fs::write(b.join("config.json"), "{not json").unwrap();
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "badjson"])
        .contains("not valid JSON"));

    let b = o.bundle("badver", &["true"], |c| c["ociVersion"] = json!("0.9.0"));
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "badver"])
        .contains("unsupported ociVersion"));

    let b = o.bundle("noroot", &["true"], |c| {
        c["root"]["path"] = json!("missing")
    });
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "noroot"])
        .contains("rootfs"));

    // A command that is not there fails create itself, as with runc.
    let b = o.bundle("nocmd", &["nosuchcmd"], |_| {});
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "nocmd"])
        .contains("executable file not found"));

    let b = o.bundle("dup", &["sleep", "100"], |_| {});
    o.ok(&["create", "-b", b.to_str().unwrap(), "dup"]);
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "dup"])
        .contains("already exists"));
    assert_eq!(
        o.status("dup"),
        "created",
        "the failed duplicate hurt the first"
    );
    assert!(o.fails(&["kill", "dup", "NOPE"]).contains("unknown signal"));

    let b = o.bundle("nouts", &["true"], |c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}]);
    });
    assert!(o
        .fails(&["create", "-b", b.to_str().unwrap(), "nouts"])
        .contains("UTS namespace"));

    // A user namespace without mappings.
    let b = o.bundle("userns", &["true"], |c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "user"}]);
    });
    let e = o.fails(&["create", "-b", b.to_str().unwrap(), "userns"]);
    assert!(e.contains("needs linux.uidMappings"), "{e}");

    // --log-format json: the line is JSON, and lands in --log too.
    let logf = o.work.join("log.json");
    let out = o.run(&[
        "--log",
        logf.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "ghost",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&one_line(&stderr(&out))).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("ghost"));
    let logged: Value =
        serde_json::from_str(std::fs::read_to_string(&logf).unwrap().trim()).unwrap();
    assert_eq!(logged["msg"], v["msg"]);
    assert!(o.fails(&["--systemd-cgroup", "list"]).contains("systemd"));

    o.ok(&["delete", "--force", "dup"]);
    for id in [
        "a", "badjson", "badver", "noroot", "nocmd", "dup", "nouts", "userns",
    ] {
        o.assert_gone(id, None);
    }
    assert_eq!(std::fs::read_dir(&o.state).unwrap().count(), 0);
}

#[test]
fn pause_resume_update_list_features_spec() {
    let o = OciHost::new();
    let b = o.bundle("pz", &["sleep", "1000"], |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}});
    });
    o.ok(&["create", "-b", b.to_str().unwrap(), "pz"]);
    o.ok(&["start", "pz"]);
    o.ok(&["pause", "pz"]);
    assert_eq!(o.status("pz"), "paused");
    o.ok(&["resume", "pz"]);
    assert_eq!(o.status("pz"), "running");
    let mem =
        o.h.cgroups()
            .into_iter()
            .find(|c| c.ends_with("pz") && c.join("memory.limit_in_bytes").exists())
            .unwrap();
    let read = |f: &str| {
        std::fs::read_to_string(mem.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.limit_in_bytes"), (64u64 << 20).to_string());
    let res = o.work.join("res.json");
    std::fs::write(&res, json!({"memory": {"limit": 32 << 20}}).to_string()).unwrap();
    o.ok(&["update", "--resources", res.to_str().unwrap(), "pz"]);
    assert_eq!(read("memory.limit_in_bytes"), (32u64 << 20).to_string());
    let list: Vec<Value> = serde_json::from_str(&o.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "pz");
    let features: oci_spec::runtime::Features = serde_json::from_str(&o.ok(&["features"])).unwrap();
    assert!(features.oci_version_max().starts_with("1."));
    let dir = o.work.join("specdir");
    std::fs::create_dir_all(&dir).unwrap();
    o.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    assert!(o
        .fails(&["spec", "--bundle", dir.to_str().unwrap()])
        .contains("exists"));
    o.ok(&["delete", "--force", "pz"]);
    o.assert_gone("pz", None);
}

/// Runs bundle `b` as `id` with `extra` create flags to its end and returns
/// what it printed (the init keeps create's stdio).
fn run_to_end(o: &OciHost, id: &str, b: &Path, extra: &[&str]) -> String {
    let out = o.work.join(format!("{id}.out"));
    let f = std::fs::File::create(&out).unwrap();
    let mut args = vec!["create", "-b", b.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(id);
    let status = o
        .command(&args)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let started = o.run(&["start", id]);
    assert!(
        started.status.success(),
        "start: {}\ncontainer: {}",
        stderr(&started),
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    wait_for("stopped", Duration::from_secs(5), || {
        o.status(id) == "stopped"
    });
    o.ok(&["delete", id]);
    o.assert_gone(id, None);
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn no_pivot_and_mount_propagation_are_honoured() {
    let o = OciHost::new();
    let data = o.work.join("shared-data");
    std::fs::create_dir_all(&data).unwrap();
    let script = "cat /marker; ls /; grep -E ' /(shared|private) ' /proc/self/mountinfo";
    let b = o.bundle("nopivot", &["sh", "-c", script], |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for (dest, prop) in [("/shared", "rshared"), ("/private", "rprivate")] {
            mounts.push(json!({"destination": dest, "type": "bind",
                "source": data, "options": ["rbind", prop]}));
        }
    });
    std::fs::write(b.join("rootfs/marker"), "inside-the-rootfs\n").unwrap();
    let text = run_to_end(&o, "nopivot", &b, &["--no-pivot"]);
    assert!(text.contains("inside-the-rootfs"), "{text}");
    // `/` is the bundle's rootfs, not the bundle (whose config.json sits beside it).
    assert!(!text.contains("config.json"), "{text}");
    let line = |dest: &str| {
        text.lines()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("no {dest} in {text}"))
            .to_string()
    };
    assert!(line("/shared").contains(" shared:"), "{text}");
    assert!(!line("/private").contains(" shared:"), "{text}");
}

#[test]
fn a_user_namespace_maps_root_to_the_host_ids_of_the_spec() {
    use std::os::unix::fs::MetadataExt;
    const HOST_UID: u32 = 231_072;
    const HOST_GID: u32 = 231_073;
    let o = OciHost::new();
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /created";
    let b = o.bundle("userns", &["sh", "-c", script], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST_UID, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST_GID, "size": 65536}]);
    });
    // As with runc, the rootfs is the user's to prepare: owned by the host
    // ids the container's root maps to.
    let rootfs = b.join("rootfs");
    let o2 = cmd(
        "chown",
        &[
            "-R",
            &format!("{HOST_UID}:{HOST_GID}"),
            rootfs.to_str().unwrap(),
        ],
    );
    assert!(o2.status.success(), "{}", stderr(&o2));
    let text = run_to_end(&o, "userns", &b, &[]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", &HOST_UID.to_string(), "65536"], "{text}");
    assert_eq!(lines[1], ["0", &HOST_GID.to_string(), "65536"], "{text}");
    assert_eq!(lines[2], ["0"], "{text}");
    let meta = std::fs::metadata(rootfs.join("created")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HOST_UID, HOST_GID));

    // Mappings without a user namespace: refused, nothing left.
    let b = o.bundle("nouserns", &["true"], |c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST_UID, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST_GID, "size": 1}]);
    });
    let e = o.fails(&["create", "-b", b.to_str().unwrap(), "nouserns"]);
    assert!(e.contains("need a new user namespace"), "{e}");
    o.assert_gone("nouserns", None);
}

#[test]
fn each_hook_runs_at_its_time_and_where_the_spec_says() {
    let o = OciHost::new();
    let shared = o.work.join("hooklog");
    std::fs::create_dir_all(&shared).unwrap();
    let log = shared.join("log");
    let sh = |script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    let pid_of = r#"pid=$(grep -o '"pid":[0-9]*' | cut -d: -f2)"#;
    let b = o.bundle("timed", &["sh", "-c", "echo process >> /hooklog/log"], |c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/hooklog", "type": "bind", "source": shared, "options": ["rbind"]}),
        );
        c["hooks"] = json!({
            // The runtime's namespaces, the init not yet in its root.
            "createRuntime": [sh(format!(
                "{pid_of}; echo createRuntime $(readlink /proc/$pid/root) >> {}",
                log.display()
            ))],
            // The container's mount namespace with its mounts, before the
            // root switch (the host's paths still reach the log).
            "createContainer": [sh(format!(
                "echo createContainer $(grep -c ' /hooklog ' /proc/self/mountinfo; grep -c '/rootfs/hooklog ' /proc/self/mountinfo) >> {}",
                log.display()
            ))],
            // Inside the container: /hooklog is its path, not the host's.
            "startContainer": [sh("echo startContainer >> /hooklog/log".into())],
            "poststart": [sh(format!("echo poststart >> {}", log.display()))],
            "poststop": [sh(format!("echo poststop >> {}", log.display()))],
        });
    });
    let b_str = b.to_str().unwrap().to_string();
    o.ok(&["create", "-b", &b_str, "timed"]);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        read().lines().collect::<Vec<_>>(),
        ["createRuntime /", "createContainer 0 1"],
        "after create"
    );
    o.ok(&["start", "timed"]);
    wait_for("stopped", Duration::from_secs(5), || {
        o.status("timed") == "stopped"
    });
    let after_start: Vec<String> = read().lines().map(String::from).collect();
    // startContainer before the process; poststart after start, which may
    // come before or after the process's own line.
    assert_eq!(after_start[2], "startContainer", "{after_start:?}");
    let mut rest = after_start[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["poststart", "process"], "{after_start:?}");
    assert!(
        !after_start.contains(&"poststop".to_string()),
        "{after_start:?}"
    );
    o.ok(&["delete", "timed"]);
    assert_eq!(read().lines().last(), Some("poststop"));

    // A failing createContainer hook fails the create and leaves nothing.
    let b = o.bundle("badcc", &["true"], |c| {
        c["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]});
    });
    let line = o.fails(&["create", "-b", b.to_str().unwrap(), "badcc"]);
    assert!(line.contains("createContainer hook"), "{line}");
    o.assert_gone("badcc", None);
}

/// A call with fd 3 and fd 4 open on files (the caller's extra fds, as an
/// engine passes a socket), stdout and stderr into `out`.
fn with_fds(o: &OciHost, fd3: &Path, fd4: &Path, out: &Path, args: &[&str]) -> bool {
    let c = o.command(args);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"exec 3>>"$1" 4>>"$2"; shift 2; exec "$@""#)
        .arg("sh")
        .arg(fd3)
        .arg(fd4)
        .arg(c.get_program())
        .args(c.get_args())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap());
    sh.status().unwrap().success()
}

#[test]
fn preserve_fds_passes_exactly_that_many_extra_fds() {
    let o = OciHost::new();
    let (fd3, fd4) = (o.work.join("fd3"), o.work.join("fd4"));
    let out = o.work.join("pf.out");
    let script = "echo from-init >&3; echo leaked >&4; ls /proc/self/fd; sleep 1000";
    let b = o.bundle("pf", &["sh", "-c", script], |_| {});
    let b_str = b.to_str().unwrap().to_string();
    assert!(with_fds(
        &o,
        &fd3,
        &fd4,
        &out,
        &["create", "--preserve-fds", "1", "-b", &b_str, "pf"]
    ));
    o.ok(&["start", "pf"]);
    wait_for("the init's line", Duration::from_secs(5), || {
        std::fs::read_to_string(&fd3).unwrap_or_default() == "from-init\n"
    });
    let exec_out = o.work.join("pf-exec.out");
    assert!(with_fds(
        &o,
        &fd3,
        &fd4,
        &exec_out,
        &[
            "exec",
            "--preserve-fds",
            "1",
            "pf",
            "sh",
            "-c",
            "echo from-exec >&3; echo leaked >&4; ls /proc/self/fd"
        ]
    ));
    assert_eq!(
        std::fs::read_to_string(&fd3).unwrap(),
        "from-init\nfrom-exec\n"
    );
    // fd 4 was not preserved: nothing reached it, and only 0-3 (and ls's own
    // directory fd) were open.
    assert_eq!(std::fs::read_to_string(&fd4).unwrap(), "");
    let fds: Vec<String> = std::fs::read_to_string(&exec_out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(fds.len(), 5, "{fds:?}");
    assert_eq!(fds[..4], ["0", "1", "2", "3"], "{fds:?}");
    o.ok(&["delete", "--force", "pf"]);
    o.assert_gone("pf", None);
}

//! Docker command-line parity as a script sees it: exit codes, closed
//! pipes, Go templates, Docker-shaped inspect, `ps` columns and filters,
//! logs per stream, port/wait/rename/top/restart/version/info, and a script
//! of Docker idioms run unchanged with minirt as `docker`.

use crate::common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn web(h: &TestHost) {
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "testbr", "-p", "8080:80", "busybox", "httpd", "-f",
        "-p", "80",
    ]);
}

#[test]
fn usage_errors_exit_125_with_one_line_about_the_flag() {
    let h = TestHost::new();
    let (code, err) = h.fails(&["run", "--bogus-flag", "x", "busybox", "true"]);
    assert_eq!(code, 125);
    assert_eq!(
        one_line(&err),
        "minirt: unknown flag: --bogus-flag (see 'minirt run --help')"
    );
    let (code, err) = h.fails(&["ps", "--bogus"]);
    assert_eq!(code, 125);
    assert!(one_line(&err).contains("--bogus"), "{err}");
    let (code, _) = h.fails(&["nosuchcommand"]);
    assert_eq!(code, 125);
    assert_eq!(h.ok(&["ps", "-aq"]), "", "a usage error created something");
    // Help is not an error.
    assert!(h.ok(&["ps", "--help"]).contains("Usage: minirt ps"));
}

#[test]
fn daemon_style_errors_exit_1_like_docker() {
    let h = TestHost::new();
    let (code, err) = h.fails(&["logs", "nosuch"]);
    assert_eq!(code, 1);
    assert_eq!(one_line(&err), "minirt: No such container: nosuch");
    let (code, _) = h.fails(&["inspect", "nosuch"]);
    assert_eq!(code, 1);
    let (code, _) = h.fails(&["wait", "nosuch"]);
    assert_eq!(code, 1);
    // An image an (exited) container still uses cannot be removed.
    h.ok(&["run", "--net", "none", "--name", "user", "busybox", "true"]);
    let (code, err) = h.fails(&["rmi", "busybox"]);
    assert_eq!(code, 1, "{err}");
    h.ok(&["rm", "user"]);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let h = TestHost::new();
    web(&h);
    for args in [
        vec!["inspect", "web"],
        vec!["ps", "-a"],
        vec!["network", "inspect", "testbr"],
        vec!["version"],
    ] {
        // A pipe whose reader is already gone: the first write fails.
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let o = h
            .command(&args)
            .stdout(std::process::Stdio::from(w))
            .output()
            .unwrap();
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert_eq!(stderr(&o), "", "{args:?} complained about the pipe");
    }
    // A shell pipeline: `minirt inspect web | head -1` is quiet and whole.
    let script = format!(
        "set -o pipefail; nsenter --net={} -- {BIN} --root {} --run-root {} inspect web web web web web web web web web web web web web web web web web web web web web web web web web web web web web web | head -1",
        h.netns_path(),
        h.root.display(),
        h.run_root.display()
    );
    let o = cmd("bash", &["-c", &script]);
    assert_eq!(stdout(&o), "[\n");
    assert_eq!(stderr(&o), "", "head -1 made minirt complain");
}

#[test]
fn error_lines_have_no_colour_codes_off_a_terminal() {
    let h = TestHost::new();
    let o = h.minirt(&[
        "--log-level",
        "debug",
        "run",
        "--net",
        "none",
        "busybox",
        "nosuchcmd",
    ]);
    assert_eq!(o.status.code(), Some(127));
    let err = stderr(&o);
    assert!(err.contains("DEBUG") || err.contains("nosuchcmd"), "{err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");
}

#[test]
fn go_templates_on_inspect_ps_network_version_and_info() {
    let h = TestHost::new();
    web(&h);
    let pid: i32 = h
        .ok(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert_eq!(
        h.ok(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            "web"
        ]),
        "10.88.0.2\n"
    );
    assert_eq!(
        h.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web"]),
        "{\"80/tcp\":[{\"HostIp\":\"0.0.0.0\",\"HostPort\":\"8080\"}]}\n"
    );
    assert_eq!(
        h.ok(&[
            "inspect",
            "-f",
            "{{index .Config.Cmd 0}} {{len .Config.Cmd}} {{.Name | upper}}",
            "web"
        ]),
        "httpd 4 /WEB\n"
    );
    assert_eq!(
        h.ok(&["ps", "--format", r"{{.Names}}\t{{.Networks}}\t{{.Ports}}"]),
        "web\ttestbr\t0.0.0.0:8080->80/tcp\n"
    );
    let table = h.ok(&["ps", "--format", r"table {{.Names}}\t{{.Image}}"]);
    assert_eq!(table, "NAMES     IMAGE\nweb       busybox\n");
    assert_eq!(
        h.ok(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}}",
            "--no-trunc"
        ])
        .lines()
        .filter(|l| l.starts_with("testbr"))
        .collect::<Vec<_>>(),
        ["testbr bridge"]
    );
    assert_eq!(
        h.ok(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Subnet}}",
            "testbr"
        ]),
        "10.88.0.0/24\n"
    );
    assert_eq!(
        h.ok(&["version", "-f", "{{.Client.Version}}"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(h.ok(&["info", "-f", "{{.ContainersRunning}}"]), "1\n");
    // Malformed, unknown field, unknown function: one line, 125, no output.
    for f in ["{{.State.Pid", "{{.State.Nope}}", "{{nosuch .Id}}"] {
        let o = h.minirt(&["inspect", "-f", f, "web"]);
        assert_eq!(o.status.code(), Some(125), "{f}");
        let line = one_line(&stderr(&o));
        assert!(line.starts_with("minirt: template"), "{f}: {line}");
        assert_eq!(stdout(&o), "", "{f}");
    }
    let (code, _) = h.fails(&["ps", "--format", "{{.Nope}}"]);
    assert_eq!(code, 125);
}

#[test]
fn inspect_has_dockers_shape() {
    let h = TestHost::new();
    web(&h);
    let v = json(&h.ok(&["inspect", "web"]));
    let d = &v[0];
    let s = &d["State"];
    assert_eq!(s["Status"], "running");
    for k in ["Running", "Paused", "Restarting", "OOMKilled", "Dead"] {
        assert!(s[k].is_boolean(), "State.{k}: {s}");
    }
    assert!(s["Pid"].as_i64().unwrap() > 0);
    assert!(s["Error"].is_string() && s["StartedAt"].is_string() && s["FinishedAt"].is_string());
    let c = &d["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["httpd", "-f", "-p", "80"]));
    assert!(c["Entrypoint"].is_null());
    assert_eq!(c["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
    assert!(c["Labels"].is_object() && c["Env"].is_array());
    assert_eq!(c["StopSignal"], "SIGTERM");
    let hc = &d["HostConfig"];
    assert_eq!(
        hc["PortBindings"],
        serde_json::json!({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})
    );
    assert_eq!(hc["RestartPolicy"]["Name"], "no");
    assert_eq!(hc["NetworkMode"], "testbr");
    assert!(d["Mounts"].is_array());
    let ns = &d["NetworkSettings"];
    assert_eq!(
        ns["Ports"],
        serde_json::json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]})
    );
    assert_eq!(ns["Gateway"], "10.88.0.1");
    let n = &ns["Networks"]["testbr"];
    assert_eq!(n["IPAddress"], "10.88.0.2");
    assert_eq!(n["MacAddress"], ns["MacAddress"]);
    assert!(n["NetworkID"].as_str().unwrap().len() == 64);
    assert!(n["EndpointID"].is_string());
    // Stopped: no pid, no bound ports, what was asked still there.
    h.ok(&["stop", "-t", "1", "web"]);
    let d = &json(&h.ok(&["inspect", "web"]))[0];
    assert_eq!(d["State"]["Status"], "exited");
    assert_eq!(d["State"]["Pid"], 0);
    assert_eq!(d["NetworkSettings"]["Ports"], serde_json::json!({}));
    assert_eq!(
        d["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        "8080"
    );
}

#[test]
fn ps_has_dockers_columns_filters_and_limits() {
    let h = TestHost::new();
    web(&h);
    let o = h.minirt(&[
        "run", "--net", "none", "--name", "three", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let ps = h.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    let cols: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert_eq!(
        ps.lines().nth(1).unwrap().split_whitespace().last(),
        Some("web")
    );
    let names = |args: &[&str]| {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        h.ok(&a).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), ["web"]);
    assert_eq!(names(&["-a"]), ["three", "web"]);
    assert_eq!(names(&["-l"]), ["three"]);
    assert_eq!(names(&["-n", "2"]), ["three", "web"]);
    assert_eq!(names(&["--filter", "status=exited"]), ["three"]);
    assert_eq!(names(&["-a", "--filter", "exited=3"]), ["three"]);
    assert_eq!(names(&["-a", "--filter", "exited=0"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "-f", "name=we"]), ["web"]);
    assert_eq!(names(&["-a", "-f", "network=testbr"]), ["web"]);
    assert_eq!(
        names(&["-a", "-f", "ancestor=busybox", "-f", "status=running"]),
        ["web"]
    );
    assert_eq!(names(&["-a", "-f", "label=x"]), Vec::<String>::new());
    let id = h
        .ok(&["inspect", "-f", "{{.Id}}", "three"])
        .trim()
        .to_string();
    assert_eq!(names(&["-a", "-f", &format!("id={}", &id[..6])]), ["three"]);
    assert_eq!(
        h.ok(&["ps", "-aq", "--no-trunc", "-f", "name=three"])
            .trim(),
        id
    );
    let (code, err) = h.fails(&["ps", "-f", "colour=red"]);
    assert_eq!(
        (code, one_line(&err).as_str()),
        (1, "minirt: invalid filter 'colour'")
    );
    let (code, _) = h.fails(&["ps", "-f", "status"]);
    assert_eq!(code, 125);
    assert!(h
        .ok(&["ps", "-s"])
        .lines()
        .next()
        .unwrap()
        .ends_with("SIZE"));
    assert!(h.ok(&["ps", "--networks"]).contains("testbr=10.88.0.2"));
}

#[test]
fn logs_keep_stdout_and_stderr_apart_and_tail() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3",
    ]);
    wait_for("talk to exit", Duration::from_secs(20), || {
        h.ok(&["inspect", "-f", "{{.State.Status}}", "talk"]).trim() == "exited"
    });
    let o = h.minirt(&["logs", "talk"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "o1\no2\no3\n");
    assert_eq!(stderr(&o), "e1\ne2\n");
    // Docker counts --tail over both streams together (which of the two
    // the monitor read first is up to the scheduler: only counts here).
    for n in [1, 2, 4] {
        let o = h.minirt(&["logs", "--tail", &n.to_string(), "talk"]);
        let (out, err) = (stdout(&o), stderr(&o));
        assert_eq!(out.lines().count() + err.lines().count(), n, "{out}{err}");
        assert!(out.lines().all(|l| l.starts_with('o')), "{out}");
        assert!(err.lines().all(|l| l.starts_with('e')), "{err}");
    }
    let o = h.minirt(&["logs", "-n", "0", "talk"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    // --details: no attributes given to the log, so an empty prefix.
    let o = h.minirt(&["logs", "--details", "talk"]);
    assert_eq!(stdout(&o), " o1\n o2\n o3\n");
    for bad in [["--since", "yesterday"], ["--until", "10x"]] {
        let (code, err) = h.fails(&["logs", bad[0], bad[1], "talk"]);
        assert_eq!(code, 125);
        assert!(one_line(&err).contains("invalid time value"), "{err}");
    }
    let (code, _) = h.fails(&["logs", "--tail", "x", "talk"]);
    assert_eq!(code, 125);
}

/// The time printed by `logs -t` before a line, in ns since the epoch.
fn log_time(line: &str) -> i64 {
    let stamp = line.split(' ').next().unwrap_or_default();
    let (secs, frac) = stamp.trim_end_matches('Z').split_once('.').unwrap();
    let o = std::process::Command::new("date")
        .args(["-u", "-d", &format!("{secs}Z"), "+%s"])
        .output()
        .unwrap();
    let secs: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert_eq!(frac.len(), 9, "{line}");
    secs * 1_000_000_000 + frac.parse::<i64>().unwrap()
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn logs_record_times_per_stream_and_follow_to_the_exit() {
    let h = TestHost::new();
    let before = now_nanos();
    // The container goes on when the test creates /go, ends at /end.
    h.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--name",
        "clock",
        "busybox",
        "sh",
        "-c",
        "echo one; echo err1 >&2; echo one-b; \
         while [ ! -e /go ]; do sleep 0.05; done; echo two; echo err2 >&2; \
         while [ ! -e /end ]; do sleep 0.05; done; printf three",
    ]);
    wait_for("the first lines", Duration::from_secs(20), || {
        h.ok(&["logs", "clock"]).contains("one-b")
    });
    let mid = now_nanos();
    h.ok(&["exec", "clock", "touch", "/go"]);
    wait_for("the second lines", Duration::from_secs(20), || {
        let o = h.minirt(&["logs", "clock"]);
        stdout(&o).contains("two") && stderr(&o).contains("err2")
    });

    // Times: each line's, close to now and in order.
    let o = h.minirt(&["logs", "-t", "clock"]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let times: Vec<i64> = lines.iter().map(|l| log_time(l)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out}");
    let after = now_nanos();
    assert!(
        times[0] >= before - 1_000_000_000 && times[2] <= after,
        "{out}"
    );
    assert!(times[1] <= mid && times[2] >= mid, "{out} / {mid}");
    assert!(lines[2].ends_with(" two"), "{out}");
    // stderr stays on stderr, with its times too.
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.lines().all(|l| log_time(l) >= before - 1_000_000_000),
        "{err}"
    );
    assert!(!out.contains("err"), "{out}");

    // --since / --until split at a time between the two prints, in the
    // three forms Docker takes: Unix seconds, RFC 3339, a duration.
    let unix = format!("{}.{:09}", mid / 1_000_000_000, mid % 1_000_000_000);
    let o = h.minirt(&["logs", "--since", &unix, "clock"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("two\n", "err2\n")
    );
    let o = h.minirt(&["logs", "--until", &unix, "clock"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("one\none-b\n", "err1\n")
    );
    let rfc = lines[2].split(' ').next().unwrap();
    let o = h.minirt(&["logs", "--since", rfc, "clock"]);
    assert_eq!(stdout(&o), "two\n");
    assert_eq!(
        h.ok(&["logs", "--since", "10m", "clock"]).lines().count(),
        3
    );
    assert_eq!(h.ok(&["logs", "--until", "10m", "clock"]), "");

    // -f follows what comes and ends with the container; the last line had
    // no newline and is shown as it was.
    let follower = h
        .command(&["logs", "-f", "--since", &unix, "clock"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.ok(&["exec", "clock", "touch", "/end"]);
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\nthree");
    h.ok(&["rm", "clock"]);
}

#[test]
fn attached_runs_are_logged_and_old_raw_logs_still_read() {
    let h = TestHost::new();
    let o = h.minirt(&[
        "run",
        "--net",
        "none",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("out\n", "err\n")
    );
    let o = h.minirt(&["logs", "-t", "fg"]);
    assert!(
        stdout(&o).ends_with(" out\n") && log_time(&stdout(&o)) > 0,
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).ends_with(" err\n"), "{}", stderr(&o));

    // A container whose logs an older minirt wrote: raw bytes per stream.
    let id = h.ok(&["inspect", "-f", "{{.Id}}", "fg"]);
    let dir = h.root.join("containers").join(id.trim());
    std::fs::remove_file(dir.join("stdio.log")).unwrap();
    std::fs::write(dir.join("container.log"), "old1\nold2\n").unwrap();
    std::fs::write(dir.join("container-stderr.log"), "olderr\n").unwrap();
    let o = h.minirt(&["logs", "fg"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("old1\nold2\n", "olderr\n")
    );
    // Their time was not recorded: Docker's zero time.
    assert_eq!(h.ok(&["logs", "-t", "--tail", "1", "fg"]), "");
    assert_eq!(
        stdout(&h.minirt(&["logs", "-t", "-n", "2", "fg"])),
        "0001-01-01T00:00:00Z old2\n"
    );
    h.ok(&["rm", "fg"]);
}

/// `minirt attach ARGS` with its stdin piped and its stdout lines on a channel.
struct Attached {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Attached {
    fn new(h: &TestHost, args: &[&str]) -> Attached {
        let mut child = h
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Attached { child, lines }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn expect_line(&self, want: &str) {
        let got = self.lines.recv_timeout(Duration::from_secs(20));
        assert_eq!(got.as_deref(), Ok(want));
    }

    /// Its exit code and stderr (it must end by itself).
    fn end(mut self) -> (Option<i32>, String) {
        drop(self.child.stdin.take());
        let mut ended = None;
        wait_for("attach to end", Duration::from_secs(20), || {
            ended = self.child.try_wait().unwrap();
            ended.is_some()
        });
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        (ended.unwrap().code(), err)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn attach_streams_output_forwards_input_detaches_and_returns_the_exit_code() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "-i",
        "--net",
        "none",
        "--name",
        "echo",
        "busybox",
        "sh",
        "-c",
        "while read l; do [ \"$l\" = bye ] && exit 5; echo \"got $l\"; echo \"err $l\" >&2; done",
    ]);
    // Input reaches the container; its answer comes back.
    let mut a = Attached::new(&h, &["attach", "echo"]);
    a.send(b"hi\n");
    a.expect_line("got hi");
    // The detach keys end the client, not the container.
    a.send(b"\x10\x11");
    let (code, _) = a.end();
    assert_eq!(code, Some(0));
    assert_eq!(
        h.ok(&["inspect", "-f", "{{.State.Running}}", "echo"])
            .trim(),
        "true"
    );

    // Output printed after the attach (here by another process) is seen,
    // stderr on stderr; the container's exit ends the client with its code.
    let mut a = Attached::new(&h, &["attach", "--detach-keys", "ctrl-x", "echo"]);
    a.send(b"x\n");
    a.expect_line("got x");
    h.ok(&["exec", "echo", "sh", "-c", "echo from-exec > /proc/1/fd/1"]);
    a.expect_line("from-exec");
    a.send(b"bye\n");
    let (code, err) = a.end();
    assert_eq!(code, Some(5));
    assert_eq!(err, "err x\n");

    // A stopped container: Docker's message and exit code.
    let (code, err) = h.fails(&["attach", "echo"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "minirt: You cannot attach to a stopped container, start it first"
    );
    let (code, _) = h.fails(&["attach", "--detach-keys", "ctrl-1", "echo"]);
    assert_eq!(code, 125);
    let (code, _) = h.fails(&["attach", "nosuch"]);
    assert_eq!(code, 1);
    h.ok(&["rm", "echo"]);
}

#[test]
fn port_wait_rename_top_restart_and_the_container_group() {
    let h = TestHost::new();
    web(&h);
    assert_eq!(h.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(h.ok(&["port", "web", "80/tcp"]), "0.0.0.0:8080\n");
    let (code, err) = h.fails(&["port", "web", "81"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("No public port '81/tcp'"), "{err}");

    let top = h.ok(&["top", "web"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    assert!(top.contains("httpd -f -p 80"), "{top}");

    h.ok(&["rename", "web", "www"]);
    assert_eq!(h.ok(&["ps", "--format", "{{.Names}}"]), "www\n");
    h.ok(&[
        "run", "-d", "--net", "none", "--name", "other", "busybox", "sleep", "300",
    ]);
    let (code, err) = h.fails(&["rename", "other", "www"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("already in use"), "{err}");
    let (code, _) = h.fails(&["rename", "other", "bad name"]);
    assert_eq!(code, 125);

    let before = h.ok(&["inspect", "-f", "{{.State.Pid}}", "www"]);
    h.ok(&["restart", "-t", "1", "www"]);
    let after = h.ok(&["inspect", "-f", "{{.State.Pid}} {{.State.Running}}", "www"]);
    assert!(
        after.ends_with(" true\n") && !after.starts_with(before.trim()),
        "{after}"
    );

    // wait: the exit code of each, once they stop.
    let waiter = h
        .command(&["wait", "other"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.ok(&["kill", "other"]);
    let o = waiter.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), "137\n");
    h.ok(&["stop", "-t", "1", "www"]);
    let (code, err) = h.fails(&["top", "www"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("is not running"), "{err}");

    assert_eq!(h.ok(&["container", "ls", "-aq"]).lines().count(), 2);
    assert_eq!(
        h.ok(&["container", "inspect", "-f", "{{.Name}}", "www"]),
        "/www\n"
    );
    let (code, _) = h.fails(&["container", "inspect", "testbr"]);
    assert_eq!(code, 1, "container inspect finds only containers");
    h.ok(&["container", "rm", "www", "other"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

#[test]
fn completions_and_version_need_no_state() {
    let h = TestHost::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = h.ok(&["completion", shell]);
        assert!(out.contains("minirt") && out.contains("network"), "{shell}");
    }
    let (code, _) = h.fails(&["completion", "tcsh"]);
    assert_eq!(code, 125);
    assert!(h.ok(&["version"]).contains(env!("CARGO_PKG_VERSION")));
    assert!(!h.root.join("minirt.db").exists());
}

#[test]
fn docker_idioms_run_unchanged() {
    let h = TestHost::new();
    let path = minirt_shim(&h, &h.root.parent().unwrap().join("bin"), "docker");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker-idioms.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .env("PATH", path)
        .env("MINIRT_DNS_LINGER", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "idioms failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("ok ")).count(),
        9,
        "{}",
        stdout(&o)
    );
}

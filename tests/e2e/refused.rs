//! Inputs minirt must refuse, as a careless user or an attacker types them:
//! each gets one error line, exit 125, and leaves nothing (rows, devices,
//! rules, mounts, cgroups), and whatever the user typed comes back escaped.

use crate::common::*;
use crate::limits::snapshot;
use std::path::Path;
use std::time::Duration;

fn loaded() -> TestHost {
    let h = TestHost::new();
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/busybox.tar");
    h.ok(&["load", "-i", img.to_str().expect("utf-8")]);
    h
}

/// `args` fail with exit 125 and one line containing `expect`, and the
/// host is exactly as before.
fn refused(h: &TestHost, args: &[&str], expect: &str) -> String {
    refused_with(h, 125, args, expect)
}

/// `network` commands fail as Docker's do, with exit 1 (the CLI's rule).
fn net_refused(h: &TestHost, args: &[&str], expect: &str) -> String {
    refused_with(h, 1, args, expect)
}

fn refused_with(h: &TestHost, exit: i32, args: &[&str], expect: &str) -> String {
    let before = snapshot(h);
    let (code, err) = h.fails(args);
    let line = one_line(&err);
    assert_eq!(code, exit, "{args:?}: {err}");
    assert!(line.contains(expect), "{args:?}: {line}");
    assert!(
        !line.chars().any(char::is_control),
        "{args:?}: raw control character in {line:?}"
    );
    assert_eq!(snapshot(h), before, "{args:?} left something");
    line
}

#[test]
fn environment_entries_need_a_name() {
    let h = loaded();
    for e in ["=x", "="] {
        refused(
            &h,
            &["run", "--rm", "-e", e, "busybox", "true"],
            "the name is empty",
        );
    }
    let file = h.root.parent().expect("test dir").join("env.list");
    std::fs::write(&file, "# comment\nA=1\n=2\n").expect("env file");
    refused(
        &h,
        &[
            "run",
            "--rm",
            "--env-file",
            file.to_str().expect("utf-8"),
            "busybox",
            "true",
        ],
        "\"=2\"",
    );
}

#[test]
fn volumes_cannot_cover_the_root_proc_or_sys() {
    let h = loaded();
    for dst in [
        "/",
        "/proc",
        "/proc/x",
        "/sys",
        "/sys/fs/cgroup",
        "/data/../proc/self",
    ] {
        let v = format!("/tmp:{dst}");
        refused(
            &h,
            &["run", "--rm", "-v", &v, "busybox", "true"],
            "cannot be mounted over",
        );
    }
    // Near misses are fine.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        "/tmp:/process:ro",
        "busybox",
        "true",
    ]);
    assert_eq!(out, "");
}

#[test]
fn hostnames_and_aliases_are_rfc_1123_names() {
    let h = loaded();
    // A newline in -h would have become a line of the container's /etc/hosts.
    let line = refused(
        &h,
        &[
            "run",
            "--rm",
            "-h",
            "box\n6.6.6.6 evil.example",
            "busybox",
            "cat",
            "/etc/hosts",
        ],
        "invalid hostname",
    );
    assert!(line.contains("box\\n6.6.6.6"), "{line}");
    for bad in ["-box", "box-", "a..b", "under_score", "sp ace"] {
        refused(
            &h,
            &["run", "--rm", "-h", bad, "busybox", "true"],
            "invalid hostname",
        );
    }
    h.ok(&["network", "create", "--subnet", "10.61.0.0/24", "n1"]);
    refused(
        &h,
        &[
            "run",
            "--rm",
            "--net",
            "n1",
            "--network-alias",
            "a\tb",
            "busybox",
            "true",
        ],
        "invalid domain name",
    );
    h.ok(&[
        "run", "-d", "--name", "up", "--net", "none", "busybox", "sleep", "600",
    ]);
    h.ok(&["network", "create", "--subnet", "10.62.0.0/24", "n2"]);
    net_refused(
        &h,
        &["network", "connect", "--alias", "x\ny", "n2", "up"],
        "invalid domain name \"x\\ny\"",
    );
    refused(&h, &["exec", "-e", "=x", "up", "true"], "the name is empty");
    h.ok(&["rm", "-f", "up"]);
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-h",
        "web-1.example",
        "busybox",
        "hostname",
    ]);
    assert_eq!(out, "web-1.example\n");
}

#[test]
fn predefined_network_names_and_the_default_subnet_are_reserved() {
    let h = TestHost::new();
    for name in ["bridge", "host", "none"] {
        net_refused(&h, &["network", "create", name], "reserved");
    }
    // The default network does not exist yet; its subnet is still its own.
    for subnet in ["172.17.0.0/16", "172.17.3.0/24", "172.0.0.0/8"] {
        net_refused(
            &h,
            &["network", "create", "--subnet", subnet, "mine"],
            "overlaps with the default network bridge (172.17.0.0/16)",
        );
    }
    h.ok(&["network", "create", "--subnet", "172.18.0.0/16", "mine"]);
    h.ok(&["network", "rm", "mine"]);
}

#[test]
fn the_default_network_is_not_removed_by_rm() {
    let h = loaded();
    h.ok(&["run", "--rm", "busybox", "true"]);
    // The kernel removes the exited container's veth with its namespace a
    // little later: the snapshot must not catch it on its way out.
    wait_for(
        "the exited container's veth to go",
        Duration::from_secs(10),
        || !links(&h).iter().any(|l| l.starts_with("mrv")),
    );
    net_refused(&h, &["network", "rm", "bridge"], "pre-defined network");
    // Still there and in use at once; prune tidies it up with the rest.
    h.ok(&["run", "--rm", "busybox", "true"]);
    let out = h.ok(&["network", "prune", "-f"]);
    assert!(out.contains("bridge"), "{out}");
}

#[test]
fn names_are_echoed_back_escaped() {
    let h = loaded();
    refused(
        &h,
        &["run", "--rm", "--name", "x\u{1b}[2Jy", "busybox", "true"],
        "Invalid container name (x\\u{1b}[2Jy)",
    );
    refused(&h, &["run", "--rm", "bad\nimage", "true"], "bad\\nimage");
    net_refused(
        &h,
        &["network", "rm", "gone\u{7}"],
        "network gone\\u{7} not found",
    );
    net_refused(
        &h,
        &["network", "create", "n\u{1b}]0;pwned\u{7}"],
        "invalid network name",
    );
    for args in [
        &["rm", "-f", "nope\r\nforged line"][..],
        &["inspect", "nope\u{1b}[31m"][..],
        &["stop", "nope\n"][..],
    ] {
        let o = h.minirt(args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        let line = one_line(&err);
        assert!(
            !line.chars().any(char::is_control),
            "{args:?}: raw control character in {line:?}"
        );
    }
}

#[test]
fn a_failed_rm_start_prints_only_its_error() {
    let h = loaded();
    for (args, code) in [
        (
            &["run", "--rm", "--net", "none", "busybox", "/no/such/binary"][..],
            127,
        ),
        (
            &[
                "run",
                "--rm",
                "--net",
                "none",
                "-u",
                "nobody-here",
                "busybox",
                "true",
            ][..],
            125,
        ),
        (&["run", "--rm", "busybox", "/etc/passwd"][..], 126),
    ] {
        let (got, err) = h.fails(args);
        assert_eq!(got, code, "{args:?}: {err}");
        let line = one_line(&err);
        assert!(!line.contains("removing"), "{line}");
        assert_eq!(h.ok(&["ps", "-aq"]).trim(), "", "{args:?} left a container");
        assert!(
            h.mounts().is_empty(),
            "{args:?} left mounts: {:?}",
            h.mounts()
        );
        assert!(
            h.cgroups().is_empty(),
            "{args:?} left cgroups: {:?}",
            h.cgroups()
        );
    }
}

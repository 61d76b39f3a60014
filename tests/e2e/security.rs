//! The default security profile under attack: each test tries something a container must not
//! do, shows it fails, and where there is an opt-out (--cap-add, --privileged,
//! --security-opt seccomp=unconfined) shows the same thing succeeding with it.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

/// A static C program that makes one raw syscall per argument (with arguments that are
/// harmless if the call gets through) and prints `name=errno` (0 on success), or with `ids`
/// prints the real and effective uid. Compiled once per test run.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *n = argv[i];
        long r = -1;
        errno = 0;
        struct timespec ts = {0, 0};
        if (!strcmp(n, "ids")) { printf("%d %d\n", getuid(), geteuid()); continue; }
        else if (!strcmp(n, "keyctl")) r = syscall(SYS_keyctl, -1L, 0, 0, 0, 0);
        else if (!strcmp(n, "add_key")) r = syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
        else if (!strcmp(n, "request_key")) r = syscall(SYS_request_key, NULL, NULL, NULL, 0);
        else if (!strcmp(n, "bpf")) r = syscall(SYS_bpf, -1, NULL, 0);
        else if (!strcmp(n, "perf_event_open")) r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        else if (!strcmp(n, "kexec_load")) r = syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
        else if (!strcmp(n, "init_module")) r = syscall(SYS_init_module, NULL, 0, "");
        else if (!strcmp(n, "finit_module")) r = syscall(SYS_finit_module, -1, "", 0);
        else if (!strcmp(n, "delete_module")) r = syscall(SYS_delete_module, "minirt-none", 0);
        else if (!strcmp(n, "umount2")) r = syscall(SYS_umount2, "/minirt-none", 0);
        else if (!strcmp(n, "unshare")) r = syscall(SYS_unshare, CLONE_NEWUSER);
        else if (!strcmp(n, "setns")) r = syscall(SYS_setns, -1, 0);
        else if (!strcmp(n, "clock_settime")) r = syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts);
        else if (!strcmp(n, "settimeofday")) r = syscall(SYS_settimeofday, NULL, NULL);
        else if (!strcmp(n, "swapon")) r = syscall(SYS_swapon, NULL, 0);
        else if (!strcmp(n, "personality")) r = syscall(SYS_personality, 0x0400000UL);
        else if (!strcmp(n, "io_uring_setup")) r = syscall(SYS_io_uring_setup, 0, NULL);
        else if (!strcmp(n, "userfaultfd")) r = syscall(SYS_userfaultfd, -1);
        else if (!strcmp(n, "vsock")) r = syscall(SYS_socket, 40, SOCK_STREAM, 0);
        else if (!strcmp(n, "clone3")) r = syscall(SYS_clone3, NULL, 0);
        else if (!strcmp(n, "getpid")) r = syscall(SYS_getpid);
        else { printf("%s=unknown\n", n); continue; }
        printf("%s=%d\n", n, r == -1 ? errno : 0);
    }
    return 0;
}
"#;

/// Blocked by the filter whatever the capabilities: reaching the kernel with these arguments
/// gives something other than EPERM (EFAULT, EINVAL, EBADF, success...), so EPERM here is
/// the filter's answer.
const FILTERED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "clock_settime",
    "personality",
    "io_uring_setup",
    "userfaultfd",
    "vsock",
];

/// Refused in a default container (by the filter and by missing capabilities both).
const REFUSED: &[&str] = &[
    "bpf",
    "perf_event_open",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "umount2",
    "swapon",
    "settimeofday",
];

const EPERM: i32 = 1;
const ENOSYS: i32 = 38;

/// Compiles the probe program; the binary is `<dir>/probe`.
fn build_probe() -> TempDir {
    build_static_c("probe", PROBE_C)
}

/// Runs the probe in a fresh container with `flags`; `name -> errno`.
fn probe(h: &TestHost, dir: &TempDir, flags: &[&str], calls: &[&str]) -> Vec<(String, i32)> {
    let vol = format!("{}:/probe:ro", dir.path());
    let mut args = vec!["run", "--rm", "--net", "none", "-v", &vol];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "/probe/probe"]);
    args.extend_from_slice(calls);
    let out = h.ok(&args);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, e)| (n.to_string(), e.parse().unwrap_or(-1)))
        .collect()
}

fn errno(results: &[(String, i32)], name: &str) -> i32 {
    results
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
        .1
}

fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in {out}"))
        .trim()
        .to_string()
}

#[test]
fn seccomp_blocks_dangerous_syscalls_and_unconfined_lifts_it() {
    let h = TestHost::new();
    let p = build_probe();
    let mut calls: Vec<&str> = FILTERED.iter().chain(REFUSED).copied().collect();
    calls.extend(["clone3", "getpid"]);
    let r = probe(&h, &p, &[], &calls);
    for c in FILTERED.iter().chain(REFUSED) {
        assert_eq!(errno(&r, c), EPERM, "{c} was not refused: {r:?}");
    }
    // clone3 answers ENOSYS so libc falls back to clone, whose flags the filter can see.
    assert_eq!(errno(&r, "clone3"), ENOSYS, "{r:?}");
    assert_eq!(errno(&r, "getpid"), 0);

    // The same calls without the filter reach the kernel: none of them is EPERM now.
    let r = probe(&h, &p, &["--security-opt", "seccomp=unconfined"], FILTERED);
    for c in FILTERED {
        assert_ne!(
            errno(&r, c),
            EPERM,
            "{c} still refused when unconfined: {r:?}"
        );
    }
    // Seccomp mode as the kernel reports it: 2 (filter) by default, 0 unconfined.
    let o = h.run_sh(&[], "grep ^Seccomp: /proc/self/status");
    assert_eq!(status_field(&stdout(&o), "Seccomp"), "2");
    let o = h.run_sh(
        &["--security-opt", "seccomp=unconfined"],
        "grep ^Seccomp: /proc/self/status",
    );
    assert_eq!(status_field(&stdout(&o), "Seccomp"), "0");
    // An unknown option is one clear error, not silently ignored.
    let (code, err) = h.fails(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--security-opt",
        "apparmor=unconfined",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid --security-opt"), "{err}");
}

#[test]
fn a_custom_seccomp_profile_is_honoured() {
    let h = TestHost::new();
    let p = build_probe();
    let dir = TempDir::new("profile");
    let profile = format!("{}/p.json", dir.path());
    // Allow everything but getpid, which answers errno 99.
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":99}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={profile}");
    let r = probe(&h, &p, &["--security-opt", &opt], &["getpid", "setns"]);
    assert_eq!(errno(&r, "getpid"), 99, "{r:?}");
    // setns is allowed by this profile: it reaches the kernel (EBADF for fd -1).
    assert_eq!(errno(&r, "setns"), libc::EBADF, "{r:?}");
}

#[test]
fn default_capabilities_and_cap_add_drop() {
    let h = TestHost::new();
    // No NET_ADMIN: cannot configure an interface (of the container's own netns).
    let o = h.run_sh(&[], "ip addr add 198.51.100.9/32 dev lo");
    assert_ne!(o.status.code(), Some(0), "NET_ADMIN should be missing");
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    let o = h.run_sh(
        &["--cap-add", "NET_ADMIN"],
        "ip addr add 198.51.100.9/32 dev lo && ip addr show lo | grep -q 198.51.100.9 && echo made",
    );
    assert_eq!(stdout(&o).trim(), "made", "{}", stderr(&o));

    // No SYS_ADMIN: mount is refused; --cap-add SYS_ADMIN (filter follows) allows it.
    let o = h.run_sh(&[], "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t");
    assert_ne!(o.status.code(), Some(0));
    let o = h.run_sh(
        &["--cap-add", "CAP_SYS_ADMIN"],
        "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && grep -c ' /mnt/t tmpfs' /proc/mounts",
    );
    assert_eq!(stdout(&o).trim(), "1", "{}", stderr(&o));

    // --cap-drop CHOWN: root in the container can no longer give files away.
    let o = h.run_sh(&[], "touch /f && chown 1:1 /f && echo ok");
    assert_eq!(stdout(&o).trim(), "ok");
    let o = h.run_sh(&["--cap-drop", "chown"], "touch /f && chown 1:1 /f");
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );

    // --cap-drop ALL: nothing at all, in every set.
    let o = h.run_sh(
        &["--cap-drop", "ALL"],
        "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status",
    );
    let out = stdout(&o);
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out, k), "0000000000000000", "{out}");
    }
    // An unknown capability is refused before anything is made.
    let (code, err) = h.fails(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--cap-add",
        "FLY",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown capability"), "{err}");
    assert_eq!(h.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn exec_gets_the_containers_capabilities_and_filter() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--net",
        "none",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "sleep",
        "100",
    ]);
    let init = h.ok(&[
        "exec",
        "c",
        "grep",
        "-E",
        "^(CapEff|Seccomp):",
        "/proc/1/status",
    ]);
    let execd = h.ok(&[
        "exec",
        "c",
        "grep",
        "-E",
        "^(CapEff|Seccomp):",
        "/proc/self/status",
    ]);
    assert_eq!(init, execd, "exec differs from the container's init");
    let eff = u64::from_str_radix(&status_field(&execd, "CapEff"), 16).unwrap();
    assert_ne!(eff & (1 << 12), 0, "NET_ADMIN added: {execd}");
    assert_eq!(eff & 1, 0, "CHOWN dropped: {execd}");
    assert_eq!(status_field(&execd, "Seccomp"), "2");
    // The filter is really there for exec'd processes: unshare is refused.
    let o = h.minirt(&["exec", "c", "unshare", "-U", "true"]);
    assert_ne!(o.status.code(), Some(0));
    h.ok(&["rm", "-f", "c"]);

    // Unconfined containers give unconfined execs.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--net",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sleep",
        "100",
    ]);
    let execd = h.ok(&["exec", "u", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(status_field(&execd, "Seccomp"), "0");
    h.ok(&["exec", "u", "unshare", "-U", "true"]);
    h.ok(&["rm", "-f", "u"]);
}

#[test]
fn privileged_gets_all_capabilities_devices_and_no_filter() {
    let h = TestHost::new();
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                  mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo mounted; \
                  grep -c /proc/kcore /proc/mounts; \
                  grep ' /sys sysfs' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo sysctl-written; \
                  test -b /dev/loop0 && dd if=/dev/loop0 of=/dev/null bs=512 count=1 2>/dev/null && echo loop-read";
    let o = h.run_sh(&["--privileged"], script);
    let out = stdout(&o);
    // Every capability this host's root holds (it lacks CAP_SYS_RESOURCE here).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(
        status_field(&out, "CapEff"),
        status_field(&own, "CapPrm"),
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert!(out.contains("mounted"), "{out} {}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"0"),
        "/proc/kcore should not be masked: {out}"
    );
    assert!(lines.contains(&"rw"), "/sys should be rw: {out}");
    // Per network namespace: this writes only the container's own.
    assert!(out.contains("sysctl-written"), "{out} {}", stderr(&o));
    if Path::new("/dev/loop0").exists() {
        assert!(out.contains("loop-read"), "{out} {}", stderr(&o));
    }

    // The same in a default container: all refused.
    let o = h.run_sh(&[], script);
    let out = stdout(&o);
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb");
    assert!(
        !out.contains("mounted") && !out.contains("sysctl-written"),
        "{out}"
    );
    assert!(!out.contains("loop-read"), "{out}");
    assert!(out.lines().any(|l| l == "ro"), "/sys should be ro: {out}");
}

#[test]
fn setuid_and_file_capabilities_gain_nothing_under_no_new_privs() {
    let h = TestHost::new();
    let dir = TempDir::new("suid");
    let probe_bin = format!("{}/probe", dir.path());
    std::fs::copy(build_probe().0.join("probe"), &probe_bin).unwrap();
    let o = cmd("chmod", &["4755", &probe_bin]);
    assert!(o.status.success());
    // Control, on the host without no_new_privs: the setuid bit works (euid 0).
    let o = cmd(
        "setpriv",
        &[
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            &probe_bin,
            "ids",
        ],
    );
    assert_eq!(stdout(&o).trim(), "65534 0", "control: {}", stderr(&o));
    // In the container as uid 65534: no gain.
    let vol = format!("{}:/v", dir.path());
    let out = h.sh_ok(
        &["-u", "65534", "-v", &vol],
        "/v/probe ids; id -u; grep NoNewPrivs /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534 65534", "{out}");
    assert_eq!(lines[1], "65534", "{out}");
    assert!(lines[2].ends_with('1'), "{out}");

    // A file capability (DAC_OVERRIDE, in the default bounding set) is not granted either.
    let bb = format!("{}/busybox", dir.path());
    let rootfs_bb = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        &vol,
        "busybox",
        "cp",
        "/bin/busybox",
        "/v/busybox",
    ]);
    assert_eq!(rootfs_bb, "");
    let o = cmd("setcap", &["cap_dac_override+ep", &bb]);
    assert!(o.status.success(), "setcap: {}", stderr(&o));
    let o = cmd(
        "setpriv",
        &[
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "sh",
            "-c",
            &format!("{bb} grep CapEff /proc/self/status"),
        ],
    );
    assert_eq!(
        status_field(&stdout(&o), "CapEff"),
        "0000000000000002",
        "control: {}",
        stderr(&o)
    );
    let out = h.sh_ok(
        &["-u", "65534", "-v", &vol],
        "/v/busybox grep CapEff /proc/self/status",
    );
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
}

#[test]
fn proc_paths_are_masked_and_sys_is_read_only() {
    let h = TestHost::new();
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
           [ -e $f ] && echo $f $(head -c 64 $f | wc -c); done; \
         ls -A /proc/acpi /proc/scsi /sys/firmware 2>/dev/null | grep -v ':$' | grep -c .; \
         (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>&1; \
         mkdir /sys/fs/minirt-x 2>&1; true",
    ]);
    for l in out.lines().filter(|l| l.starts_with("/proc/")) {
        assert!(l.ends_with(" 0"), "{l} is readable: {out}");
    }
    // Whatever the host's kernel offers (and has something in) is there, but empty.
    let mut masked = 0;
    for f in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ] {
        let on_host = std::fs::File::open(f)
            .and_then(|mut file| std::io::Read::read(&mut file, &mut [0u8; 64]))
            .unwrap_or(0);
        if on_host > 0 {
            assert!(out.contains(&format!("{f} 0")), "{f} not masked: {out}");
            masked += 1;
        }
    }
    assert!(masked > 0, "no masked file to check on this host");
    assert!(
        out.lines().any(|l| l == "0"),
        "masked dirs are empty: {out}"
    );
    let ro = out.matches("Read-only file system").count();
    assert_eq!(ro, 2, "every write refused as read-only: {out}");
}

#[test]
fn devices_outside_the_allow_list_cannot_be_opened() {
    let h = TestHost::new();
    // The host's own disk, when it has one we can name; a loop device otherwise.
    let (major, minor) = ["vda", "sda", "nvme0n1", "loop0"]
        .iter()
        .find_map(|d| {
            let dev = std::fs::read_to_string(format!("/sys/class/block/{d}/dev")).ok()?;
            let (a, b) = dev.trim().split_once(':')?;
            Some((a.to_string(), b.to_string()))
        })
        .expect("a block device on the host");
    let script = format!(
        "mknod /tmp/disk b {major} {minor} && echo made; \
         head -c 1 /tmp/disk >/dev/null && echo opened; \
         cat /dev/null && echo null-ok; \
         head -c 4 /dev/zero | wc -c; \
         mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem >/dev/null && echo mem-opened"
    );
    let o = h.run_sh(&[], &script);
    let out = stdout(&o);
    // mknod is allowed (as in Docker), using the node is not.
    assert!(out.contains("made"), "{out}");
    assert!(!out.contains("opened"), "a host device was opened: {out}");
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "4"), "{out}");
}

#[test]
fn read_only_rootfs_keeps_dev_proc_and_volumes_working() {
    let h = TestHost::new();
    let vol = TempDir::new("ro");
    let script = "touch /x 2>&1; touch /tmp/x 2>&1; \
                  touch /dev/shm/x && echo shm-ok; \
                  echo hi > /dev/null && echo null-ok; \
                  cat /proc/self/stat >/dev/null && echo proc-ok; \
                  touch /data/x && echo volume-ok";
    let v = format!("{}:/data", vol.path());
    let o = h.run_sh(&["--read-only", "-v", &v], script);
    let out = stdout(&o);
    assert_eq!(
        out.matches("Read-only file system").count(),
        2,
        "/ and /tmp are read-only: {out}"
    );
    for ok in ["shm-ok", "null-ok", "proc-ok", "volume-ok"] {
        assert!(out.contains(ok), "{ok} missing: {out} {}", stderr(&o));
    }
    assert!(vol.0.join("x").exists());
    // Without --read-only the same root is writable.
    let o = h.run_sh(&[], "touch /x && touch /tmp/x && echo rw-ok");
    assert_eq!(stdout(&o).trim(), "rw-ok");
    // inspect says so.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--read-only",
        "--net",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "r"])).unwrap();
    assert_eq!(v[0]["HostConfig"]["ReadonlyRootfs"], true);
    h.ok(&["rm", "-f", "r"]);
}

#[test]
fn containers_see_neither_host_nor_each_others_processes() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "other", "--net", "none", "busybox", "sleep", "4242",
    ]);
    let out = h.ok(&[
        "run", "--rm", "--net", "none", "busybox", "ps", "-o", "pid,args",
    ]);
    let procs: Vec<&str> = out.lines().skip(1).collect();
    // Only this container's ps, as PID 1.
    assert_eq!(procs.len(), 1, "{out}");
    assert!(procs[0].trim().starts_with("1 "), "{out}");
    assert!(!out.contains("sleep 4242"), "{out}");
    // Nor any host process, e.g. this test's own runner.
    let o = h.run_sh(&[], "ls /proc | grep -c '^[0-9]'");
    assert!(
        stdout(&o).trim().parse::<u32>().unwrap() <= 3,
        "{}",
        stdout(&o)
    );
    h.ok(&["rm", "-f", "other"]);
}

/// An HTTP GET with busybox nc (busybox 1.35's wget crashes on this host), as a shell line.
fn http_get(ip: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}")
}

/// One GET from the test host's namespace: did the page come back?
fn fetch(h: &TestHost, ip: &str, port: u16, body: &str) -> bool {
    let o = h.in_ns("busybox", &["sh", "-c", &http_get(ip, port)]);
    stdout(&o).contains(body)
}

#[test]
fn a_container_cannot_reach_another_network() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.231.1.0/24", "neta"]);
    h.ok(&["network", "create", "--subnet", "10.231.2.0/24", "netb"]);
    let page = TempDir::new("www");
    std::fs::write(page.0.join("index.html"), "secret\n").unwrap();
    let v = format!("{}:/www:ro", page.path());
    for (name, net) in [("b1", "netb"), ("a2", "neta")] {
        h.ok(&[
            "run", "-d", "--name", name, "--net", net, "-v", &v, "busybox", "httpd", "-f", "-p",
            "80", "-h", "/www",
        ]);
    }
    let ip_of = |c: &str| {
        let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", c])).unwrap();
        let nets = v[0]["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .clone();
        nets.values().next().unwrap()["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ip_b = ip_of("b1");
    let ip_a2 = ip_of("a2");
    // Same network: reachable (so the refusal below is isolation, not a broken server).
    let same = http_get(&ip_a2, 80);
    wait_for("httpd on neta", Duration::from_secs(10), || {
        stdout(&h.minirt(&["run", "--rm", "--net", "neta", "busybox", "sh", "-c", &same]))
            .contains("secret")
    });
    let other = format!("{} 2>&1; echo rc=$?", http_get(&ip_b, 80));
    let out = h.ok(&[
        "run", "--rm", "--net", "neta", "busybox", "sh", "-c", &other,
    ]);
    assert!(!out.contains("secret"), "neta reached netb: {out}");
    assert!(!out.contains("rc=0"), "{out}");
    for c in ["b1", "a2"] {
        h.ok(&["rm", "-f", c]);
    }
}

#[test]
fn a_published_port_is_bound_to_the_address_asked_for_only() {
    let h = TestHost::new();
    // The test host gets a second local address besides 127.0.0.1.
    let o = h.in_ns("ip", &["addr", "add", "198.51.100.7/32", "dev", "lo"]);
    assert!(o.status.success(), "ip addr add: {}", stderr(&o));
    let page = TempDir::new("port");
    std::fs::write(page.0.join("index.html"), "published\n").unwrap();
    let v = format!("{}:/www:ro", page.path());
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:8081:80",
        "-v",
        &v,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    wait_for("the port on 127.0.0.1", Duration::from_secs(10), || {
        fetch(&h, "127.0.0.1", 8081, "published")
    });
    assert!(
        !fetch(&h, "198.51.100.7", 8081, "published"),
        "port answered on an address it was not published on"
    );
    h.ok(&["rm", "-f", "web"]);
    // And one published on the other address is not on loopback.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web2",
        "-p",
        "198.51.100.7:8082:80",
        "-v",
        &v,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    wait_for("the port on 198.51.100.7", Duration::from_secs(10), || {
        fetch(&h, "198.51.100.7", 8082, "published")
    });
    assert!(!fetch(&h, "127.0.0.1", 8082, "published"));
    h.ok(&["rm", "-f", "web2"]);
}

//! `minirt cp` as a Docker user types it: both directions, tar streams on
//! stdin/stdout, running and stopped containers, owners, and symlinks in
//! the container that point at host paths (they lead inside the container).

use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

fn sleeper(h: &TestHost) {
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "none", "busybox", "sleep", "600",
    ]);
}

#[test]
fn cp_both_ways_on_a_running_and_a_stopped_container() {
    let h = TestHost::new();
    sleeper(&h);
    let t = TempDir::new("cp");
    // Container -> host, to a new file name.
    let hn = h.ok(&["exec", "web", "hostname"]);
    let out = format!("{}/h", t.path());
    h.ok(&["cp", "web:/etc/hostname", &out]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), hn);

    // Host dir -> container dir: copied into it under its own name, owned
    // by root without -a, by the source's owner with -a.
    let dir = t.0.join("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/f"), "one\n").unwrap();
    std::os::unix::fs::chown(dir.join("sub/f"), Some(1234), Some(1234)).unwrap();
    std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
    h.ok(&["cp", dir.to_str().unwrap(), "web:/tmp/"]);
    assert_eq!(h.ok(&["exec", "web", "cat", "/tmp/dir/sub/f"]), "one\n");
    assert_eq!(
        h.ok(&["exec", "web", "readlink", "/tmp/dir/link"]),
        "sub/f\n"
    );
    assert_eq!(
        h.ok(&["exec", "web", "stat", "-c", "%u", "/tmp/dir/sub/f"]),
        "0\n"
    );
    h.ok(&["cp", "-a", dir.to_str().unwrap(), "web:/tmp/kept"]);
    assert_eq!(
        h.ok(&["exec", "web", "stat", "-c", "%u:%g", "/tmp/kept/sub/f"]),
        "1234:1234\n"
    );

    // A tar stream on stdout and on stdin.
    let o = h
        .command(&["cp", "web:/tmp/dir", "-"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let tarfile = t.0.join("out.tar");
    std::fs::write(&tarfile, &o.stdout).unwrap();
    let listing = stdout(&cmd("tar", &["-tf", tarfile.to_str().unwrap()]));
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(names, ["dir/", "dir/link", "dir/sub/", "dir/sub/f"]);
    let o = h
        .command(&["cp", "-", "web:/tmp"])
        .stdin(std::fs::File::open(&tarfile).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Stopped: the copy works on the container's own files all the same,
    // and leaves no mount behind.
    h.ok(&["stop", "-t", "0", "web"]);
    let back = t.0.join("back");
    h.ok(&["cp", "web:/tmp/dir/.", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("sub/f")).unwrap(),
        "one\n"
    );
    assert_eq!(std::fs::metadata(back.join("sub/f")).unwrap().uid(), 0);
    std::fs::write(t.0.join("new"), "while stopped\n").unwrap();
    h.ok(&["cp", &format!("{}/new", t.path()), "web:/new"]);
    assert!(h.mounts().is_empty(), "{:?}", h.mounts());
    assert!(!h.run_root.join("cp").read_dir().unwrap().any(|_| true));
    h.ok(&["start", "web"]);
    assert_eq!(h.ok(&["exec", "web", "cat", "/new"]), "while stopped\n");
}

#[test]
fn cp_symlinks_lead_inside_the_container_and_errors_are_one_line() {
    let h = TestHost::new();
    sleeper(&h);
    let t = TempDir::new("cpesc");
    let secret = t.0.join("secret");
    std::fs::write(&secret, "HOST SECRET\n").unwrap();
    let hostdir = t.0.join("hostdir");
    std::fs::create_dir_all(&hostdir).unwrap();
    // Links to the host's paths, absolute and climbing.
    h.ok(&[
        "exec",
        "web",
        "ln",
        "-s",
        secret.to_str().unwrap(),
        "/tmp/abs",
    ]);
    let climb = format!("../../../../../..{}", hostdir.display());
    h.ok(&["exec", "web", "ln", "-s", &climb, "/tmp/climb"]);

    let out = format!("{}/got", t.path());
    let (code, err) = h.fails(&["cp", "-L", "web:/tmp/abs", &out]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!std::path::Path::new(&out).exists());
    // Without -L the link itself is copied, not what it names.
    h.ok(&["cp", "web:/tmp/abs", &out]);
    assert_eq!(std::fs::read_link(&out).unwrap(), secret);

    std::fs::write(t.0.join("f"), "x").unwrap();
    let (code, err) = h.fails(&["cp", &format!("{}/f", t.path()), "web:/tmp/climb/"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        hostdir.read_dir().unwrap().next().is_none(),
        "wrote to the host"
    );
    // Once the target exists inside the container, the file lands there.
    // (through sh: `exec web mkdir -p` is taken for runc's `exec -p`)
    let mk = format!("mkdir -p {}", hostdir.display());
    h.ok(&["exec", "web", "sh", "-c", &mk]);
    h.ok(&["cp", &format!("{}/f", t.path()), "web:/tmp/climb/"]);
    assert!(
        hostdir.read_dir().unwrap().next().is_none(),
        "wrote to the host"
    );
    assert_eq!(
        h.ok(&["exec", "web", "cat", &format!("{}/f", hostdir.display())]),
        "x"
    );

    let (code, err) = h.fails(&["cp", "nosuch:/etc/hostname", &out]);
    assert_eq!(code, 1, "{err}");
    let (code, _) = h.fails(&["cp", "web:/a", "web:/b"]);
    assert_eq!(code, 125);
    let (code, _) = h.fails(&["cp", "/a", "/b"]);
    assert_eq!(code, 125);
}

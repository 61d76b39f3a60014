//! Volumes as a Docker user keeps data: `volume create/ls/inspect/rm/prune`,
//! `-v NAME:/path` made on first use and filled from the image, anonymous
//! `-v /path` removed by `rm -v`, `--mount` and `--tmpfs`.

use crate::common::*;

#[test]
fn named_volumes_keep_data_and_start_with_the_images_files() {
    let h = TestHost::new();
    assert_eq!(h.ok(&["volume", "create", "data"]), "data\n");
    h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--net",
            "none",
            "-v",
            "data:/data:ro",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    let o = h.minirt(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        "data:/data:ro",
        "busybox",
        "touch",
        "/data/g",
    ]);
    assert!(!o.status.success(), "wrote to a read-only volume");

    // First use of a new name: made, and filled with the image's /etc.
    h.ok(&[
        "run",
        "--name",
        "c",
        "--net",
        "none",
        "-v",
        "etcvol:/etc",
        "busybox",
        "true",
    ]);
    let mp = h.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "etcvol"]);
    let passwd = std::fs::read_to_string(format!("{}/passwd", mp.trim())).unwrap();
    assert!(passwd.starts_with("root:"), "{passwd}");
    let doc: serde_json::Value =
        serde_json::from_str(&h.ok(&["volume", "inspect", "etcvol"])).unwrap();
    assert_eq!(doc[0]["Driver"], "local");
    assert_eq!(doc[0]["Scope"], "local");
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "data\netcvol\n");
    assert_eq!(
        h.ok(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]),
        "data local\netcvol local\n"
    );
    // In use: refused with Docker's exit code; free after the container goes.
    let (code, err) = h.fails(&["volume", "rm", "etcvol"]);
    assert_eq!(code, 1);
    assert!(err.contains("volume is in use"), "{err}");
    h.ok(&["rm", "c"]);
    assert_eq!(h.ok(&["volume", "rm", "etcvol"]), "etcvol\n");
    assert!(!std::path::Path::new(mp.trim()).exists());
    let (code, _) = h.fails(&["volume", "inspect", "nosuch"]);
    assert_eq!(code, 1);
    let (code, _) = h.fails(&["volume", "create", "a$b"]);
    assert_eq!(code, 125);
    let (code, _) = h.fails(&["run", "--rm", "-v", "a$b:/x", "busybox", "true"]);
    assert_eq!(code, 125);
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "data\n");
    assert_eq!(
        h.ok(&["volume", "prune", "-a", "-f"]),
        "Deleted Volumes:\ndata\nTotal reclaimed space: 0B\n"
    );
}

#[test]
fn anonymous_volumes_go_with_rm_v() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "--name",
        "a",
        "--net",
        "none",
        "-v",
        "/cache",
        "busybox",
        "sh",
        "-c",
        "echo x > /cache/f",
    ]);
    let names = h.ok(&["volume", "ls", "-q"]);
    assert_eq!(names.lines().count(), 1);
    assert_eq!(names.trim().len(), 64);
    h.ok(&["rm", "-v", "a"]);
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "");
    // Without -v it stays, and prune (anonymous only by default) takes it.
    h.ok(&[
        "run", "--name", "b", "--net", "none", "-v", "/cache", "busybox", "true",
    ]);
    h.ok(&["volume", "create", "named"]);
    h.ok(&["rm", "b"]);
    assert_eq!(h.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    h.ok(&["volume", "prune", "-f"]);
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "named\n");
}

#[test]
fn mount_flag_binds_and_mounts_volumes() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--mount",
        "type=volume,source=mv,target=/d",
        "busybox",
        "sh",
        "-c",
        "echo m > /d/f",
    ]);
    assert_eq!(
        h.ok(&["run", "--rm", "--net", "none", "-v", "mv:/d", "busybox", "cat", "/d/f"]),
        "m\n"
    );
    let t = TempDir::new("mountflag");
    std::fs::write(t.0.join("x"), "host\n").unwrap();
    let spec = format!("type=bind,source={},target=/h,readonly", t.path());
    assert_eq!(
        h.ok(&["run", "--rm", "--net", "none", "--mount", &spec, "busybox", "cat", "/h/x"]),
        "host\n"
    );
    let o = h.minirt(&[
        "run", "--rm", "--net", "none", "--mount", &spec, "busybox", "touch", "/h/y",
    ]);
    assert!(!o.status.success());
    assert!(!t.0.join("y").exists());
    // tmpfs: fresh, with Docker's defaults and the size asked for.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--tmpfs",
        "/run:size=1m",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-mode=1700",
        "busybox",
        "grep",
        "-E",
        " /(run|t) ",
        "/proc/mounts",
    ]);
    assert!(
        out.contains("/run tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k"),
        "{out}"
    );
    assert!(
        out.contains("/t tmpfs rw,nosuid,nodev,noexec,relatime,mode=1700"),
        "{out}"
    );
    let (code, err) = h.fails(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-bogus=1",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("not implemented"), "{err}");
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    h.ok(&["volume", "rm", "mv"]);
}

//! Tests of a container's mount sequence, recorded through the `Sys` seam
//! (`Recorder`), without root.

use super::*;
use crate::runtime::sys::{Call, Recorder};
use nix::errno::Errno;

/// A bundle in a temp dir standing for the host's `/`: `rootfs/` with
/// a few of the files masks and read-only paths name, and `data/`, a
/// bind source.
fn host() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let r = base.path().join("rootfs");
    for d in ["proc/acpi", "proc/sys", "sys", "etc", "data/sub"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("proc/kcore"), b"").unwrap();
    std::fs::create_dir_all(base.path().join("data")).unwrap();
    std::fs::write(base.path().join("file"), b"x").unwrap();
    base
}

fn spec_at(base: &Path, json: serde_json::Value) -> Spec {
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": base.join("rootfs")},
        "process": {"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}},
    });
    if let (Some(v), serde_json::Value::Object(more)) = (v.as_object_mut(), json) {
        v.extend(more);
    }
    serde_json::from_value(v).unwrap()
}

fn flags(f: MsFlags) -> String {
    let names: Vec<&str> = f
        .iter_names()
        .map(|(n, _)| n.trim_start_matches("MS_"))
        .collect();
    names.join("|")
}

/// One line per call, short enough to read a whole sequence in a test.
fn line(c: &Call) -> String {
    let p = |p: &Path| p.display().to_string();
    match c {
        Call::Mount {
            source,
            target,
            fstype,
            flags: f,
            data,
        } => {
            let mut s = format!(
                "mount {} {} {} {}",
                source.as_deref().map(p).unwrap_or("-".into()),
                p(target),
                fstype.as_deref().unwrap_or("-"),
                flags(*f)
            );
            if let Some(d) = data {
                s += &format!(" {d}");
            }
            s
        }
        Call::Umount2 { target, .. } => format!("umount2 {}", p(target)),
        Call::PivotRoot { new_root, put_old } => {
            format!("pivot_root {} {}", p(new_root), p(put_old))
        }
        Call::Chdir(d) => format!("chdir {}", p(d)),
        Call::Chroot(d) => format!("chroot {}", p(d)),
        Call::Mknod {
            path, mode, dev, ..
        } => format!(
            "mknod {} {:o} {}:{}",
            p(path),
            mode.bits(),
            nix::sys::stat::major(*dev),
            nix::sys::stat::minor(*dev)
        ),
        Call::Chmod { path, mode } => format!("chmod {} {:o}", p(path), mode.bits()),
        Call::Symlink { target, link } => format!("symlink {} -> {}", p(link), p(target)),
        other => format!("{other:?}"),
    }
}

fn record(sys: &Recorder, spec: &Spec, switch: RootSwitch) -> Vec<String> {
    setup_container_rootfs(sys, spec, None, switch).unwrap();
    sys.calls()
        .iter()
        .map(line)
        // The /dev links are the same for every spec (asserted once).
        .filter(|l| !l.starts_with("symlink "))
        .collect()
}

const DEV_LINKS: &[&str] = &[
    "symlink /rootfs/dev/fd -> /proc/self/fd",
    "symlink /rootfs/dev/stdin -> /proc/self/fd/0",
    "symlink /rootfs/dev/stdout -> /proc/self/fd/1",
    "symlink /rootfs/dev/stderr -> /proc/self/fd/2",
    "symlink /rootfs/dev/ptmx -> pts/ptmx",
    "symlink /rootfs/dev/core -> /proc/kcore",
];

#[test]
fn default_minirt_spec_mounts_then_devices_then_pivot_then_masks() {
    let base = host();
    std::fs::write(base.path().join("hosts"), b"").unwrap();
    let etc = crate::container::spec::EtcFiles {
        hosts: base.path().join("hosts"),
        resolv_conf: base.path().join("hosts"),
        hostname: base.path().join("hosts"),
    };
    let cfg = crate::container::ContainerConfig {
        args: vec!["true".into()],
        ..Default::default()
    };
    let spec =
        crate::container::spec::build(&cfg, &base.path().join("rootfs"), Some(&etc), "/minirt/x")
            .unwrap();
    let sys = Recorder::new(base.path());
    setup_container_rootfs(&sys, &spec, None, RootSwitch::Pivot).unwrap();
    let all: Vec<String> = sys.calls().iter().map(line).collect();
    let links: Vec<&str> = all
        .iter()
        .filter(|l| l.starts_with("symlink "))
        .map(String::as_str)
        .collect();
    assert_eq!(links, DEV_LINKS);
    let got: Vec<&str> = all
        .iter()
        .filter(|l| !l.starts_with("symlink "))
        .map(String::as_str)
        .collect();
    let want = [
        "mount - / - REC|PRIVATE",
        "mount /rootfs /rootfs - BIND|REC",
        "mount proc /rootfs/proc proc NOSUID|NODEV|NOEXEC",
        "mount tmpfs /rootfs/dev tmpfs NOSUID|STRICTATIME mode=755,size=65536k",
        "mount devpts /rootfs/dev/pts devpts NOSUID|NOEXEC newinstance,ptmxmode=0666,mode=0620,gid=5",
        "mount shm /rootfs/dev/shm tmpfs NOSUID|NODEV|NOEXEC mode=1777,size=65536k",
        "mount mqueue /rootfs/dev/mqueue mqueue NOSUID|NODEV|NOEXEC",
        "mount sysfs /rootfs/sys sysfs RDONLY|NOSUID|NODEV|NOEXEC",
        // rprivate under an rprivate `/`: no propagation call.
        "mount /hosts /rootfs/etc/hosts - BIND|REC",
        "mount /hosts /rootfs/etc/resolv.conf - BIND|REC",
        "mount /hosts /rootfs/etc/hostname - BIND|REC",
        "mknod /rootfs/dev/null 666 1:3",
        "chmod /rootfs/dev/null 666",
        "mknod /rootfs/dev/zero 666 1:5",
        "chmod /rootfs/dev/zero 666",
        "mknod /rootfs/dev/full 666 1:7",
        "chmod /rootfs/dev/full 666",
        "mknod /rootfs/dev/random 666 1:8",
        "chmod /rootfs/dev/random 666",
        "mknod /rootfs/dev/urandom 666 1:9",
        "chmod /rootfs/dev/urandom 666",
        "mknod /rootfs/dev/tty 666 5:0",
        "chmod /rootfs/dev/tty 666",
        "chdir /rootfs",
        "pivot_root . .",
        "umount2 .",
        "chdir /",
        // Masks and read-only paths after the pivot; those the root
        // lacks are skipped.
        "mount tmpfs /proc/acpi tmpfs RDONLY",
        "mount /dev/null /proc/kcore - BIND",
        "mount /proc/sys /proc/sys - BIND|REC",
        "mount - /proc/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND",
    ];
    assert_eq!(got, want);
}

#[test]
fn binds_get_their_readonly_remount_and_propagation_right_after_them() {
    let base = host();
    let b = base.path();
    let spec = spec_at(
        b,
        serde_json::json!({
            "mounts": [
                {"destination": "/data", "type": "bind", "source": b.join("data"),
                 "options": ["rbind", "rw", "rslave"]},
                {"destination": "/ro", "type": "none", "source": b.join("data"),
                 "options": ["bind", "ro", "nosuid", "shared"]},
                {"destination": "/etc/file", "type": "bind", "source": b.join("file"),
                 "options": ["bind", "ro"]},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                 "options": ["ro", "nodev", "size=1m", "private"]},
            ],
            "linux": {"rootfsPropagation": "rslave"},
        }),
    );
    let sys = Recorder::new(b);
    let got = record(&sys, &spec, RootSwitch::Pivot);
    assert_eq!(
        got,
        [
            "mount - / - REC|SLAVE",
            "mount /rootfs /rootfs - BIND|REC",
            "mount /data /rootfs/data - BIND|REC",
            "mount - /rootfs/data - REC|SLAVE",
            "mount /data /rootfs/ro - NOSUID|BIND",
            "mount - /rootfs/ro - RDONLY|NOSUID|REMOUNT|BIND",
            "mount - /rootfs/ro - SHARED",
            "mount /file /rootfs/etc/file - BIND",
            "mount - /rootfs/etc/file - RDONLY|REMOUNT|BIND",
            "mount tmpfs /rootfs/run tmpfs RDONLY|NODEV size=1m",
            "mount - /rootfs/run - PRIVATE",
            "chdir /rootfs",
            "pivot_root . .",
            "umount2 .",
            "chdir /",
        ]
    );
    // The file bind's target was made as a file, the others as directories.
    assert!(b.join("rootfs/etc/file").is_file());
    assert!(b.join("rootfs/ro").is_dir());
}

#[test]
fn masks_and_readonly_paths_come_after_the_pivot_and_before_a_readonly_root() {
    let base = host();
    let b = base.path();
    let mut spec = spec_at(
        b,
        serde_json::json!({
            "linux": {
                "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/missing"],
                "readonlyPaths": ["/proc/sys", "/proc/nothing"],
            },
        }),
    );
    if let Some(r) = spec.root_mut() {
        r.set_readonly(Some(true));
    }
    let sys = Recorder::new(b);
    let got = record(&sys, &spec, RootSwitch::Pivot);
    let after_pivot: Vec<&str> = got
        .iter()
        .skip_while(|l| *l != "chdir /")
        .skip(1)
        .map(String::as_str)
        .collect();
    let last = after_pivot.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("mount - / - RDONLY") && last.ends_with("REMOUNT|BIND"),
        "{last}"
    );
    assert_eq!(
        &after_pivot[..after_pivot.len() - 1],
        [
            "mount /dev/null /proc/kcore - BIND",
            "mount tmpfs /proc/acpi tmpfs RDONLY",
            "mount /proc/sys /proc/sys - BIND|REC",
            "mount - /proc/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND",
        ]
    );
}

#[test]
fn devices_are_made_in_place_or_bound_from_the_host_when_mknod_is_refused() {
    let base = host();
    let b = base.path();
    let spec = spec_at(
        b,
        serde_json::json!({
            "linux": {"devices": [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620},
                {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
            ]},
        }),
    );
    let sys = Recorder::new(b);
    let got = record(&sys, &spec, RootSwitch::Pivot);
    assert_eq!(
        got[2..6],
        [
            "mknod /rootfs/dev/fuse 620 10:229",
            "chmod /rootfs/dev/fuse 620",
            "mknod /rootfs/dev/sda 666 8:0",
            "chmod /rootfs/dev/sda 666",
        ]
    );
    let kinds: Vec<SFlag> = sys
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Mknod { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [SFlag::S_IFCHR, SFlag::S_IFBLK]);

    // Where mknod is refused (a nodev mount, no CAP_MKNOD): an empty
    // file with the host's node bound over it.
    let base = host();
    let b = base.path();
    let spec = spec_at(
        b,
        serde_json::json!({
            "linux": {"devices": [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            ]},
        }),
    );
    let sys = Recorder::new(b).failing(|c| match c {
        Call::Mknod { .. } => Some(Errno::EPERM),
        _ => None,
    });
    let got = record(&sys, &spec, RootSwitch::Pivot);
    assert_eq!(
        got[2..4],
        [
            "mknod /rootfs/dev/fuse 666 10:229",
            "mount /dev/fuse /rootfs/dev/fuse - BIND",
        ]
    );
    assert!(b.join("rootfs/dev/fuse").is_file());
}

#[test]
fn no_pivot_moves_the_root_over_slash_and_chroots() {
    let base = host();
    let b = base.path();
    let spec = spec_at(
        b,
        serde_json::json!({"linux": {"maskedPaths": ["/proc/kcore"]}}),
    );
    let sys = Recorder::new(b);
    let got = record(&sys, &spec, RootSwitch::Move);
    assert_eq!(
        got,
        [
            "mount - / - REC|PRIVATE",
            "mount /rootfs /rootfs - BIND|REC",
            "chdir /rootfs",
            "mount /rootfs / - MOVE",
            "chroot .",
            "chdir /",
            // The mask lands inside the new root.
            "mount /dev/null /proc/kcore - BIND",
        ]
    );
}

#[test]
fn a_failed_mount_stops_the_sequence_with_its_name() {
    let base = host();
    let b = base.path();
    let spec = spec_at(
        b,
        serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
        ]}),
    );
    let sys = Recorder::new(b).failing(|c| match c {
        Call::Mount {
            fstype: Some(t), ..
        } if t == "proc" => Some(Errno::EPERM),
        _ => None,
    });
    let e = setup_container_rootfs(&sys, &spec, None, RootSwitch::Pivot).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mounting proc on /proc: EPERM: Operation not permitted"
    );
    assert!(!sys
        .calls()
        .iter()
        .any(|c| matches!(c, Call::PivotRoot { .. })));
}

#[test]
fn propagation_options_and_the_root_propagation() {
    assert_eq!(
        propagation("rshared"),
        Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
    );
    assert_eq!(propagation("slave"), Some(MsFlags::MS_SLAVE));
    assert_eq!(
        propagation("runbindable"),
        Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)
    );
    for o in ["ro", "rw", "rbind", "relatime", "bind"] {
        assert_eq!(propagation(o), None, "{o}");
    }
    let base = host();
    let with = |p: &str| {
        spec_at(
            base.path(),
            serde_json::json!({"linux": {"rootfsPropagation": p}}),
        )
    };
    assert_eq!(root_propagation(&with("private")), Ok(MsFlags::MS_PRIVATE));
    let e = root_propagation(&with("rshared")).unwrap_err();
    assert!(
        e.starts_with("not implemented: linux.rootfsPropagation \"rshared\""),
        "{e}"
    );
}

#[test]
fn base_layer_is_made_once_with_its_mount_points() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base-layer");
    ensure_base_layer(&base).unwrap();
    for d in BASE_DIRS {
        assert!(base.join(d).is_dir(), "{d}");
    }
    for f in BASE_FILES {
        assert_eq!(std::fs::read(base.join(f)).unwrap(), b"", "{f}");
    }
    // Again: nothing changes, and no build directory is left beside it.
    let before = std::fs::metadata(base.join("etc/hosts"))
        .unwrap()
        .modified()
        .unwrap();
    ensure_base_layer(&base).unwrap();
    let after = std::fs::metadata(base.join("etc/hosts"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("base-layer")]);
}

#[test]
fn system_mount_points_refuse_links_and_volumes_follow_them_inside() {
    for (dest, typ) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/dev/snd", "bind"),
        ("/x/../proc/sys", "bind"),
        ("/anywhere", "proc"),
    ] {
        assert_eq!(links_for(Path::new(dest), typ), Links::Refuse, "{dest}");
    }
    for (dest, typ) in [
        ("/etc/hosts", "bind"),
        ("/data", "bind"),
        ("/devices", "bind"),
        ("/run", "tmpfs"),
    ] {
        assert_eq!(links_for(Path::new(dest), typ), Links::InRoot, "{dest}");
    }
}

#[test]
fn options_split_into_flags_and_data() {
    let opts: Vec<String> = ["nosuid", "noexec", "mode=755", "size=65536k", "ro"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (flags, data, ro) = parse_options(&opts);
    assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
    assert_eq!(data, vec!["mode=755", "size=65536k"]);
    assert!(ro);
}

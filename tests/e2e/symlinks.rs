//! Hostile images whose mount points and files are symlinks out of the root:
//! each path minirt prepares in a container's root (/proc, /sys, /dev and its
//! entries, /etc/hosts, /etc/resolv.conf, /etc/hostname, volume
//! destinations, the working directory) is made, in turn, a link to a canary
//! outside: absolute, relative (`../../..`), and through a chain longer than
//! the kernel's 40 hops. The canary stays untouched whatever happens, and the
//! start either works inside the root or is refused with one line.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The busybox image's only layer, from the bundled `docker save` archive.
fn busybox_layer() -> Vec<u8> {
    let tar = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("images/busybox.tar"))
        .expect("bundled busybox");
    let mut outer = tar::Archive::new(&tar[..]);
    for e in outer.entries().expect("busybox archive") {
        let mut e = e.expect("entry");
        if e.path().expect("path").ends_with("layer.tar") {
            let mut b = vec![];
            e.read_to_end(&mut b).expect("layer");
            return b;
        }
    }
    panic!("no layer in the bundled busybox archive");
}

/// How the image's path leads to the canary.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `path -> /abs/canary`
    Absolute,
    /// `path -> ../../../../abs/canary`
    Relative,
    /// `path -> .c1 -> .c2 -> ... -> .c41 -> /abs/canary/planted`: past the
    /// kernel's limit, where a resolver that gives up hands the last link
    /// to the kernel (which follows it on the host).
    Chain,
}

const VIAS: [Via; 3] = [Via::Absolute, Via::Relative, Via::Chain];

/// A canary outside every root: a directory with a file, recorded whole.
struct Canary {
    dir: PathBuf,
}

impl Canary {
    fn new(h: &TestHost) -> Canary {
        let dir = h.root.parent().expect("test dir").join("canary");
        std::fs::create_dir_all(&dir).expect("canary dir");
        std::fs::write(dir.join("file"), "canary\n").expect("canary file");
        std::fs::set_permissions(dir.join("file"), std::fs::Permissions::from_mode(0o600))
            .expect("canary mode");
        Canary { dir }
    }

    /// Every entry below the canary: kind, mode, size, content.
    fn state(&self) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let meta = std::fs::symlink_metadata(&d).expect("canary entry");
            let content = if meta.is_file() {
                std::fs::read(&d).unwrap_or_default()
            } else {
                vec![]
            };
            out.insert(d.display().to_string(), (meta.mode(), meta.len(), content));
            if meta.is_dir() {
                for e in std::fs::read_dir(&d).expect("canary listing").flatten() {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    /// What the link points at: the directory, or the file in it.
    fn target(&self, file: bool) -> PathBuf {
        if file {
            self.dir.join("file")
        } else {
            self.dir.clone()
        }
    }
}

/// Imports busybox with `path` (relative to the root, e.g. "etc/hosts")
/// replaced by a link to `target` the way `via` says; returns the image name.
fn hostile_image(h: &TestHost, tag: &str, path: &str, target: &Path, via: Via) -> String {
    let base = h
        .root
        .parent()
        .expect("test dir")
        .join(format!("img-{tag}"));
    let tree = base.join("tree");
    std::fs::create_dir_all(&tree).expect("image tree");
    tar::Archive::new(&busybox_layer()[..])
        .unpack(&tree)
        .expect("unpack busybox");
    let link = tree.join(path);
    std::fs::create_dir_all(link.parent().expect("parent")).expect("link parent");
    if let Ok(m) = std::fs::symlink_metadata(&link) {
        if m.is_dir() {
            std::fs::remove_dir_all(&link).expect("remove dir");
        } else {
            std::fs::remove_file(&link).expect("remove file");
        }
    }
    let abs = target.to_string_lossy().to_string();
    match via {
        Via::Absolute => std::os::unix::fs::symlink(&abs, &link).expect("link"),
        Via::Relative => {
            let up = "../".repeat(40);
            std::os::unix::fs::symlink(format!("{up}{}", abs.trim_start_matches('/')), &link)
                .expect("link")
        }
        Via::Chain => {
            let dir = link.parent().expect("parent");
            let hops = 41;
            std::os::unix::fs::symlink(".c1", &link).expect("link");
            for i in 1..hops {
                std::os::unix::fs::symlink(format!(".c{}", i + 1), dir.join(format!(".c{i}")))
                    .expect("chain link");
            }
            let planted = target
                .parent()
                .filter(|_| target.is_file())
                .unwrap_or(target)
                .join("planted");
            std::os::unix::fs::symlink(&planted, dir.join(format!(".c{hops}"))).expect("last link");
        }
    }
    let archive = base.join("image.tar");
    let o = cmd(
        "tar",
        &[
            "-C",
            tree.to_str().expect("utf-8"),
            "-cf",
            archive.to_str().expect("utf-8"),
            ".",
        ],
    );
    assert!(o.status.success(), "tar: {}", stderr(&o));
    let name = format!("evil-{tag}:latest");
    h.ok(&["import", archive.to_str().expect("utf-8"), &name]);
    let _ = std::fs::remove_dir_all(&tree);
    name
}

/// Mount points anywhere on the host that name the canary.
fn host_mounts_on(dir: &Path) -> Vec<String> {
    mounts_under(dir)
}

/// What a start with the hostile `path` did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ran,
    Refused,
}

/// Runs `args` (after `run --rm --net none`) on an image whose `path` is a
/// link to the canary, for each way of linking; checks that nothing outside
/// the root changed and that a refusal is one line with exit 125. Returns
/// the outcome per way, with the refusal lines.
fn attack(
    h: &TestHost,
    canary: &Canary,
    path: &str,
    file: bool,
    flags: &[&str],
    cmdline: &[&str],
) -> Vec<(Outcome, String)> {
    let mut out = vec![];
    for via in VIAS {
        let before = canary.state();
        let tag = format!("{}-{via:?}", path.replace('/', "-")).to_lowercase();
        let image = hostile_image(h, &tag, path, &canary.target(file), via);
        let mut args = vec!["run", "--rm", "--net", "none"];
        args.extend_from_slice(flags);
        args.push(&image);
        args.extend_from_slice(cmdline);
        let o = h.minirt(&args);
        assert_eq!(
            canary.state(),
            before,
            "{path} via {via:?} changed the canary (exit {:?}, stderr {})",
            o.status.code(),
            stderr(&o)
        );
        assert!(
            host_mounts_on(&canary.dir).is_empty(),
            "{path} via {via:?} left a mount on the canary"
        );
        let code = o.status.code().unwrap_or(-1);
        if code == 0 {
            out.push((Outcome::Ran, stdout(&o)));
        } else {
            assert_eq!(code, 125, "{path} via {via:?}: {}", stderr(&o));
            let line = one_line(&stderr(&o));
            out.push((Outcome::Refused, line));
        }
        h.ok(&["rmi", &image]);
        assert_eq!(h.ok(&["ps", "-aq"]).trim(), "", "containers left");
        assert!(h.mounts().is_empty(), "mounts left: {:?}", h.mounts());
        assert!(h.cgroups().is_empty(), "cgroups left: {:?}", h.cgroups());
    }
    out
}

fn assert_all_refused(results: &[(Outcome, String)], path: &str, why: &str) {
    for (i, (outcome, line)) in results.iter().enumerate() {
        assert_eq!(
            *outcome,
            Outcome::Refused,
            "{path} via {:?}: {line}",
            VIAS[i]
        );
        assert!(
            line.contains(&format!("\"/{path}\"")) || line.contains(path),
            "{path}: the refusal names the path: {line}"
        );
        assert!(
            line.contains(why) || line.contains("symlink"),
            "{path}: {line}"
        );
    }
}

#[test]
fn proc_sys_and_dev_must_be_plain_directories() {
    let h = TestHost::new();
    let canary = Canary::new(&h);
    for path in ["dev", "proc", "sys"] {
        let r = attack(&h, &canary, path, false, &[], &["true"]);
        assert_all_refused(&r, path, "symlink");
    }
}

#[test]
fn entries_of_dev_in_the_image_are_hidden_by_its_tmpfs() {
    let h = TestHost::new();
    let canary = Canary::new(&h);
    for (path, file) in [
        ("dev/pts", false),
        ("dev/shm", false),
        ("dev/mqueue", false),
        ("dev/null", true),
        ("dev/fd", false),
    ] {
        let r = attack(
            &h,
            &canary,
            path,
            file,
            &[],
            &[
                "sh",
                "-c",
                "echo x > /dev/shm/t && echo x > /dev/null && ls /dev/pts/ptmx",
            ],
        );
        for (i, (outcome, out)) in r.iter().enumerate() {
            assert_eq!(*outcome, Outcome::Ran, "{path} via {:?}: {out}", VIAS[i]);
            assert_eq!(out, "/dev/pts/ptmx\n");
        }
    }
}

#[test]
fn etc_files_never_lead_outside() {
    let h = TestHost::new();
    let canary = Canary::new(&h);
    for (path, file) in [
        ("etc/hosts", true),
        ("etc/resolv.conf", true),
        ("etc/hostname", true),
        ("etc", false),
    ] {
        let r = attack(&h, &canary, path, file, &[], &["cat", "/etc/hosts"]);
        // The link's target does not exist inside the root: refused (a
        // dangling link is not followed into creating its target), one line.
        assert_all_refused(&r, path, "missing path");
    }
}

#[test]
fn volume_destinations_and_the_working_directory_never_lead_outside() {
    let h = TestHost::new();
    let canary = Canary::new(&h);
    let src = h.root.parent().expect("test dir").join("vol");
    std::fs::create_dir_all(&src).expect("volume dir");
    std::fs::write(src.join("in-volume"), "v\n").expect("volume file");
    let vol = format!("{}:/data", src.display());
    let r = attack(&h, &canary, "data", false, &["-v", &vol], &["ls", "/data"]);
    assert_all_refused(&r, "data", "missing path");
    let file_vol = format!("{}:/data", src.join("in-volume").display());
    let r = attack(
        &h,
        &canary,
        "data",
        true,
        &["-v", &file_vol],
        &["cat", "/data"],
    );
    assert_all_refused(&r, "data", "missing path");
    let r = attack(&h, &canary, "wd", false, &["-w", "/wd/sub"], &["pwd"]);
    assert_all_refused(&r, "wd", "missing path");
    // The volume's own files are untouched too.
    let names: Vec<_> = std::fs::read_dir(&src)
        .expect("volume listing")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["in-volume"]);
}

/// Links that stay inside the image are followed inside the root, as
/// Docker does: the volume, the /etc files and the working directory land
/// where the link points within the container.
#[test]
fn links_inside_the_root_are_followed_inside_it() {
    let h = TestHost::new();
    let base = h.root.parent().expect("test dir").to_path_buf();
    let tree = base.join("inside-tree");
    std::fs::create_dir_all(&tree).expect("tree");
    tar::Archive::new(&busybox_layer()[..])
        .unpack(&tree)
        .expect("unpack busybox");
    std::fs::create_dir_all(tree.join("srv/data")).expect("srv");
    std::fs::create_dir_all(tree.join("srv/work")).expect("work");
    // Absolute (resolved from the container's root, not the host's) and
    // relative past the top (`..` stops at the root).
    std::os::unix::fs::symlink("/srv/data", tree.join("data")).expect("link");
    std::os::unix::fs::symlink("../../../../srv/work", tree.join("wd")).expect("link");
    std::os::unix::fs::symlink("/srv/hosts", tree.join("etc/hosts")).expect("link");
    std::fs::write(tree.join("srv/hosts"), "").expect("hosts");
    let archive = base.join("inside.tar");
    let o = cmd(
        "tar",
        &[
            "-C",
            tree.to_str().expect("utf-8"),
            "-cf",
            archive.to_str().expect("utf-8"),
            ".",
        ],
    );
    assert!(o.status.success(), "tar: {}", stderr(&o));
    h.ok(&["import", archive.to_str().expect("utf-8"), "inside:latest"]);
    let src = base.join("vol");
    std::fs::create_dir_all(&src).expect("volume dir");
    std::fs::write(src.join("hello"), "from the volume\n").expect("volume file");
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        &format!("{}:/data", src.display()),
        "-w",
        "/wd",
        "inside",
        "sh",
        "-c",
        "cat /srv/data/hello; pwd -P; grep -c localhost /srv/hosts",
    ]);
    // minirt's /etc/hosts is bound where the image's link points.
    assert_eq!(out, "from the volume\n/srv/work\n2\n");
}

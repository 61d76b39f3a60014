//! Exhaustion and limits: a full port range, full address pools, names at
//! their length limits and a state root that fills up; each is one clear
//! error and leaves exactly the state that was there before.

use crate::common::*;
use std::path::{Path, PathBuf};

/// Everything minirt can leave behind, in a comparable form.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    links: Vec<String>,
    ruleset: String,
    rows: Vec<(String, i64)>,
    mounts: Vec<String>,
    cgroups: Vec<PathBuf>,
}

pub const TABLES: [&str; 7] = [
    "images",
    "image_tags",
    "layers",
    "containers",
    "networks",
    "endpoints",
    "port_bindings",
];

/// Rows per table of the instance database (0 for a table or db not there).
pub fn row_counts(root: &Path) -> Vec<(String, i64)> {
    let db = root.join("minirt.db");
    let conn = db
        .exists()
        .then(|| {
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()
        })
        .flatten();
    TABLES
        .iter()
        .map(|t| {
            let n = conn
                .as_ref()
                .and_then(|c| {
                    c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                        .ok()
                })
                .unwrap_or(0);
            (t.to_string(), n)
        })
        .collect()
}

pub fn ruleset(h: &TestHost) -> String {
    stdout(&h.in_ns("nft", &["list", "ruleset"]))
}

pub fn snapshot(h: &TestHost) -> Snapshot {
    let mut cgroups = h.cgroups();
    cgroups.sort();
    Snapshot {
        links: links(h),
        ruleset: ruleset(h),
        rows: row_counts(&h.root),
        mounts: h.mounts(),
        cgroups,
    }
}

/// (full id prefix, name, ports) of every container, from `ps -a --format json`.
fn ps_rows(h: &TestHost) -> Vec<(String, String, String)> {
    h.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("ps json line");
            let f = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (f("ID"), f("Names"), f("Ports"))
        })
        .collect()
}

fn ports_of(h: &TestHost, name: &str) -> String {
    ps_rows(h)
        .into_iter()
        .find(|r| r.1 == name)
        .map(|r| r.2)
        .unwrap_or_default()
}

/// Runs minirt with extra environment; returns (exit code, stdout, stderr).
fn minirt_env(h: &TestHost, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = h.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run minirt");
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

#[test]
fn no_free_host_port_in_a_narrowed_range() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "pnet"]);
    let range = [("MINIRT_PORT_RANGE", "40000-40001")];
    let mut ports = vec![];
    for name in ["p1", "p2"] {
        let (code, _, err) = minirt_env(
            &h,
            &range,
            &[
                "run", "-d", "--name", name, "--net", "pnet", "-p", "80", "busybox", "sleep", "600",
            ],
        );
        assert_eq!(code, 0, "{err}");
        ports.push(ports_of(&h, name));
    }
    ports.sort();
    assert_eq!(
        ports,
        ["0.0.0.0:40000->80/tcp", "0.0.0.0:40001->80/tcp"],
        "{ports:?}"
    );
    let before = snapshot(&h);
    let (code, _, err) = minirt_env(
        &h,
        &range,
        &[
            "run", "-d", "--name", "p3", "--net", "pnet", "-p", "80", "busybox", "sleep", "600",
        ],
    );
    assert_eq!(code, 125);
    let line = one_line(&err);
    assert_eq!(
        line,
        "minirt: no free tcp host port left in 40000-40001 to publish 80"
    );
    assert_eq!(snapshot(&h), before, "the refused run left something");
    // The name is still free, and UDP has its own ports.
    let (code, _, err) = minirt_env(
        &h,
        &range,
        &[
            "run", "-d", "--name", "p3", "--net", "pnet", "-p", "80/udp", "busybox", "sleep", "600",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(ports_of(&h, "p3"), "0.0.0.0:40000->80/udp");
    // A bad range is one clear line too.
    let (code, _, err) = minirt_env(
        &h,
        &[("MINIRT_PORT_RANGE", "9-3")],
        &[
            "run", "--rm", "--net", "pnet", "-p", "80", "busybox", "true",
        ],
    );
    assert_eq!(code, 125);
    assert!(
        one_line(&err).starts_with("minirt: invalid MINIRT_PORT_RANGE \"9-3\""),
        "{err}"
    );
    eprintln!("figure: 2-port range exhausted after 2 containers; 3rd refused, state unchanged");
    h.ok(&["rm", "-f", "p1", "p2", "p3"]);
}

#[test]
fn no_free_subnet_after_the_31_pool_subnets() {
    let h = TestHost::new();
    let start = std::time::Instant::now();
    let mut subnets = vec![];
    for i in 0..31 {
        let name = format!("pool{i}");
        h.ok(&["network", "create", &name]);
        let v: serde_json::Value =
            serde_json::from_str(&h.ok(&["network", "inspect", &name])).expect("inspect json");
        subnets.push(
            v[0]["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    let mut want: Vec<String> = (17..=31).map(|b| format!("172.{b}.0.0/16")).collect();
    want.extend((0..16).map(|i| format!("192.168.{}.0/20", i * 16)));
    assert_eq!(subnets, want);
    let before = snapshot(&h);
    // `network` commands exit 1 on errors, as Docker's do.
    let (code, err) = h.fails(&["network", "create", "one-too-many"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "minirt: no free subnet left in the default address pools: give one with --subnet"
    );
    assert_eq!(snapshot(&h), before, "the refused create left something");
    // An explicit subnet outside the pools still works.
    h.ok(&["network", "create", "--subnet", "10.77.0.0/24", "explicit"]);
    eprintln!(
        "figure: 31 pool subnets allocated in {:?}, the 32nd create refused cleanly",
        start.elapsed()
    );
    h.ok(&["network", "prune", "-f"]);
    let after = snapshot(&h);
    assert!(
        after.links.iter().all(|l| l == "lo"),
        "devices left after prune: {:?}",
        after.links
    );
    assert!(
        after
            .rows
            .iter()
            .all(|(t, n)| *n == 0 || t == "images" || t == "image_tags" || t == "layers"),
        "{:?}",
        after.rows
    );
}

#[test]
fn names_at_the_length_limits() {
    let h = TestHost::new();
    // Network names: 64 characters work, 65 do not.
    let net64 = format!("n{}", "e".repeat(63));
    h.ok(&["network", "create", "--subnet", "10.90.0.0/24", &net64]);
    let before = snapshot(&h);
    let net65 = format!("n{}", "e".repeat(64));
    let (code, err) = h.fails(&["network", "create", "--subnet", "10.91.0.0/24", &net65]);
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("longer than 64 characters"),
        "{err}"
    );
    assert_eq!(snapshot(&h), before);

    // Container names: 128 characters work, 129 do not; derived names stay valid.
    let c128 = format!("c{}", "x".repeat(127));
    h.ok(&[
        "run", "-d", "--name", &c128, "--net", &net64, "-p", "8080:80", "busybox", "sleep", "600",
    ]);
    let rows = ps_rows(&h);
    assert_eq!(rows.len(), 1);
    let (id, name) = (&rows[0].0, &rows[0].1);
    assert_eq!(name, &c128);
    // The hostname defaults to the short id, never the (too long) name.
    let host = h.ok(&["exec", &c128, "hostname"]);
    assert_eq!(host.trim(), &id[..12]);
    for l in links(&h) {
        assert!(l.len() <= 15, "device name {l:?} longer than IFNAMSIZ");
    }
    let before = snapshot(&h);
    let c129 = format!("c{}", "x".repeat(128));
    let (code, err) = h.fails(&[
        "run", "-d", "--name", &c129, "--net", &net64, "busybox", "sleep", "600",
    ]);
    assert_eq!(code, 125);
    assert!(
        one_line(&err).contains("longer than 128 characters"),
        "{err}"
    );
    assert_eq!(snapshot(&h), before);
    // A 128-character name cannot be a DNS label (63 at most): the network's
    // DNS still answers for the container's short id, and the run works.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        &net64,
        "busybox",
        "nslookup",
        "-type=a",
        &id[..12],
    ]);
    assert!(out.contains("10.90.0.2"), "{out}");
    h.ok(&["rm", "-f", &c128]);
    h.ok(&["network", "rm", &net64]);
    eprintln!("figure: names of 64 (network) and 128 (container) accepted, 65 and 129 refused");
}

/// A 1 MiB tmpfs mounted on the test host's root, unmounted on drop.
struct TinyRoot(PathBuf);

impl TinyRoot {
    fn mount(at: &Path) -> TinyRoot {
        std::fs::create_dir_all(at).expect("mkdir root");
        let o = cmd(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "minirt-tiny",
                at.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "mount tmpfs: {}", stderr(&o));
        TinyRoot(at.to_path_buf())
    }
}

impl Drop for TinyRoot {
    fn drop(&mut self) {
        let _ = cmd("umount", &["-l", self.0.to_str().unwrap_or("")]);
    }
}

#[test]
fn a_root_that_fills_during_layer_extraction() {
    let h = TestHost::new();
    let _tiny = TinyRoot::mount(&h.root);
    let (code, err) = h.fails(&["run", "--rm", "--net", "none", "busybox", "true"]);
    assert_eq!(code, 125);
    let line = one_line(&err);
    assert!(
        line.starts_with("minirt: cannot store image layers in ")
            && line.ends_with("No space left on device (os error 28)"),
        "{line}"
    );
    // Nothing partial: no layer dir or temp, no row, no mount, no cgroup.
    let layers: Vec<String> = std::fs::read_dir(h.root.join("layers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(layers.is_empty(), "left in the layer store: {layers:?}");
    assert!(
        !h.root.join("containers").exists()
            || std::fs::read_dir(h.root.join("containers"))
                .map(|mut rd| rd.next().is_none())
                .unwrap_or(true),
        "a container dir was left"
    );
    assert!(row_counts(&h.root).iter().all(|(_, n)| *n == 0));
    assert_eq!(h.mounts(), vec![h.root.to_string_lossy().into_owned()]);
    assert!(h.cgroups().is_empty(), "{:?}", h.cgroups());
    // A gzipped archive fills the root while being decompressed: same story.
    let gz = h.root.parent().unwrap().join("busybox.tar.gz");
    {
        use std::io::Write;
        let raw = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("images/busybox.tar"))
            .expect("bundled image");
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).expect("gz file"),
            flate2::Compression::fast(),
        );
        e.write_all(&raw).expect("gzip");
        e.finish().expect("gzip end");
    }
    let (code, err) = h.fails(&["load", "-i", gz.to_str().unwrap()]);
    assert_eq!(code, 125);
    let gz_line = one_line(&err);
    assert!(
        gz_line.starts_with("minirt: cannot store image layers in ")
            && gz_line.ends_with("No space left on device (os error 28)"),
        "{gz_line}"
    );
    let left: Vec<String> = std::fs::read_dir(h.root.join("layers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the layer store: {left:?}");
    assert!(row_counts(&h.root).iter().all(|(_, n)| *n == 0));
    let used = cmd("df", &["--output=used", "-B1", h.root.to_str().unwrap()]);
    eprintln!(
        "figure: 1 MiB root filled during extraction: {line:?}; bytes used after: {}",
        stdout(&used).lines().nth(1).unwrap_or("?").trim()
    );
}

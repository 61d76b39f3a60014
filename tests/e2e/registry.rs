//! Pulling from a real registry (Debian's docker-registry on the test
//! host's loopback): plain HTTP marked insecure, TLS with a private CA and
//! Basic auth with `login`, token auth, a mirror for docker.io short names,
//! a multi-platform index, and bad inputs that must each give one clear
//! line, exit 125 and leave nothing behind.

use crate::common::{layer_entries, one_line, stderr, stdout, wait_for, TestHost};
use crate::registry_server::{
    build_layout, marker_image, multi_layer_image, tar_of, Auth, Comp, Entry, Layer, Registry,
    TestImage, PASSWORD, USER,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The client-side files a test points minirt at.
pub struct Client<'a> {
    pub h: &'a TestHost,
    pub conf: PathBuf,
    pub certs: PathBuf,
    pub docker_config: PathBuf,
}

impl<'a> Client<'a> {
    pub fn new(h: &'a TestHost, conf: &str, certs: Option<&Path>) -> Client<'a> {
        let base = h.root.parent().unwrap().join("client");
        std::fs::create_dir_all(&base).unwrap();
        let conf_path = base.join("registries.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let certs = certs
            .map(Path::to_path_buf)
            .unwrap_or(base.join("no-certs"));
        Client {
            h,
            conf: conf_path,
            certs,
            docker_config: base.join("docker"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.h
            .command(args)
            .env("MINIRT_REGISTRIES_CONF", &self.conf)
            .env("MINIRT_CERTS_D", &self.certs)
            .env("DOCKER_CONFIG", &self.docker_config)
            .output()
            .expect("run minirt")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "minirt {args:?} failed: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Asserts the Docker-style failure: exit 125 and one line on stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(125),
            "minirt {args:?}: {}",
            stderr(&o)
        );
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = lines.last().copied().unwrap_or_default().to_string();
        assert!(last.starts_with("minirt: "), "{err}");
        // Progress lines may precede the error; the error itself is one line.
        assert_eq!(one_line(&last), last);
        last
    }
}

pub const INSECURE_LOCAL: &str = "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n";

/// Nothing half-made: no temp dirs in the layer store, no image rows.
pub fn assert_nothing_left(c: &Client, layers_before: &[String]) {
    let layers = layer_entries(c.h);
    assert!(
        layers.iter().all(|l| !l.starts_with('.')),
        "temp entries left: {layers:?}"
    );
    assert_eq!(layers, layers_before, "layers changed");
}

pub const CHECK_SCRIPT: &str = "echo $GREETING; pwd; id -u; cat b.txt b-hard.txt b-sym c.txt c-hard.txt to-b d.txt opq/new.txt; ls opq; test -e a.txt || echo a-gone";

pub fn assert_check_output(out: &str) {
    assert_eq!(
        out,
        "hello-from-config\n/data\n1000\nlayer2-b\nlayer2-b\nlayer2-b\nlayer3-c\nlayer3-c\nlayer2-b\nlayer4-d\nlayer3-opq-new\nnew.txt\na-gone\n"
    );
}

#[test]
fn plain_http_pull_run_repull_and_digests() {
    let h = TestHost::new();
    let (reg, built) = Registry::serving(&h, false, Auth::None, "test/multi", "v1");
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let name = "127.0.0.1:5000/test/multi:v1";

    let out = c.ok(&["pull", name]);
    let digest = &built.images[0].0;
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains("Status: Downloaded newer image for 127.0.0.1:5000/test/multi:v1"),
        "{out}"
    );
    assert_eq!(layer_entries(&h).len(), 4, "{:?}", layer_entries(&h));
    // Image config honoured: Env, WorkingDir, User; files of every layer.
    assert_check_output(&c.ok(&["run", "--rm", name, "sh", "-c", CHECK_SCRIPT]));
    // The image's own Cmd.
    assert_eq!(c.ok(&["run", "--rm", name]), "default-cmd\n");
    // --entrypoint replaces the image's Cmd too (Docker's rule).
    assert_eq!(
        c.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/cat",
            name,
            "/data/d.txt"
        ]),
        "layer4-d\n"
    );

    // image inspect: Docker's shape, with the repo digest; history.
    let doc: serde_json::Value = serde_json::from_str(&c.ok(&["image", "inspect", name])).unwrap();
    let doc = &doc[0];
    assert_eq!(doc["RepoTags"], serde_json::json!([name]));
    assert_eq!(
        doc["RepoDigests"],
        serde_json::json!([format!("127.0.0.1:5000/test/multi@{digest}")])
    );
    assert_eq!(doc["Id"], built.images[0].1.as_str());
    assert_eq!(doc["Config"]["WorkingDir"], "/data");
    assert_eq!(doc["Architecture"], "amd64");
    assert_eq!(doc["Os"], "linux");
    assert_eq!(doc["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    assert!(doc["Size"].as_i64().unwrap() > 1_000_000, "{doc}");
    let hist = c.ok(&["history", name]);
    assert!(hist.contains("minirt e2e"), "{hist}");
    let err = c.fails(&["image", "inspect", "127.0.0.1:5000/test/absent"]);
    assert!(err.contains("No such image"), "{err}");

    // Re-pull: nothing fetched.
    let out = c.ok(&["pull", name]);
    assert!(out.contains("Status: Image is up to date for"), "{out}");
    let q = c.ok(&["pull", "-q", name]);
    assert_eq!(q, "127.0.0.1:5000/test/multi:v1\n");

    // Digests: listed, and usable as a name.
    let table = c.ok(&["images", "--digests"]);
    assert!(table.lines().next().unwrap().contains("DIGEST"), "{table}");
    assert!(table.contains(digest.as_str()), "{table}");
    let by_digest = format!("127.0.0.1:5000/test/multi@{digest}");
    assert_eq!(
        c.ok(&["run", "--rm", &by_digest, "cat", "/data/d.txt"]),
        "layer4-d\n"
    );

    // A second name for the same layers: `run` pulls what is missing, and
    // reuses the layers already there.
    reg.push_layout(&reg.dir.join("layout"), "v1", "test/other", false, None);
    let o = c.run(&[
        "run",
        "--rm",
        "127.0.0.1:5000/test/other:v1",
        "cat",
        "/data/c.txt",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "layer3-c\n");
    let err = stderr(&o);
    assert!(
        err.contains("Unable to find image '127.0.0.1:5000/test/other:v1' locally"),
        "{err}"
    );
    assert!(err.contains("Already exists"), "{err}");
    assert_eq!(layer_entries(&h).len(), 4);

    // --pull never: a missing image is an error, not a pull.
    let err = c.fails(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "127.0.0.1:5000/test/nothere",
        "true",
    ]);
    assert!(err.contains("Unable to find image"), "{err}");
    let err = c.fails(&["run", "--rm", "--pull", "sometimes", name, "true"]);
    assert!(err.contains("invalid --pull"), "{err}");

    // tag; image prune keeps named images, -a removes unused ones.
    c.ok(&["tag", name, "mine:latest"]);
    assert_eq!(
        c.ok(&["run", "--rm", "mine", "cat", "/data/d.txt"]),
        "layer4-d\n"
    );
    let out = c.ok(&["image", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    c.ok(&["rmi", "mine", "127.0.0.1:5000/test/other:v1"]);
    let out = c.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.starts_with("Deleted Images:\nuntagged: 127.0.0.1:5000/test/multi:v1\n"),
        "{out}"
    );
    let left = c.ok(&["images", "-q"]);
    assert_eq!(left, "", "{left}");
    assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
    // rmi by digest.
    c.ok(&["pull", "-q", &by_digest]);
    assert_eq!(c.ok(&["images", "-q"]).lines().count(), 1);
    c.ok(&["rmi", &by_digest]);
    assert_eq!(c.ok(&["images", "-q"]), "");
    assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
}

#[test]
fn multi_platform_index_picks_the_host_or_the_asked_platform() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::None);
    let layout = reg.dir.join("layout");
    let built = build_layout(
        &layout,
        "multi",
        &[
            multi_layer_image("amd64"),
            marker_image("arm64", "arm64 image, never run"),
        ],
    );
    reg.push_layout(&layout, "multi", "test/mp", true, None);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let name = "127.0.0.1:5000/test/mp:multi";
    let out = c.ok(&["pull", name]);
    let index = built.index.unwrap();
    // The repo digest is the index's, as Docker records it.
    assert!(out.contains(&format!("Digest: {index}")), "{out}");
    assert_eq!(
        c.ok(&["run", "--rm", name, "cat", "/data/d.txt"]),
        "layer4-d\n"
    );
    let amd_id = c.ok(&["images", "-q"]);

    let before = layer_entries(&h);
    let err = c.fails(&["pull", "--platform", "linux/s390x", name]);
    assert!(
        err.contains("no image for platform linux/s390x in the manifest list (it has: linux/amd64, linux/arm64)"),
        "{err}"
    );
    assert_nothing_left(&c, &before);

    c.ok(&["pull", "--platform", "linux/arm64", name]);
    // The arm64 image replaced the tag; its one layer holds the marker.
    let arm_id = c.ok(&["images", "-q"]);
    assert_ne!(amd_id, arm_id);
    let arm_layer = &built.images[1].2[0];
    assert!(!arm_layer.is_empty());
    assert!(layer_entries(&h).iter().any(|l| h
        .root
        .join("layers")
        .join(l)
        .join("marker")
        .is_file()));
}

#[test]
fn mirror_serves_docker_hub_short_names_offline() {
    let h = TestHost::new();
    let _reg = Registry::serving(&h, false, Auth::None, "library/mirrortest", "latest");
    let conf = "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n";
    let c = Client::new(&h, conf, None);
    assert_check_output(&c.ok(&["run", "--rm", "mirrortest", "sh", "-c", CHECK_SCRIPT]));
    let rows = c.ok(&["images"]);
    assert!(rows.contains("mirrortest"), "{rows}");
    let out = c.ok(&["pull", "docker.io/library/mirrortest"]);
    assert!(
        out.contains("Image is up to date for docker.io/library/mirrortest:latest"),
        "{out}"
    );
}

#[test]
fn tls_with_private_ca_basic_auth_and_login() {
    let h = TestHost::new();
    let (reg, _) = Registry::serving(&h, true, Auth::Basic, "team/app", "v1");
    let name = "127.0.0.1:5000/team/app:v1";

    // Without the CA: a TLS error, and the hint where the CA goes.
    let bare = Client::new(&h, "", None);
    let err = bare.fails(&["pull", name]);
    assert!(err.contains("TLS error talking to 127.0.0.1:5000"), "{err}");
    assert!(err.contains("no-certs/127.0.0.1:5000/ca.crt"), "{err}");

    let c = Client::new(&h, "", Some(&reg.certs_d()));
    let before = layer_entries(&h);
    let err = c.fails(&["pull", name]);
    assert!(err.contains("authentication required"), "{err}");
    assert_nothing_left(&c, &before);

    // A wrong password: one line, nothing stored.
    let err = c.fails(&["login", "-u", USER, "-p", "wrong", "127.0.0.1:5000"]);
    assert!(err.contains("login to 127.0.0.1:5000 failed"), "{err}");
    assert!(!c.docker_config.join("config.json").exists());

    let mut login =
        c.h.command(&["login", "-u", USER, "--password-stdin", "127.0.0.1:5000"]);
    login
        .env("MINIRT_REGISTRIES_CONF", &c.conf)
        .env("MINIRT_CERTS_D", &c.certs)
        .env("DOCKER_CONFIG", &c.docker_config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Login Succeeded\n");
    let cfg = c.docker_config.join("config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(doc["auths"]["127.0.0.1:5000"]["auth"].is_string(), "{doc}");

    c.ok(&["pull", name]);
    assert_check_output(&c.ok(&["run", "--rm", name, "sh", "-c", CHECK_SCRIPT]));

    assert_eq!(
        c.ok(&["logout", "127.0.0.1:5000"]),
        "Removing login credentials for 127.0.0.1:5000\n"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(doc["auths"].get("127.0.0.1:5000").is_none(), "{doc}");
    assert_eq!(
        c.ok(&["logout", "127.0.0.1:5000"]),
        "Not logged in to 127.0.0.1:5000\n"
    );
}

#[test]
fn token_auth_flow_and_expired_tokens() {
    let h = TestHost::new();
    let _reg = Registry::serving(&h, false, Auth::Token, "tok/app", "v1");
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let name = "127.0.0.1:5000/tok/app:v1";
    // Anonymous: the issuer grants a token for the asked scope.
    c.ok(&["pull", name]);
    assert_eq!(
        c.ok(&["run", "--rm", name, "cat", "/data/d.txt"]),
        "layer4-d\n"
    );
    // Credentials: checked by the token server.
    let err = c.fails(&["login", "-u", USER, "-p", "nope", "127.0.0.1:5000"]);
    assert!(err.contains("wrong username or password"), "{err}");
    assert!(!c.docker_config.join("config.json").exists());
    assert_eq!(
        c.ok(&["login", "-u", USER, "-p", PASSWORD, "127.0.0.1:5000"]),
        "Login Succeeded\n"
    );
    c.ok(&["rmi", name]);
    c.ok(&["pull", name]);
    // Push with a token for the push scope, then pull it back.
    let pushed = "127.0.0.1:5000/tok/pushed:v1";
    c.ok(&["tag", name, pushed]);
    let out = c.ok(&["push", pushed]);
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    c.ok(&["rmi", name, pushed]);
    c.ok(&["pull", "-q", pushed]);
    assert_eq!(
        c.ok(&["run", "--rm", pushed, "cat", "/data/d.txt"]),
        "layer4-d\n"
    );
}

#[test]
fn expired_tokens_are_refused_in_one_line() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::ExpiredToken);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let before = layer_entries(&h);
    let err = c.fails(&["pull", "127.0.0.1:5000/tok/app:v1"]);
    assert!(
        err.contains("authentication required") || err.contains("denied"),
        "{err}"
    );
    assert_nothing_left(&c, &before);
    drop(reg);
}

/// Every bad input: one line, exit 125, no layer dir, no row, no temp file.
#[test]
fn bad_inputs_fail_cleanly_and_leave_nothing() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::None);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let layout = reg.dir.join("layout");
    let built = build_layout(&layout, "v1", &[multi_layer_image("amd64")]);
    for repo in ["bad/layer", "bad/config", "bad/short"] {
        reg.push_layout(&layout, "v1", repo, false, None);
    }
    let none = layer_entries(&h);

    let err = c.fails(&["pull", "127.0.0.1:5000/no/such"]);
    assert!(err.contains("manifest unknown"), "{err}");
    let err = c.fails(&["pull", "127.0.0.1:5000/bad/layer:nope"]);
    assert!(
        err.contains("manifest unknown") && err.contains(":nope"),
        "{err}"
    );
    let err = c.fails(&["pull", "127.0.0.1:5009/down/app"]);
    assert!(
        err.contains("cannot reach registry 127.0.0.1:5009"),
        "{err}"
    );
    // `run` of a missing image that cannot be pulled: still one line.
    let err = c.fails(&["run", "--rm", "127.0.0.1:5009/down/app", "true"]);
    assert!(
        err.contains("Unable to find image '127.0.0.1:5009/down/app:latest' locally, and pulling it failed: cannot reach registry 127.0.0.1:5009"),
        "{err}"
    );
    let o = c.run(&["run", "--rm", "127.0.0.1:5009/down/app", "true"]);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let err = c.fails(&["pull", "Bad/Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = c.fails(&[
        "pull",
        "--platform",
        "linux/",
        "127.0.0.1:5000/bad/layer:v1",
    ]);
    assert!(err.contains("invalid platform"), "{err}");
    assert_nothing_left(&c, &none);

    // The blobs are shared by the three repositories: break them in the
    // registry's storage one at a time.
    let (_, config_digest, blobs) = &built.images[0];
    let top = reg.blob_data(&blobs[3]);
    let good_top = std::fs::read(&top).unwrap();
    let mut flipped = good_top.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&top, &flipped).unwrap();
    let err = c.fails(&["pull", "127.0.0.1:5000/bad/layer:v1"]);
    assert!(
        err.contains(&format!("layer {} does not match its digest", blobs[3])),
        "{err}"
    );
    assert_nothing_left(&c, &none);
    assert_eq!(c.ok(&["images", "-q"]), "");

    std::fs::write(&top, &good_top[..good_top.len() / 2]).unwrap();
    let err = c.fails(&["pull", "127.0.0.1:5000/bad/short:v1"]);
    assert!(
        err.contains("truncated") || err.contains("broke off"),
        "{err}"
    );
    assert_nothing_left(&c, &none);
    std::fs::write(&top, &good_top).unwrap();

    let cfg = reg.blob_data(config_digest);
    let good_cfg = std::fs::read(&cfg).unwrap();
    let mut bad_cfg = good_cfg.clone();
    bad_cfg[good_cfg.len() / 2] = b' ';
    std::fs::write(&cfg, &bad_cfg).unwrap();
    let err = c.fails(&["pull", "127.0.0.1:5000/bad/config:v1"]);
    assert!(
        err.contains(&format!(
            "the image config {config_digest} does not match its digest"
        )),
        "{err}"
    );
    assert_nothing_left(&c, &none);
    std::fs::write(&cfg, &good_cfg).unwrap();

    // Unsupported and foreign layer media types are refused before any fetch.
    for (mt, want) in [
        ("application/x-bogus", "unsupported layer media type"),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "foreign",
        ),
    ] {
        let odd = reg.dir.join("odd");
        let _ = std::fs::remove_dir_all(&odd);
        build_layout(&odd, "v1", &[marker_image("amd64", "odd")]);
        retype_layers(&odd, mt);
        reg.push_layout(&odd, "v1", "bad/type", false, None);
        let err = c.fails(&["pull", "127.0.0.1:5000/bad/type:v1"]);
        assert!(err.contains(want), "{mt}: {err}");
        assert_nothing_left(&c, &none);
    }

    // After all that, the intact image pulls.
    c.ok(&["pull", "127.0.0.1:5000/bad/layer:v1"]);
    assert_check_output(&c.ok(&[
        "run",
        "--rm",
        "127.0.0.1:5000/bad/layer:v1",
        "sh",
        "-c",
        CHECK_SCRIPT,
    ]));
}

/// Rewrites every layer's media type in a one-image layout.
fn retype_layers(layout: &Path, mt: &str) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mpath = layout.join("blobs/sha256").join(&md[7..]);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = mt.into();
    }
    let raw = serde_json::to_vec(&m).unwrap();
    let nd = crate::registry_server::sha(&raw);
    std::fs::write(layout.join("blobs/sha256").join(&nd[7..]), &raw).unwrap();
    let mut index = index;
    index["manifests"][0]["digest"] = nd.into();
    index["manifests"][0]["size"] = raw.len().into();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A pull killed with SIGKILL halfway through a 100 MB layer leaves only a
/// temp dir that the next pull sweeps, and the next pull succeeds.
#[test]
fn a_killed_pull_leaves_nothing_and_the_next_pull_succeeds() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::None);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let big: Vec<u8> = (0..100u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let img = TestImage {
        arch: "amd64",
        config: serde_json::json!({"Env": ["PATH=/bin"]}),
        layers: vec![Layer {
            tar: tar_of(&[Entry::File("big.bin", big, 0o644)]),
            comp: Comp::Plain,
        }],
    };
    let layout = reg.dir.join("layout");
    build_layout(&layout, "v1", &[img]);
    reg.push_layout(&layout, "v1", "big/one", false, None);
    let mut child =
        c.h.command(&["pull", "-q", "127.0.0.1:5000/big/one:v1"])
            .env("MINIRT_REGISTRIES_CONF", &c.conf)
            .spawn()
            .unwrap();
    // nsenter execs minirt: the child's pid is minirt's.
    wait_for("a layer temp dir", Duration::from_secs(30), || {
        layer_entries(&h).iter().any(|l| l.starts_with(".tmp-"))
    });
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(c.ok(&["images", "-q"]).is_empty());
    c.ok(&["pull", "-q", "127.0.0.1:5000/big/one:v1"]);
    let layers = layer_entries(&h);
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(
        std::fs::metadata(h.root.join("layers").join(&layers[0]).join("big.bin"))
            .unwrap()
            .len(),
        100 << 20
    );
}

/// A full disk during a pull: one line that blames the host, not the image,
/// and nothing left in the layer store.
#[test]
fn a_full_disk_during_a_pull_fails_cleanly() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::None);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let img = TestImage {
        arch: "amd64",
        config: serde_json::json!({"Env": ["PATH=/bin"]}),
        layers: vec![Layer {
            tar: tar_of(&[Entry::File("big.bin", chunk.repeat(24), 0o644)]),
            comp: Comp::Gzip,
        }],
    };
    let layout = reg.dir.join("layout");
    build_layout(&layout, "v1", &[img]);
    reg.push_layout(&layout, "v1", "big/full", false, None);
    // The layer store on an 8 MiB tmpfs (the test host's Drop unmounts it).
    let layers = h.root.join("layers");
    std::fs::create_dir_all(&layers).unwrap();
    let o = crate::common::cmd(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=8m",
            "fulltest",
            layers.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = c.fails(&["pull", "127.0.0.1:5000/big/full:v1"]);
    assert!(err.contains("cannot store image layers in"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
    assert_eq!(c.ok(&["images", "-q"]), "");
    let _ = crate::common::cmd("umount", &[layers.to_str().unwrap()]);
}

/// What docker-registry itself refuses to serve: a manifest over 4 MiB and
/// a manifest of an unknown media type, from a fake registry (python3).
#[test]
fn oversized_and_unknown_manifests_are_refused() {
    let h = TestHost::new();
    let dir = h.root.parent().unwrap().join("fake");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("fake.py");
    std::fs::write(
        &script,
        r#"
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/v2/":
            body, ct = b"{}", "application/json"
        elif self.path == "/v2/big/app/manifests/v1":
            m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 1},
                 "layers": [], "annotations": {"pad": "x" * (5 << 20)}}
            body, ct = json.dumps(m).encode(), "application/vnd.oci.image.manifest.v1+json"
        elif self.path == "/v2/odd/app/manifests/v1":
            body, ct = b'{"mediaType": "text/html"}', "text/html"
        else:
            self.send_response(404); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", ct)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", 5000), H).serve_forever()
"#,
    )
    .unwrap();
    let mut server = std::process::Command::new("nsenter")
        .arg(format!("--net={}", h.netns_path()))
        .arg("--")
        .arg("python3")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut server);
    wait_for("the fake registry", Duration::from_secs(20), || {
        h.in_ns(
            "curl",
            &["-sf", "-o", "/dev/null", "http://127.0.0.1:5000/v2/"],
        )
        .status
        .success()
    });
    let c = Client::new(&h, INSECURE_LOCAL, None);
    let err = c.fails(&["pull", "127.0.0.1:5000/big/app:v1"]);
    assert!(
        err.contains("manifest big/app:v1 is larger than 4 MiB: refused"),
        "{err}"
    );
    let err = c.fails(&["pull", "127.0.0.1:5000/odd/app:v1"]);
    assert!(
        err.contains("unsupported manifest media type \"text/html\""),
        "{err}"
    );
    assert_nothing_left(&c, &[]);
}

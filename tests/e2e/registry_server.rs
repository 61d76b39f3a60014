//! A real registry for the registry tests: Debian's `docker-registry` (the
//! CNCF distribution registry) started inside a test host's network
//! namespace on its loopback (a fresh namespace, so the port is free), with
//! its own config and storage in a temp dir, optionally behind TLS with a CA
//! made by openssl, htpasswd Basic auth, or token auth served by a small
//! python3 token issuer. Both processes are killed by pid on drop. Also
//! builds test images as OCI layouts and pushes them with skopeo.

use crate::common::{cmd, eventually, stderr, TestHost};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const PORT: u16 = 5000;
pub const TOKEN_PORT: u16 = 5001;
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret-pw";

#[derive(Default, Clone, Copy, PartialEq)]
pub enum Auth {
    #[default]
    None,
    /// htpasswd Basic auth (needs TLS: the registry refuses it over HTTP).
    Basic,
    /// `auth: token` with a realm served by the test's issuer.
    Token,
    /// Token auth whose issuer hands out tokens that expired an hour ago.
    ExpiredToken,
}

pub struct Registry {
    pub dir: PathBuf,
    pub host: String,
    pub tls: bool,
    ns_path: String,
    procs: Vec<Child>,
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// A self-signed certificate valid two days: `DIR/NAME.key`, `DIR/NAME.crt`.
fn self_signed(dir: &Path, subject: &str, name: &str) {
    let p = |ext: &str| {
        dir.join(format!("{name}.{ext}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &p("key"),
            "-out",
            &p("crt"),
        ],
    );
}

fn run_ok(program: &str, args: &[&str]) -> Output {
    let o = cmd(program, args);
    assert!(o.status.success(), "{program} {args:?}: {}", stderr(&o));
    o
}

impl Registry {
    pub fn start(h: &TestHost, tls: bool, auth: Auth) -> Registry {
        let dir = h.root.parent().unwrap().join("registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let host = format!("127.0.0.1:{PORT}");
        let mut reg = Registry {
            dir: dir.clone(),
            host: host.clone(),
            tls,
            ns_path: h.netns_path(),
            procs: vec![],
        };
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.join("data").display()
        );
        if tls {
            reg.make_ca();
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            );
        }
        match auth {
            Auth::None => {}
            Auth::Basic => {
                let pw = dir.join("htpasswd");
                run_ok("htpasswd", &["-Bbc", pw.to_str().unwrap(), USER, PASSWORD]);
                yaml += &format!(
                    "auth:\n  htpasswd:\n    realm: minirt-test\n    path: {}\n",
                    pw.display()
                );
            }
            Auth::Token | Auth::ExpiredToken => {
                reg.start_token_issuer(auth == Auth::ExpiredToken);
                yaml += &format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{TOKEN_PORT}/token\n    service: minirt-test\n    issuer: minirt-test-issuer\n    rootcertbundle: {}\n",
                    dir.join("token.crt").display()
                );
            }
        }
        write(&dir.join("config.yml"), yaml);
        let child = Command::new("nsenter")
            .arg(format!("--net={}", reg.ns_path))
            .arg("--")
            .arg("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        reg.procs.push(child);
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{host}/v2/");
        let up = eventually(Duration::from_secs(20), || {
            let o = reg.in_ns(
                "curl",
                &["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url],
            );
            let code = String::from_utf8_lossy(&o.stdout).to_string();
            code == "200" || code == "401"
        });
        assert!(
            up,
            "registry did not come up: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        reg
    }

    /// A CA and a server certificate for 127.0.0.1, made with openssl.
    fn make_ca(&self) {
        let d = &self.dir;
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        self_signed(d, "/CN=minirt test CA", "ca");
        run_ok(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &p("server.key"),
                "-out",
                &p("server.csr"),
            ],
        );
        write(
            &d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        );
        run_ok(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &p("ext.cnf"),
                "-out",
                &p("server.crt"),
            ],
        );
        // Docker's layout: certs.d/HOST:PORT/ca.crt (MINIRT_CERTS_D in tests).
        let certs = d.join("certs.d").join(&self.host);
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(d.join("ca.crt"), certs.join("ca.crt")).unwrap();
    }

    /// The token issuer: python3 stdlib HTTP, RS256 signatures by openssl.
    fn start_token_issuer(&mut self, expired: bool) {
        let d = &self.dir;
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        self_signed(d, "/CN=token issuer", "token");
        let script = d.join("issuer.py");
        write(&script, TOKEN_ISSUER);
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("--")
            .arg("python3")
            .arg(&script)
            .arg(p("token.key"))
            .arg(p("token.crt"))
            .arg(TOKEN_PORT.to_string())
            .arg(if expired { "expired" } else { "valid" })
            .arg(format!("{USER}:{PASSWORD}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("issuer.log")).unwrap())
            .spawn()
            .expect("start token issuer");
        self.procs.push(child);
        let url = format!("http://127.0.0.1:{TOKEN_PORT}/health");
        let up = eventually(Duration::from_secs(20), || {
            self.in_ns("curl", &["-sf", "-o", "/dev/null", &url])
                .status
                .success()
        });
        assert!(
            up,
            "token issuer did not come up: {}",
            std::fs::read_to_string(d.join("issuer.log")).unwrap_or_default()
        );
    }

    pub fn in_ns(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec![
            format!("--net={}", self.ns_path),
            "--".into(),
            program.into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        cmd("nsenter", &all)
    }

    pub fn certs_d(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// Copies an OCI layout (`dir:tag`) to `repo:tag` on this registry with skopeo.
    pub fn push_layout(
        &self,
        layout: &Path,
        tag: &str,
        repo: &str,
        all: bool,
        creds: Option<&str>,
    ) {
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{}/{repo}:{tag}", self.host);
        let mut args = vec!["copy", "--quiet", "--preserve-digests"];
        if all {
            args.push("--all");
        }
        let certs = self.certs_d().join(&self.host);
        let certs = certs.to_str().unwrap().to_string();
        if self.tls {
            args.extend(["--dest-cert-dir", &certs]);
        } else {
            args.push("--dest-tls-verify=false");
        }
        let c;
        if let Some(cr) = creds {
            c = cr.to_string();
            args.extend(["--dest-creds", &c]);
        }
        args.extend([src.as_str(), dst.as_str()]);
        let o = self.in_ns("skopeo", &args);
        assert!(o.status.success(), "skopeo {args:?}: {}", stderr(&o));
    }

    /// A registry serving the multi-layer test image (amd64) as
    /// `repo:tag`, pushed with the test credentials when `auth` asks for
    /// them: the setup most registry tests start from.
    pub fn serving(
        h: &TestHost,
        tls: bool,
        auth: Auth,
        repo: &str,
        tag: &str,
    ) -> (Registry, Built) {
        let reg = Registry::start(h, tls, auth);
        let layout = reg.dir.join("layout");
        let built = build_layout(&layout, tag, &[multi_layer_image("amd64")]);
        let creds = format!("{USER}:{PASSWORD}");
        let creds = (auth != Auth::None).then_some(creds.as_str());
        reg.push_layout(&layout, tag, repo, false, creds);
        (reg, built)
    }

    /// Deletes a blob file from the registry's storage (to break an image).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const TOKEN_ISSUER: &str = r#"
import base64, hashlib, json, subprocess, sys, time, os
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse, parse_qs
key, crt, port, mode, creds = sys.argv[1:6]
der = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"], capture_output=True, check=True).stdout
spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, capture_output=True, check=True).stdout
b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
kid = ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))
def b64(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")
def sign(claims):
    head = b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=(head + "." + body).encode(),
                         capture_output=True, check=True).stdout
    return head + "." + body + "." + b64(sig)
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        u = urlparse(self.path)
        if u.path == "/health":
            self.send_response(200); self.end_headers(); return
        q = parse_qs(u.query)
        auth = self.headers.get("Authorization", "")
        user = ""
        if auth.startswith("Basic "):
            if base64.b64decode(auth[6:]).decode() != creds:
                self.send_response(401); self.end_headers(); return
            user = creds.split(":")[0]
        access = []
        for s in q.get("scope", []):
            kind, name, actions = s.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        exp = now - 3600 if mode == "expired" else now + 300
        claims = {"iss": "minirt-test-issuer", "sub": user, "aud": q.get("service", [""])[0],
                  "exp": exp, "nbf": now - 7200, "iat": now - 7200, "jti": os.urandom(8).hex(), "access": access}
        body = json.dumps({"token": sign(claims), "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(port)), H).serve_forever()
"#;

// ---------------------------------------------------------------- test images

pub enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>, u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
}

#[derive(Clone, Copy, PartialEq)]
pub enum Comp {
    Gzip,
    Zstd,
    Plain,
}

pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice()).unwrap();
            }
            Entry::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

pub struct Layer {
    pub tar: Vec<u8>,
    pub comp: Comp,
}

/// One image for an OCI layout: its platform, its config's "config" part, its layers.
pub struct TestImage {
    pub arch: &'static str,
    pub config: serde_json::Value,
    pub layers: Vec<Layer>,
}

pub struct Built {
    /// Per image: (manifest digest, config digest, layer blob digests).
    pub images: Vec<(String, String, Vec<String>)>,
    /// The index digest, when several images were built.
    pub index: Option<String>,
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let d = sha(data);
    write(&layout.join("blobs/sha256").join(&d[7..]), data);
    d
}

/// Writes an OCI image layout at `layout` with `tag` naming the one image,
/// or an index of them all when there are several.
pub fn build_layout(layout: &Path, tag: &str, images: &[TestImage]) -> Built {
    write(
        &layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    let mut out = vec![];
    let mut descs = vec![];
    for img in images {
        let mut layer_descs = vec![];
        let mut diff_ids = vec![];
        let mut blob_digests = vec![];
        for l in &img.layers {
            diff_ids.push(sha(&l.tar));
            let (blob, mt) = match l.comp {
                Comp::Gzip => {
                    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&l.tar).unwrap();
                    (
                        e.finish().unwrap(),
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                    )
                }
                Comp::Zstd => (
                    ruzstd::encoding::compress_to_vec(
                        l.tar.as_slice(),
                        ruzstd::encoding::CompressionLevel::Fastest,
                    ),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
                Comp::Plain => (l.tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            let d = put_blob(layout, &blob);
            blob_digests.push(d.clone());
            layer_descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
        }
        let config = serde_json::json!({
            "created": "2026-01-02T03:04:05Z",
            "architecture": img.arch,
            "os": "linux",
            "config": img.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2026-01-02T03:04:05Z", "created_by": "minirt e2e"}],
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = put_blob(layout, &config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let md = put_blob(layout, &manifest);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": manifest.len(),
            "platform": {"architecture": img.arch, "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        out.push((md, config_digest, blob_digests));
    }
    let mut index_digest = None;
    let top = if descs.len() == 1 {
        descs.pop().unwrap()
    } else {
        for d in &mut descs {
            d.as_object_mut().unwrap().remove("annotations");
        }
        let idx = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        });
        let idx = serde_json::to_vec(&idx).unwrap();
        let d = put_blob(layout, &idx);
        index_digest = Some(d.clone());
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": d, "size": idx.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })
    };
    write(
        &layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    );
    Built {
        images: out,
        index: index_digest,
    }
}

/// The multi-layer test image: busybox in a gzip layer; files, a hard link
/// and a symlink in a second gzip layer; whiteouts, an opaque dir, a
/// hard link and a symlink into the layer below in a zstd layer; a plain
/// tar layer on top. Env, WorkingDir and User set.
pub fn multi_layer_image(arch: &'static str) -> TestImage {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let base = tar_of(&[
        Entry::Dir("bin"),
        Entry::File("bin/busybox", busybox, 0o755),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::Symlink("bin/cat", "busybox"),
        Entry::Symlink("bin/ls", "busybox"),
        Entry::Symlink("bin/id", "busybox"),
        Entry::Symlink("bin/pwd", "busybox"),
        Entry::Symlink("bin/test", "busybox"),
        Entry::Dir("etc"),
        Entry::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/data:/bin/sh\n".to_vec(),
            0o644,
        ),
        Entry::File("etc/group", b"root:x:0:\napp:x:1000:\n".to_vec(), 0o644),
        Entry::Dir("tmp"),
    ]);
    let files = tar_of(&[
        Entry::Dir("data"),
        Entry::File(
            "data/a.txt",
            b"from layer 2 (whited out above)\n".to_vec(),
            0o644,
        ),
        Entry::File("data/b.txt", b"layer2-b\n".to_vec(), 0o644),
        Entry::Hardlink("data/b-hard.txt", "data/b.txt"),
        Entry::Symlink("data/b-sym", "b.txt"),
        Entry::Dir("data/opq"),
        Entry::File("data/opq/old.txt", b"old\n".to_vec(), 0o644),
    ]);
    let changes = tar_of(&[
        Entry::Dir("data"),
        Entry::File("data/.wh.a.txt", vec![], 0o644),
        Entry::Dir("data/opq"),
        Entry::File("data/opq/.wh..wh..opq", vec![], 0o644),
        Entry::File("data/opq/new.txt", b"layer3-opq-new\n".to_vec(), 0o644),
        Entry::File("data/c.txt", b"layer3-c\n".to_vec(), 0o644),
        Entry::Hardlink("data/c-hard.txt", "data/c.txt"),
        Entry::Symlink("data/to-b", "/data/b.txt"),
    ]);
    let top = tar_of(&[
        Entry::Dir("data"),
        Entry::File("data/d.txt", b"layer4-d\n".to_vec(), 0o644),
    ]);
    TestImage {
        arch,
        config: serde_json::json!({
            "Env": ["PATH=/bin", "GREETING=hello-from-config"],
            "WorkingDir": "/data",
            "User": "1000",
            "Cmd": ["sh", "-c", "echo default-cmd"],
        }),
        layers: vec![
            Layer {
                tar: base,
                comp: Comp::Gzip,
            },
            Layer {
                tar: files,
                comp: Comp::Gzip,
            },
            Layer {
                tar: changes,
                comp: Comp::Zstd,
            },
            Layer {
                tar: top,
                comp: Comp::Plain,
            },
        ],
    }
}

/// A small one-layer image whose only file says which image it is.
pub fn marker_image(arch: &'static str, marker: &'static str) -> TestImage {
    TestImage {
        arch,
        config: serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
        layers: vec![Layer {
            tar: tar_of(&[Entry::File("marker", marker.as_bytes().to_vec(), 0o644)]),
            comp: Comp::Gzip,
        }],
    }
}

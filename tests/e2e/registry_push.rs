//! `push` and `save` against real peers: Debian's docker-registry with TLS
//! (a private CA) and Basic auth, and Podman pulling, loading and running
//! what minirt pushed or saved.

use crate::common::{layer_entries, stderr, stdout, TestHost};
use crate::podman_host::Podman;
use crate::registry::{assert_check_output, Client, CHECK_SCRIPT, INSECURE_LOCAL};
use crate::registry_server::{Auth, Registry, PASSWORD, USER};
use std::process::Command;

/// The local images, for "nothing changed" checks.
fn images(c: &Client) -> String {
    c.ok(&["images", "--digests"])
}

#[test]
fn push_to_a_tls_registry_with_auth_then_podman_and_minirt_pull_it_back() {
    let h = TestHost::new();
    let (reg, _) = Registry::serving(&h, true, Auth::Basic, "team/app", "v1");
    let c = Client::new(&h, "", Some(&reg.certs_d()));
    c.ok(&["login", "-u", USER, "-p", PASSWORD, "127.0.0.1:5000"]);
    let src = "127.0.0.1:5000/team/app:v1";
    let dst = "127.0.0.1:5000/pushed/app:v2";
    c.ok(&["pull", "-q", src]);
    c.ok(&["tag", src, dst]);

    // Bad inputs: one line, exit 125, the local store unchanged.
    let before = (images(&c), layer_entries(&h));
    let err = c.fails(&["push", "127.0.0.1:5000/nope/none:1"]);
    assert!(err.contains("does not exist locally"), "{err}");
    let anon = Client::new(&h, "", Some(&reg.certs_d()));
    let anon = Client {
        docker_config: h.root.parent().unwrap().join("no-docker-config"),
        ..anon
    };
    let err = anon.fails(&["push", dst]);
    assert!(err.contains("authentication required"), "{err}");
    let wrong_dir = h.root.parent().unwrap().join("wrong-docker-config");
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let auth = base64_of(&format!("{USER}:wrong"));
    std::fs::write(
        wrong_dir.join("config.json"),
        format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let wrong = Client {
        docker_config: wrong_dir,
        ..Client::new(&h, "", Some(&reg.certs_d()))
    };
    let err = wrong.fails(&["push", dst]);
    assert!(err.contains("wrong username or password"), "{err}");
    c.ok(&["tag", src, "127.0.0.1:5999/down/app:1"]);
    let err = c.fails(&["push", "127.0.0.1:5999/down/app:1"]);
    assert!(
        err.contains("cannot reach registry 127.0.0.1:5999"),
        "{err}"
    );
    c.ok(&["rmi", "127.0.0.1:5999/down/app:1"]);
    assert_eq!((images(&c), layer_entries(&h)), before);

    // The push: progress on stderr, Docker's digest line on stdout.
    let o = c.run(&["push", dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let digest = out
        .strip_prefix("v2: digest: ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no digest line: {out}"))
        .to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("The push refers to repository [127.0.0.1:5000/pushed/app]"),
        "{err}"
    );
    assert_eq!(err.matches(": Pushed").count(), 4, "{err}");
    // Again: every blob is there already, the digest is the same.
    let o = c.run(&["push", dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), out);
    assert_eq!(stderr(&o).matches("Layer already exists").count(), 4);
    // Another repository of the same registry: blobs are mounted.
    let third = "127.0.0.1:5000/other/app:v3";
    c.ok(&["tag", src, third]);
    let o = c.run(&["push", third]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).matches("Mounted from pushed/app").count(),
        4,
        "{}",
        stderr(&o)
    );

    // minirt: remove, pull back, run with every layer and the config.
    c.ok(&["rmi", dst, third, src]);
    let o = c.ok(&["pull", dst]);
    assert!(o.contains(&format!("Digest: {digest}")), "{o}");
    assert_check_output(&c.ok(&["run", "--rm", dst, "sh", "-c", CHECK_SCRIPT]));

    // Podman pulls and runs what minirt pushed.
    if let Some(p) = Podman::try_new(&h) {
        let cert_dir = reg.certs_d().join("127.0.0.1:5000");
        let creds = format!("{USER}:{PASSWORD}");
        p.ok(&[
            "pull",
            "-q",
            "--cert-dir",
            cert_dir.to_str().unwrap(),
            "--creds",
            &creds,
            dst,
        ]);
        assert_eq!(
            p.ok(&["image", "inspect", "--format", "{{.Digest}}", dst])
                .trim(),
            digest
        );
        assert_check_output(&p.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            dst,
            "sh",
            "-c",
            CHECK_SCRIPT,
        ]));
    }
    drop(reg);
}

fn base64_of(s: &str) -> String {
    let o = Command::new("sh")
        .args(["-c", "printf %s \"$0\" | base64 -w0", s])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn save_round_trips_through_minirt_load_and_podman_load() {
    let h = TestHost::new();
    let ok = |args: &[&str]| -> String {
        let o = h.command(args).output().unwrap();
        assert!(o.status.success(), "minirt {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // The bundled busybox is loaded on first use.
    ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    ok(&["tag", "busybox", "saved/bb:v1"]);
    let dir = h.root.parent().unwrap().join("saves");
    std::fs::create_dir_all(&dir).unwrap();
    let docker = dir.join("bb.tar");

    // A name that is not there: one line, exit 125, no file.
    let o = h
        .command(&[
            "save",
            "-o",
            docker.to_str().unwrap(),
            "saved/bb:v1",
            "nope:1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert_eq!(stderr(&o), "minirt: No such image: nope:1\n");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    ok(&["save", "-o", docker.to_str().unwrap(), "saved/bb:v1"]);
    // To a pipe: the OCI layout.
    let o = h
        .command(&["save", "--format", "oci-archive", "saved/bb:v1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let oci = dir.join("bb-oci.tar");
    std::fs::write(&oci, &o.stdout).unwrap();

    ok(&["rmi", "saved/bb:v1", "busybox"]);
    for archive in [&docker, &oci] {
        assert_eq!(
            ok(&["load", "-i", archive.to_str().unwrap()]),
            "Loaded image: saved/bb:v1\n"
        );
        assert_eq!(
            ok(&["run", "--rm", "--net", "none", "saved/bb:v1", "echo", "hi"]),
            "hi\n"
        );
        ok(&["rmi", "saved/bb:v1"]);
    }

    if let Some(p) = Podman::try_new(&h) {
        for archive in [&docker, &oci] {
            let out = p.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
            let name = out
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_string();
            assert!(name.ends_with("saved/bb:v1"), "{out}");
            assert_eq!(
                p.ok(&["run", "--rm", "--network", "none", &name, "echo", "hi"]),
                "hi\n"
            );
            p.ok(&["rmi", &name]);
        }
    };
}

#[test]
fn pull_all_tags_and_images_format() {
    let h = TestHost::new();
    let reg = Registry::start(&h, false, Auth::None);
    let c = Client::new(&h, INSECURE_LOCAL, None);
    c.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    for t in ["one", "two"] {
        let name = format!("127.0.0.1:5000/all/bb:{t}");
        c.ok(&["tag", "busybox", &name]);
        c.ok(&["push", "-q", &name]);
        c.ok(&["rmi", &name]);
    }
    let err = c.fails(&["pull", "-a", "127.0.0.1:5000/all/bb:one"]);
    assert!(
        err.contains("tag can't be used with --all-tags/-a"),
        "{err}"
    );
    c.ok(&["pull", "-a", "-q", "127.0.0.1:5000/all/bb"]);
    let out = c.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "127.0.0.1:5000/all/bb:one",
            "127.0.0.1:5000/all/bb:two",
            "busybox:latest"
        ]
    );
    let out = c.ok(&["images", "--format", "table {{.Repository}}\t{{.Tag}}"]);
    assert!(out.starts_with("REPOSITORY"), "{out}");
    drop(reg);
}

//! The image store end to end on a temp root: load, resolve, list, remove.

use super::*;
use crate::rootfs::extract::testtar::{gzip, TarWriter};
use crate::store::Store;
use crate::Instance;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

struct Host {
    _tmp: tempfile::TempDir,
    inst: Instance,
}

fn host() -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let inst = Instance::new(&tmp.path().join("root"), &tmp.path().join("run")).unwrap();
    Host { _tmp: tmp, inst }
}

impl Host {
    fn store(&self) -> Store {
        Store::open(&self.inst.db_path()).unwrap()
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.inst.root.parent().unwrap().join(name);
        fs::write(&p, bytes).unwrap();
        p
    }
    /// Entries of the layers dir (layer dirs and any temp leftovers).
    fn layer_entries(&self) -> Vec<String> {
        crate::util::dir_names(&self.inst.layers_dir())
    }
    fn count(&self, table: &str) -> i64 {
        self.store()
            .conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = TarWriter::default();
    for (p, d) in files {
        w.file(p, d);
    }
    w.finish()
}

fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": null, "Cmd": [cmd], "WorkingDir": "/w", "User": "1:2"},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

/// A `docker save` archive of images (tags, layers).
fn docker_save(images: &[(&[&str], &[&[u8]])]) -> Vec<u8> {
    let mut w = TarWriter::default();
    let mut manifest = vec![];
    let mut written = std::collections::HashSet::new();
    for (tags, layers) in images {
        let config = config_for(layers, "sh");
        let cid = sha256_hex(&config);
        w.file(&format!("{cid}.json"), &config);
        let mut names = vec![];
        for l in *layers {
            let name = format!("{}/layer.tar", sha256_hex(l));
            if written.insert(name.clone()) {
                w.file(&name, l);
            }
            names.push(name);
        }
        manifest.push(
            serde_json::json!({"Config": format!("{cid}.json"), "RepoTags": tags, "Layers": names}),
        );
    }
    w.file(
        "manifest.json",
        serde_json::to_string(&manifest).unwrap().as_bytes(),
    );
    w.finish()
}

/// An OCI image layout with gzipped layers behind a multi-platform index.
fn oci_layout(name: &str, layers: &[&[u8]]) -> (Vec<u8>, String) {
    let mut w = TarWriter::default();
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let config = config_for(layers, "oci");
    let blob = |w: &mut TarWriter, b: &[u8]| {
        let d = sha256_hex(b);
        w.file(&format!("blobs/sha256/{d}"), b);
        format!("sha256:{d}")
    };
    let cdig = blob(&mut w, &config);
    let descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let gz = gzip(l);
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(&mut w, &gz), "size": gz.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let mdig = blob(&mut w, &manifest);
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let ndig = blob(&mut w, &nested);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": MT_OCI_INDEX, "digest": ndig,
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
    }]});
    w.file("index.json", index.to_string().as_bytes());
    (w.finish(), sha256_hex(&config))
}

#[test]
fn references_normalise_like_docker() {
    let n = |s: &str| normalize_reference(s).map_err(|e| e.to_string());
    assert_eq!(n("busybox").unwrap(), "busybox:latest");
    assert_eq!(n("busybox:1.36").unwrap(), "busybox:1.36");
    assert_eq!(
        n("docker.io/library/busybox:latest").unwrap(),
        "busybox:latest"
    );
    assert_eq!(
        n("index.docker.io/library/busybox").unwrap(),
        "busybox:latest"
    );
    assert_eq!(n("library/busybox").unwrap(), "busybox:latest");
    assert_eq!(n("docker.io/me/app").unwrap(), "me/app:latest");
    assert_eq!(
        n("localhost:5000/app").unwrap(),
        "localhost:5000/app:latest"
    );
    assert_eq!(n("quay.io/a/b:v1").unwrap(), "quay.io/a/b:v1");
    assert!(n("BusyBox").unwrap_err().contains("lowercase"));
    assert!(n("").is_err());
    assert!(n("a:").is_err());
    assert!(n("a::b").is_err());
    assert!(n("busybox@sha256:abc").is_err());
    assert!(n("-x").is_err());
    assert_eq!(
        split_tag("localhost:5000/app:v1"),
        ("localhost:5000/app", "v1")
    );
}

#[test]
fn configs_and_times_parse() {
    let p = parse_config(&config_for(&[b"x"], "sh")).unwrap();
    assert_eq!(p.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(p.config.entrypoint, None);
    assert_eq!(p.config.env, vec!["PATH=/bin"]);
    assert_eq!(
        (p.config.working_dir.as_str(), p.config.user.as_str()),
        ("/w", "1:2")
    );
    assert_eq!(p.diff_ids, vec![sha256_hex(b"x")]);
    assert_eq!(p.created, Some(1_704_164_645_000_000_000));
    assert!(parse_config(br#"{"rootfs":{"diff_ids":["md5:1"]}}"#).is_err());
    assert!(parse_config(b"not json").is_err());
    assert_eq!(parse_config(b"{}").unwrap().config, ImageConfig::default());
    let p = parse_config(
        br#"{"config":{"StopSignal":"SIGQUIT","Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000}}}"#,
    )
    .unwrap();
    assert_eq!(p.config.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(p.config.healthcheck.unwrap().interval, 1_000_000_000);
    assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
        Some(1_700_000_000_123_456_789)
    );
    assert_eq!(parse_rfc3339("yesterday"), None);
}

#[test]
fn docker_save_loads_resolves_lists_and_removes() {
    let h = host();
    let mut st = h.store();
    let base = layer(&[("bin/tool", b"base")]);
    let top = layer(&[("etc/app", b"top")]);
    let other = layer(&[("other", b"o")]);
    let arch = docker_save(&[
        (&["app:1", "docker.io/library/app:2"], &[&base, &top]),
        (&["other:latest"], &[&base, &other]),
    ]);
    let path = h.write("save.tar", &arch);
    let names = load_archive(&h.inst, &mut st, &path).unwrap();
    assert_eq!(names, vec!["app:1", "app:2", "other:latest"]);
    assert_eq!(
        h.layer_entries().len(),
        3,
        "the shared layer is stored once"
    );
    let img = resolve(&h.inst, &mut st, "app:2").unwrap();
    assert_eq!(img.layers, vec![sha256_hex(&base), sha256_hex(&top)]);
    assert_eq!(img.config.cmd, Some(vec!["sh".into()]));
    assert_eq!(
        fs::read(layer_dir(&h.inst, &img.layers[1]).join("etc/app")).unwrap(),
        b"top"
    );
    // By id, id prefix, sha256: prefix.
    assert_eq!(resolve(&h.inst, &mut st, &img.id).unwrap().id, img.id);
    assert_eq!(
        resolve(&h.inst, &mut st, &format!("sha256:{}", &img.id[..10]))
            .unwrap()
            .id,
        img.id
    );
    assert!(
        matches!(resolve(&h.inst, &mut st, "nope"), Err(ImageError::NotFound(n)) if n == "nope:latest")
    );
    let l = list(&st).unwrap();
    assert_eq!(l.len(), 3);
    assert!(l.iter().any(|s| s.repository == "app"
        && s.tag == "1"
        && s.created == 1_704_164_645_000_000_000
        && s.size == 7));
    // Loading again changes nothing.
    assert_eq!(load_archive(&h.inst, &mut st, &path).unwrap().len(), 3);
    assert_eq!(
        (h.count("images"), h.count("layers"), h.count("image_tags")),
        (2, 3, 3)
    );

    assert_eq!(
        remove(&h.inst, &mut st, "app:1").unwrap(),
        vec!["Untagged: app:1"]
    );
    assert_eq!(h.count("images"), 2, "app:2 still names the image");
    let out = remove(&h.inst, &mut st, "app:2").unwrap();
    assert_eq!(out[0], "Untagged: app:2");
    assert_eq!(out[1], format!("Deleted: sha256:{}", img.id));
    assert_eq!(out.len(), 3, "only the top layer goes: {out:?}");
    assert!(!layer_dir(&h.inst, &sha256_hex(&top)).exists());
    assert!(
        layer_dir(&h.inst, &sha256_hex(&base)).is_dir(),
        "other still uses the base layer"
    );
    let other_id = resolve(&h.inst, &mut st, "other").unwrap().id;
    remove(&h.inst, &mut st, &other_id[..8]).unwrap();
    assert_eq!(
        (h.count("images"), h.count("layers"), h.count("image_tags")),
        (0, 0, 0)
    );
    assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
    assert!(matches!(
        remove(&h.inst, &mut st, "app:1"),
        Err(ImageError::NoSuchImage(_))
    ));
}

#[test]
fn removal_is_refused_while_a_container_uses_the_image() {
    let h = host();
    let mut st = h.store();
    let path = h.write(
        "s.tar",
        &docker_save(&[(&["app:1"], &[&layer(&[("f", b"1")])])]),
    );
    load_archive(&h.inst, &mut st, &path).unwrap();
    let id = resolve(&h.inst, &mut st, "app:1").unwrap().id;
    st.conn()
        .execute(
            "INSERT INTO containers (id, name, image, image_id, command, config, status, created)
             VALUES ('c1', 'web', 'app:1', ?1, '[]', '{}', 'exited', 0)",
            [&id],
        )
        .unwrap();
    let e = remove(&h.inst, &mut st, "app:1").unwrap_err();
    assert!(e.to_string().contains("web"), "{e}");
    assert_eq!(h.count("image_tags"), 1);
    assert_eq!(h.layer_entries().len(), 1);
}

#[test]
fn oci_layout_with_gzipped_layers_and_an_index_loads() {
    let h = host();
    let mut st = h.store();
    let l1 = layer(&[("a", b"1")]);
    let (arch, id) = oci_layout("docker.io/library/ociimg:v2", &[&l1]);
    let path = h.write("oci.tar.gz", &gzip(&arch));
    assert_eq!(
        load_archive(&h.inst, &mut st, &path).unwrap(),
        vec!["ociimg:v2"]
    );
    let img = resolve(&h.inst, &mut st, "ociimg:v2").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(
        img.layers,
        vec![sha256_hex(&l1)],
        "stored by the uncompressed digest"
    );
    assert_eq!(img.config.cmd, Some(vec!["oci".into()]));
    assert_eq!(
        h.layer_entries(),
        vec![sha256_hex(&l1)],
        "the gunzipped temp copy is gone"
    );
}

#[test]
fn oci_blobs_that_do_not_match_their_digest_are_refused() {
    let h = host();
    let mut st = h.store();
    let (mut arch, _) = oci_layout("bad:1", &[&layer(&[("a", b"1")])]);
    // Flip a byte inside the gzipped layer blob (the first blob after oci-layout + config).
    let gz = gzip(&layer(&[("a", b"1")]));
    let at = arch
        .windows(gz.len())
        .position(|w| w == gz.as_slice())
        .unwrap();
    arch[at + gz.len() - 3] ^= 0xff;
    let e = load_archive(&h.inst, &mut st, &h.write("bad.tar", &arch)).unwrap_err();
    assert!(matches!(e, ImageError::InvalidArchive { .. }), "{e}");
    assert_eq!((h.count("images"), h.count("layers")), (0, 0));
    assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
}

#[test]
fn truncated_or_foreign_archives_leave_nothing() {
    let h = host();
    let mut st = h.store();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let arch = docker_save(&[(
        &["app:1"],
        &[&layer(&[("a", b"1")]), &layer(&[("big", &big)])],
    )]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half", arch[..arch.len() / 2].to_vec()),
        ("no-end", arch[..arch.len() - 1024].to_vec()),
        ("gz-half", gzip(&arch)[..gzip(&arch).len() / 2].to_vec()),
        ("text", b"hello, I am not an archive\n".to_vec()),
        ("empty", vec![]),
    ];
    for (name, bytes) in cases {
        let e = load_archive(&h.inst, &mut st, &h.write(name, &bytes)).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ImageError::InvalidArchive { .. }),
            "{name}: {msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(
            (h.count("images"), h.count("layers"), h.count("image_tags")),
            (0, 0, 0),
            "{name}"
        );
        assert!(
            h.layer_entries().is_empty(),
            "{name}: {:?}",
            h.layer_entries()
        );
    }
    // A layer whose content does not match the config's diff id: the
    // first layer was already extracted and must be undone.
    let good = layer(&[("a", b"1")]);
    let bad = layer(&[("b", b"2")]);
    let mut arch = docker_save(&[(&["app:1"], &[&good, &bad])]);
    let at = arch
        .windows(bad.len())
        .position(|w| w == bad.as_slice())
        .unwrap();
    arch[at + 512] = b'3';
    let e = load_archive(&h.inst, &mut st, &h.write("mismatch", &arch)).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
}

#[test]
fn concurrent_loads_of_the_same_layer_both_succeed() {
    let h = host();
    drop(h.store());
    let big: Vec<u8> = (0..250_000u32).map(|i| (i % 253) as u8).collect();
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("d{}/f{i}", i % 5), big[i * 1000..].to_vec()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let path = h.write("c.tar", &docker_save(&[(&["c:1"], &[&layer(&refs)])]));
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut st = h.store();
                    barrier.wait();
                    load_archive(&h.inst, &mut st, &path)
                })
            })
            .collect();
        for t in handles {
            assert_eq!(t.join().unwrap().unwrap(), vec!["c:1"]);
        }
    });
    assert_eq!(
        h.layer_entries().len(),
        1,
        "one layer dir, no temp leftovers: {:?}",
        h.layer_entries()
    );
    assert_eq!((h.count("images"), h.count("layers")), (1, 1));
    let mut st = h.store();
    let img = resolve(&h.inst, &mut st, "c:1").unwrap();
    assert_eq!(
        fs::read(layer_dir(&h.inst, &img.layers[0]).join("d3/f3")).unwrap(),
        &big[3000..]
    );
}

#[test]
fn losing_the_rename_race_uses_the_winners_layer() {
    let h = host();
    let st = h.store();
    let l = layer(&[("f", b"mine")]);
    let winner = layer_dir(&h.inst, &sha256_hex(&l));
    fs::create_dir_all(winner.join("theirs")).unwrap();
    // No expected digest, so the layer is extracted and the rename collides.
    let got = ensure_layer(&h.inst, &st, &l[..], None, None).unwrap();
    assert_eq!(got.digest, sha256_hex(&l));
    assert!(!got.created, "the winner's dir must not be undone by us");
    assert!(winner.join("theirs").is_dir() && !winner.join("f").exists());
    assert_eq!(
        h.layer_entries(),
        vec![sha256_hex(&l)],
        "our temp copy is gone"
    );
}

#[test]
fn stale_temps_of_dead_processes_are_swept() {
    let h = host();
    let mut st = h.store();
    fs::create_dir_all(h.inst.layers_dir().join(".tmp-999999999-abc/x")).unwrap();
    fs::write(h.inst.layers_dir().join(".del-999999999-abd"), b"").unwrap();
    let live = format!(".tmp-{}-abe", std::process::id());
    fs::create_dir_all(h.inst.layers_dir().join(&live)).unwrap();
    let path = h.write(
        "s.tar",
        &docker_save(&[(&["t:1"], &[&layer(&[("f", b"1")])])]),
    );
    load_archive(&h.inst, &mut st, &path).unwrap();
    assert_eq!(
        h.layer_entries(),
        vec![live, sha256_hex(&layer(&[("f", b"1")]))]
    );
}

#[test]
fn flat_rootfs_imports_as_a_one_layer_image_without_a_command() {
    let h = host();
    let mut st = h.store();
    let fs_tar = layer(&[("bin/x", b"x"), ("etc/y", b"yy")]);
    let id = import_rootfs(
        &h.inst,
        &mut st,
        &h.write("rootfs.tar.gz", &gzip(&fs_tar)),
        "mine:v1",
    )
    .unwrap();
    let img = resolve(&h.inst, &mut st, "mine:v1").unwrap();
    assert_eq!(id, format!("sha256:{}", img.id));
    assert_eq!(img.layers, vec![sha256_hex(&fs_tar)]);
    assert_eq!(img.config.cmd, None);
    assert_eq!(img.config.entrypoint, None);
    assert!(img.config.env[0].starts_with("PATH="));
    assert_eq!(list(&st).unwrap()[0].size, 3);
    assert!(matches!(
        import_rootfs(&h.inst, &mut st, &h.write("r2", &fs_tar), "Bad"),
        Err(ImageError::InvalidReference(_))
    ));
    let e = import_rootfs(
        &h.inst,
        &mut st,
        &h.write("r3", &fs_tar[..fs_tar.len() - 1024]),
        "cut:1",
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::InvalidArchive { .. }), "{e}");
    assert_eq!(h.layer_entries().len(), 1, "{:?}", h.layer_entries());
    assert_eq!(h.count("images"), 1);
}

#[test]
fn busybox_comes_from_the_bundled_archive_on_first_use() {
    let h = host();
    let mut st = h.store();
    let img = resolve(&h.inst, &mut st, "docker.io/library/busybox").unwrap();
    assert_eq!(img.config.cmd, Some(vec!["sh".into()]));
    let root = layer_dir(&h.inst, &img.layers[0]);
    assert!(fs::metadata(root.join("bin/busybox")).unwrap().len() > 100_000);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        PathBuf::from("busybox")
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert!(fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .contains("nobody"));
    // A damaged bundled image heals on the next resolve.
    fs::remove_dir_all(&root).unwrap();
    let again = resolve(&h.inst, &mut st, "busybox").unwrap();
    assert_eq!(again.id, img.id);
    assert!(root.join("bin/busybox").exists());
}

#[test]
fn ambiguous_id_prefixes_are_refused() {
    let h = host();
    let mut st = h.store();
    for i in 0..20 {
        let arch = docker_save(&[(&[], &[&layer(&[("f", format!("{i}").as_bytes())])])]);
        load_archive(&h.inst, &mut st, &h.write("a.tar", &arch)).unwrap();
    }
    let ids: Vec<String> = list(&st).unwrap().into_iter().map(|s| s.id).collect();
    assert!(list(&st).unwrap().iter().all(|s| s.repository == "<none>"));
    // 20 ids over 16 first hex digits: two share a first digit.
    let first = ids
        .iter()
        .find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1)
        .unwrap();
    assert!(matches!(
        resolve(&h.inst, &mut st, &first[..1]),
        Err(ImageError::Ambiguous(_))
    ));
}

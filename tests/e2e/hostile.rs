//! Malicious image archives through `minirt load -i`: escapes are refused
//! with one line and exit 125, and nothing is written outside the root;
//! what is accepted (absolute paths, devices, setuid) is made harmless.

use crate::common::*;
use crate::limits::row_counts;
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    /// Raw entry: the name is written as given (no sanitising by the tar crate).
    fn raw(
        &mut self,
        path: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        self.entry(path, kind, link, data, mode, (0, 0))
    }
    fn entry(
        &mut self,
        path: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
        dev: (u32, u32),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let g = h.as_gnu_mut().expect("gnu header");
            g.name[..path.len()].copy_from_slice(path.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(dev.0).expect("major");
            h.set_device_minor(dev.1).expect("minor");
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0
            .extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
        self
    }
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(path, EntryType::Regular, "", data, 0o644)
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.0);
        b.extend(std::iter::repeat_n(0u8, 1024));
        b
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A `docker save` archive of one image `evil:latest` with this layer.
fn docker_save(layer: &[u8]) -> Vec<u8> {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(layer))]},
    }))
    .expect("config json");
    let cfg = format!("{}.json", sha(&config));
    let manifest = serde_json::json!([{"Config": cfg, "RepoTags": ["evil:latest"], "Layers": ["l/layer.tar"]}]);
    Tar::default()
        .file(&cfg, &config)
        .file("l/layer.tar", layer)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish()
}

/// Every path under `dir` except below `skip`, relative, sorted.
fn files_outside(dir: &Path, skip: &[PathBuf]) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if skip.contains(&p) {
                continue;
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn escaping_archives_are_refused_and_write_nothing_outside_the_root() {
    let h = TestHost::new();
    let base = h.root.parent().expect("test dir").to_path_buf();
    let evil = base.join("evil");
    std::fs::create_dir_all(&evil).expect("evil dir");
    let target = base.join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    std::fs::write(target.join("victim"), "original\n").expect("victim");
    let tgt = target.to_str().expect("utf-8 path");
    let victim_nlink = || {
        std::fs::metadata(target.join("victim"))
            .expect("victim")
            .nlink()
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            Tar::default()
                .file("../../../../target/escaped", b"x")
                .finish(),
            "escapes the layer root",
        ),
        (
            "symlink-escape",
            Tar::default()
                .raw("out", EntryType::Symlink, tgt, b"", 0o777)
                .file("out/escaped", b"x")
                .finish(),
            "which is a symlink",
        ),
        (
            "symlinked-parent",
            Tar::default()
                .raw("up", EntryType::Symlink, "../../../../target", b"", 0o777)
                .file("up/escaped", b"x")
                .finish(),
            "which is a symlink",
        ),
        (
            "hardlink-escape",
            Tar::default()
                .raw(
                    "h",
                    EntryType::Link,
                    "../../../../target/victim",
                    b"",
                    0o644,
                )
                .finish(),
            "points outside the layer",
        ),
        (
            "hardlink-absolute",
            Tar::default()
                .raw("h", EntryType::Link, &format!("{tgt}/victim"), b"", 0o644)
                .finish(),
            "points outside the layer",
        ),
    ];
    for (name, layer, want) in &cases {
        let f = evil.join(format!("{name}.tar"));
        std::fs::write(&f, docker_save(layer)).expect("write archive");
        let (code, err) = h.fails(&["load", "-i", f.to_str().expect("utf-8")]);
        assert_eq!(code, 125, "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("minirt: invalid image archive") && err.contains(want),
            "{name}: {err}"
        );
        assert!(
            layer_entries(&h).is_empty(),
            "{name}: {:?}",
            layer_entries(&h)
        );
        assert!(row_counts(&h.root).iter().all(|(_, n)| *n == 0), "{name}");
        assert_eq!(
            files_outside(&target, &[]),
            ["victim"],
            "{name} wrote outside"
        );
        assert_eq!(victim_nlink(), 1, "{name} linked the victim");
    }
    eprintln!(
        "figure: {} escaping archives refused with exit 125, nothing outside the root",
        cases.len()
    );
}

#[test]
fn accepted_oddities_are_made_harmless() {
    let h = TestHost::new();
    let base = h.root.parent().expect("test dir").to_path_buf();
    let abs = base.join("abs-escaped");
    let abs_path = abs.to_str().expect("utf-8").to_string();
    let layer = Tar::default()
        .file(&abs_path, b"inside\n")
        .entry("dev/evil-null", EntryType::Char, "", b"", 0o666, (1, 3))
        .entry("dev/evil-sda", EntryType::Block, "", b"", 0o666, (8, 0))
        .raw("bin/suid", EntryType::Regular, "", b"#!/bin/sh\n", 0o4755)
        .raw("bin/plain", EntryType::Regular, "", b"#!/bin/sh\n", 0o755)
        .finish();
    let f = base.join("odd.tar");
    std::fs::write(&f, docker_save(&layer)).expect("write archive");
    let out = h.ok(&["load", "-i", f.to_str().expect("utf-8")]);
    assert_eq!(out.trim(), "Loaded image: evil:latest");
    assert!(!abs.exists(), "an absolute path was written on the host");
    let dir = h.root.join("layers").join(sha(&layer));
    assert_eq!(
        std::fs::read_to_string(dir.join(abs_path.trim_start_matches('/'))).expect("inside"),
        "inside\n"
    );
    assert!(!dir.join("dev/evil-null").exists() && !dir.join("dev/evil-sda").exists());
    let mode = |p: &str| {
        std::fs::metadata(dir.join(p))
            .expect(p)
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/suid"), 0o4755, "setuid as in the image");
    assert_eq!(mode("bin/plain"), 0o755, "no setuid added");
    // The layer store itself is root-only, so host users cannot reach the setuid file.
    let store_mode = std::fs::metadata(h.root.join("layers"))
        .expect("layers")
        .permissions()
        .mode();
    assert_eq!(store_mode & 0o077, 0);
    eprintln!("figure: absolute path kept inside, 2 device nodes dropped, setuid kept only as in the image");
}

#[test]
fn a_huge_manifest_is_refused_by_a_size_cap_without_reading_it() {
    let h = TestHost::new();
    let base = h.root.parent().expect("test dir").to_path_buf();
    let f = base.join("huge.tar");
    // 100 MB of manifest.json, as a sparse file: cheap on disk, but reading it
    // into memory would be the bug.
    const SIZE: u64 = 100_000_000;
    let mut hd = Header::new_gnu();
    hd.set_path("manifest.json").expect("path");
    hd.set_size(SIZE);
    hd.set_mode(0o644);
    hd.set_entry_type(EntryType::Regular);
    hd.set_cksum();
    let mut file = std::fs::File::create(&f).expect("create");
    file.write_all(hd.as_bytes()).expect("header");
    file.seek(SeekFrom::Start(512 + SIZE.div_ceil(512) * 512))
        .expect("seek");
    file.write_all(&[0u8; 1024]).expect("end marker");
    drop(file);
    let start = std::time::Instant::now();
    let (code, err) = h.fails(&["load", "-i", f.to_str().expect("utf-8")]);
    let took = start.elapsed();
    assert_eq!(code, 125);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("manifest.json is implausibly large"), "{err}");
    assert!(layer_entries(&h).is_empty());
    eprintln!("figure: 100 MB manifest.json refused in {took:?}");
}

#[test]
fn recursive_oci_indexes_terminate_with_an_error() {
    let h = TestHost::new();
    let base = h.root.parent().expect("test dir").to_path_buf();
    const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    // 1. An index blob that is a symlink to itself.
    let me = "1".repeat(64);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MT_INDEX, "digest": format!("sha256:{me}")}]});
    let looped = Tar::default()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .raw(
            &format!("blobs/sha256/{me}"),
            EntryType::Symlink,
            &me,
            b"",
            0o777,
        )
        .file("index.json", index.to_string().as_bytes())
        .finish();
    // 2. A chain of nested indexes deeper than any real image has.
    let mut t = Tar::default();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut digest = format!("sha256:{}", "2".repeat(64));
    for _ in 0..8 {
        let nested = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": MT_INDEX, "digest": digest}]})
        .to_string();
        let d = sha(nested.as_bytes());
        t.file(&format!("blobs/sha256/{d}"), nested.as_bytes());
        digest = format!("sha256:{d}");
    }
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MT_INDEX, "digest": digest}]});
    t.file("index.json", top.to_string().as_bytes());
    let deep = t.finish();
    for (name, bytes) in [("looped", looped), ("deep", deep)] {
        let f = base.join(format!("{name}.tar"));
        std::fs::write(&f, bytes).expect("write");
        let start = std::time::Instant::now();
        let (code, err) = h.fails(&["load", "-i", f.to_str().expect("utf-8")]);
        assert_eq!(code, 125, "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("minirt: invalid image archive"),
            "{name}: {err}"
        );
        assert!(layer_entries(&h).is_empty());
        eprintln!(
            "figure: {name} OCI index refused in {:?}: {}",
            start.elapsed(),
            err.trim()
        );
    }
}

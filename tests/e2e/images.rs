//! Image commands as a user runs them: load the bundled busybox archive,
//! list, import a flat rootfs, remove, and a bad archive that leaves nothing.

use crate::common::{cmd, layer_entries, stderr, TestHost};
use std::path::{Path, PathBuf};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images/busybox.tar")
}

/// Lines of `images` below the header.
fn image_rows(h: &TestHost) -> Vec<String> {
    h.ok(&["images"])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn load_list_and_remove_the_bundled_busybox() {
    let h = TestHost::new();
    let out = h.ok(&["load", "-i", bundled().to_str().unwrap()]);
    assert_eq!(out, "Loaded image: busybox:latest\n");
    let table = h.ok(&["images"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["busybox", "latest"]);
    assert_eq!(row[2].len(), 12);
    assert!(row.last().unwrap().ends_with("MB"), "{row:?}");
    let ids = h.ok(&["images", "-q"]);
    assert_eq!(ids.trim(), row[2]);
    let json: serde_json::Value =
        serde_json::from_str(h.ok(&["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "busybox");
    let layers = layer_entries(&h);
    assert_eq!(layers.len(), 1);
    assert!(h
        .root
        .join("layers")
        .join(&layers[0])
        .join("bin/busybox")
        .is_file());

    let out = h.ok(&["rmi", "docker.io/library/busybox:latest"]);
    assert!(
        out.starts_with("Untagged: busybox:latest\nDeleted: sha256:"),
        "{out}"
    );
    assert!(image_rows(&h).is_empty());
    assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
    let (code, err) = h.fails(&["rmi", "busybox"]);
    assert_eq!(code, 125);
    assert_eq!(err.trim(), "minirt: No such image: busybox");
}

#[test]
fn import_a_flat_rootfs_then_remove_it() {
    let h = TestHost::new();
    let src = h.root.parent().unwrap().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hello"), "hi\n").unwrap();
    let tarball = h.root.parent().unwrap().join("rootfs.tar.gz");
    let o = cmd(
        "tar",
        &[
            "-C",
            src.to_str().unwrap(),
            "-czf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = h.ok(&["import", tarball.to_str().unwrap(), "mine:v1"]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let rows = image_rows(&h);
    assert_eq!(rows.len(), 1);
    let row: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(&row[..3], ["mine", "v1", &id[7..19]]);
    let layers = layer_entries(&h);
    assert_eq!(
        std::fs::read_to_string(h.root.join("layers").join(&layers[0]).join("etc/hello")).unwrap(),
        "hi\n"
    );
    let out = h.ok(&["rmi", &id[7..15]]);
    assert!(out.contains("Untagged: mine:v1"), "{out}");
    assert!(image_rows(&h).is_empty() && layer_entries(&h).is_empty());
}

#[test]
fn a_bad_archive_is_one_error_and_leaves_nothing() {
    let h = TestHost::new();
    let dir = h.root.parent().unwrap().to_path_buf();
    let full = std::fs::read(bundled()).unwrap();
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, "definitely not a tar archive\n".repeat(40)).unwrap();
    for f in [&cut, &junk] {
        let (code, err) = h.fails(&["load", "-i", f.to_str().unwrap()]);
        assert_eq!(code, 125);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("minirt: invalid image archive"), "{err}");
        assert!(image_rows(&h).is_empty());
        assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
    }
    let (code, err) = h.fails(&["import", junk.to_str().unwrap(), "x"]);
    assert_eq!(code, 125);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(layer_entries(&h).is_empty(), "{:?}", layer_entries(&h));
    let (code, err) = h.fails(&["load", "-i", dir.join("missing.tar").to_str().unwrap()]);
    assert_eq!(code, 125);
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn the_committed_busybox_image_is_what_the_script_builds() {
    let dir = std::env::temp_dir().join(format!("minirt-bb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _c = Cleanup(dir.clone());
    let out = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-busybox-image");
    let o = cmd(script.to_str().unwrap(), &[out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(bundled()).unwrap(),
        "images/busybox.tar is stale: rerun the script"
    );
}

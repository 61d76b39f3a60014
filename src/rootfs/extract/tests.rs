//! Extraction of hostile and well-formed layers into a scratch dir.

use super::testtar::{gzip, TarWriter};
use super::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

/// A layer dir inside a scratch dir, so escapes would land in `outside`.
struct Scratch {
    _tmp: tempfile::TempDir,
    outside: PathBuf,
    layer: PathBuf,
}

fn scratch() -> Scratch {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().to_path_buf();
    let layer = outside.join("a").join("layer");
    fs::create_dir_all(&layer).unwrap();
    Scratch {
        _tmp: tmp,
        outside,
        layer,
    }
}

fn extract(s: &Scratch, tar: &[u8]) -> Result<Extracted> {
    extract_layer(tar, &s.layer)
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn entry_paths_are_cleaned_lexically() {
    let c = |s: &str| clean_entry_path(s.as_bytes());
    assert_eq!(c("a/../b").unwrap(), Some(PathBuf::from("b")));
    assert_eq!(c("/etc/passwd").unwrap(), Some(PathBuf::from("etc/passwd")));
    assert_eq!(c("./bin/sh").unwrap(), Some(PathBuf::from("bin/sh")));
    assert_eq!(c("./").unwrap(), None);
    assert_eq!(c("/").unwrap(), None);
    assert!(matches!(c("../x"), Err(ArchiveError::Escape(_))));
    assert!(matches!(c("a/../../x"), Err(ArchiveError::Escape(_))));
    assert!(matches!(c("/../x"), Err(ArchiveError::Escape(_))));
}

#[test]
fn whiteout_names_are_classified() {
    assert_eq!(
        classify_whiteout(OsStr::new(".wh.foo")),
        Whiteout::File(OsStr::new("foo"))
    );
    assert_eq!(
        classify_whiteout(OsStr::new(".wh..wh..opq")),
        Whiteout::Opaque
    );
    assert_eq!(classify_whiteout(OsStr::new(".wh.")), Whiteout::None);
    assert_eq!(classify_whiteout(OsStr::new("foo")), Whiteout::None);
}

#[test]
fn extracts_files_modes_owners_links_and_hashes_the_stream() {
    let s = scratch();
    let tar = TarWriter::default()
        .dir("./")
        .dir("bin/")
        .raw(
            "bin/su",
            EntryType::Regular,
            "",
            b"#!su",
            0o4755,
            1000,
            (0, 0),
        )
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/su2", "bin/su")
        .raw("tmp/", EntryType::Directory, "", b"", 0o1777, 0, (0, 0))
        .raw("pipe", EntryType::Fifo, "", b"", 0o600, 0, (0, 0))
        .finish();
    let x = extract(&s, &tar).unwrap();
    assert_eq!(x.diff_id, hex::encode(Sha256::digest(&tar)));
    assert_eq!(x.blob_digest, x.diff_id);
    assert_eq!(x.size, 4);
    let su = fs::metadata(s.layer.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!((su.uid(), su.gid()), (1000, 1000));
    assert_eq!(
        fs::read_link(s.layer.join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(s.layer.join("bin/su2")).unwrap().ino(),
        su.ino()
    );
    assert_eq!(
        fs::metadata(s.layer.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(fs::symlink_metadata(s.layer.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    let bin = fs::metadata(s.layer.join("bin")).unwrap();
    assert_eq!(
        bin.mtime(),
        1_000_000,
        "directory mtimes restored after their children"
    );
}

#[test]
fn dot_dot_escape_refuses_the_layer() {
    let s = scratch();
    let tar = TarWriter::default().file("../evil", b"x").finish();
    assert!(matches!(extract(&s, &tar), Err(ArchiveError::Escape(_))));
    let tar = TarWriter::default().file("ok/../../../evil", b"x").finish();
    assert!(matches!(extract(&s, &tar), Err(ArchiveError::Escape(_))));
    assert!(!s.outside.join("evil").exists() && !s.outside.join("a/evil").exists());
}

#[test]
fn absolute_paths_land_inside_the_layer() {
    let s = scratch();
    let tar = TarWriter::default().file("/etc/abs", b"x").finish();
    extract(&s, &tar).unwrap();
    assert_eq!(fs::read(s.layer.join("etc/abs")).unwrap(), b"x");
}

#[test]
fn entries_under_a_symlinked_directory_are_refused() {
    let s = scratch();
    let out = s.outside.join("target");
    fs::create_dir(&out).unwrap();
    let abs = TarWriter::default()
        .symlink("link", out.to_str().unwrap())
        .file("link/pwned", b"x")
        .finish();
    assert!(matches!(
        extract(&s, &abs),
        Err(ArchiveError::BadParent { .. })
    ));
    let s2 = scratch();
    let rel = TarWriter::default()
        .symlink("up", "..")
        .file("up/pwned", b"x")
        .finish();
    assert!(matches!(
        extract(&s2, &rel),
        Err(ArchiveError::BadParent { .. })
    ));
    // Whiteouts and opaque markers walk the same checks.
    let s3 = scratch();
    let wh = TarWriter::default()
        .symlink("up", "..")
        .file("up/.wh.layer", b"")
        .finish();
    assert!(matches!(
        extract(&s3, &wh),
        Err(ArchiveError::BadParent { .. })
    ));
    assert!(fs::read_dir(&out).unwrap().next().is_none());
    assert!(!s.outside.join("a/pwned").exists() && !s2.outside.join("a/pwned").exists());
    assert!(
        s3.outside.join("a/layer").is_dir(),
        "the whiteout did not replace the layer dir"
    );
}

#[test]
fn hardlinks_that_escape_are_refused_and_symlinks_are_never_followed() {
    let s = scratch();
    fs::write(s.outside.join("secret"), b"s").unwrap();
    let up = TarWriter::default().hardlink("h", "../secret").finish();
    assert!(matches!(
        extract(&s, &up),
        Err(ArchiveError::BadHardlink { .. })
    ));
    let s = scratch();
    let via_dir = TarWriter::default()
        .symlink("d", s.outside.to_str().unwrap())
        .hardlink("h", "d/secret")
        .finish();
    assert!(matches!(
        extract(&s, &via_dir),
        Err(ArchiveError::BadHardlink { .. })
    ));
    let s = scratch();
    let missing = TarWriter::default().hardlink("h", "nothing").finish();
    assert!(matches!(
        extract(&s, &missing),
        Err(ArchiveError::BadHardlink { .. })
    ));
    // A hardlink to an absolute symlink links the symlink itself.
    let s = scratch();
    let to_sym = TarWriter::default()
        .symlink("s", s.outside.join("secret").to_str().unwrap())
        .hardlink("h", "s")
        .file("s2", b"replaced")
        .finish();
    fs::write(s.outside.join("secret"), b"s").unwrap();
    extract(&s, &to_sym).unwrap();
    assert!(fs::symlink_metadata(s.layer.join("h"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(s.outside.join("secret")).unwrap(), b"s");
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn a_file_over_a_symlink_replaces_the_link_not_its_target() {
    let s = scratch();
    fs::write(s.outside.join("victim"), b"orig").unwrap();
    let tar = TarWriter::default()
        .symlink("f", s.outside.join("victim").to_str().unwrap())
        .file("f", b"new")
        .finish();
    extract(&s, &tar).unwrap();
    assert_eq!(fs::read(s.outside.join("victim")).unwrap(), b"orig");
    assert_eq!(fs::read(s.layer.join("f")).unwrap(), b"new");
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlayfs_markers() {
    let s = scratch();
    let tar = TarWriter::default()
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .dir("var/")
        .file("var/.wh..wh..opq", b"")
        .file("var/kept", b"k")
        .finish();
    extract(&s, &tar).unwrap();
    let wh = fs::symlink_metadata(s.layer.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!s.layer.join("etc/.wh.motd").exists());
    assert_eq!(
        get_xattr(&s.layer.join("var"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!s.layer.join("var/.wh..wh..opq").exists());
    assert!(s.layer.join("var/kept").exists());
    let bad = TarWriter::default().file("etc/.wh...", b"").finish();
    assert!(matches!(
        extract(&scratch(), &bad),
        Err(ArchiveError::Escape(_))
    ));
}

#[test]
fn device_nodes_are_skipped_but_overlay_whiteouts_kept() {
    let s = scratch();
    let tar = TarWriter::default()
        .raw("dev/null", EntryType::Char, "", b"", 0o666, 0, (1, 3))
        .raw("dev/sda", EntryType::Block, "", b"", 0o660, 0, (8, 0))
        .raw("gone", EntryType::Char, "", b"", 0, 0, (0, 0))
        .finish();
    extract(&s, &tar).unwrap();
    assert!(!s.layer.join("dev/null").exists() && !s.layer.join("dev/sda").exists());
    assert!(fs::symlink_metadata(s.layer.join("gone"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn gzip_layers_are_detected_and_both_digests_reported() {
    let s = scratch();
    let tar = TarWriter::default().file("hello", b"world").finish();
    let gz = gzip(&tar);
    let x = extract(&s, &gz).unwrap();
    assert_eq!(x.diff_id, hex::encode(Sha256::digest(&tar)));
    assert_eq!(x.blob_digest, hex::encode(Sha256::digest(&gz)));
    assert_eq!(fs::read(s.layer.join("hello")).unwrap(), b"world");
}

#[test]
fn truncated_layers_are_errors() {
    let data = vec![7u8; 4000];
    let tar = TarWriter::default()
        .file("big", &data)
        .file("next", b"n")
        .finish();
    // Cut inside the data, at a block boundary, and without the end marker.
    for cut in [1500, 2048, tar.len() - 1024] {
        let r = extract(&scratch(), &tar[..cut]);
        assert!(
            matches!(r, Err(ArchiveError::Corrupt(_))),
            "cut at {cut}: {r:?}"
        );
    }
    let gz = gzip(&tar);
    let r = extract(&scratch(), &gz[..gz.len() / 2]);
    assert!(matches!(r, Err(ArchiveError::Corrupt(_))), "{r:?}");
    let r = extract(
        &scratch(),
        b"this is not a tar archive at all, just some words",
    );
    assert!(matches!(r, Err(ArchiveError::Corrupt(_))), "{r:?}");
}

#[test]
fn tree_size_counts_regular_files() {
    let s = scratch();
    extract(
        &s,
        &TarWriter::default()
            .file("a", b"123")
            .file("d/b", b"45")
            .symlink("l", "a")
            .finish(),
    )
    .unwrap();
    assert_eq!(tree_size(&s.layer), 5);
    assert_eq!(tree(&s.layer), vec!["a", "d", "d/b", "l"]);
}

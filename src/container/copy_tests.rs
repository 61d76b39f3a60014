//! Tests of `cp`: paths, archives and their checks.

use super::*;

fn p(top: &str, into: &str) -> Plan {
    Plan {
        top: top.into(),
        into: PathBuf::from(into),
    }
}

#[test]
fn a_file_to_a_missing_path_takes_that_name() {
    assert_eq!(
        plan("/etc/hostname", Kind::File, "./h", None).unwrap(),
        p("h", ".")
    );
    assert_eq!(
        plan("/etc/hostname", Kind::File, "h", None).unwrap(),
        p("h", ".")
    );
    assert_eq!(
        plan("f", Kind::File, "/tmp/x", None).unwrap(),
        p("x", "/tmp")
    );
}

#[test]
fn a_file_to_a_missing_dir_with_a_slash_is_refused() {
    let e = plan("f", Kind::File, "/tmp/nodir/", None).unwrap_err();
    assert!(e.0.contains("must exist"), "{}", e.0);
}

#[test]
fn a_file_into_an_existing_dir_keeps_its_name() {
    assert_eq!(
        plan("/a/f", Kind::File, "/tmp", Some(Kind::Dir)).unwrap(),
        p("f", "/tmp")
    );
    assert_eq!(
        plan("/a/f", Kind::File, "/tmp/g", Some(Kind::File)).unwrap(),
        p("g", "/tmp")
    );
}

#[test]
fn directories_follow_dockers_rules() {
    assert_eq!(
        plan("./dir", Kind::Dir, "/tmp/", Some(Kind::Dir)).unwrap(),
        p("dir", "/tmp/")
    );
    assert_eq!(
        plan("./dir/.", Kind::Dir, "/tmp", Some(Kind::Dir)).unwrap(),
        p(".", "/tmp")
    );
    assert_eq!(
        plan("./dir", Kind::Dir, "/tmp/new", None).unwrap(),
        p("new", "/tmp")
    );
    assert_eq!(
        plan("./dir/.", Kind::Dir, "/tmp/new/", None).unwrap(),
        p("new", "/tmp")
    );
    assert!(plan("./dir", Kind::Dir, "/tmp/f", Some(Kind::File)).is_err());
    assert!(plan("./f/", Kind::File, "/tmp", Some(Kind::Dir)).is_err());
}

/// A host directory tree archived and extracted elsewhere comes back
/// the same: files, modes, symlinks (not followed), hardlinks.
#[test]
fn archive_then_extract_round_trips() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let t = std::env::temp_dir().join(format!("minirt-cp-{}", std::process::id()));
    let src = t.join("src");
    let dst = t.join("dst");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("d/f"), b"hello").unwrap();
    std::fs::set_permissions(src.join("d/f"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::hard_link(src.join("d/f"), src.join("d/e/g")).unwrap();
    symlink("/etc/passwd", src.join("d/l")).unwrap();
    let root = Root::open(&src).unwrap();
    let mut buf = vec![];
    archive(&root, Path::new("/d"), false, "copy", &mut buf).unwrap();
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    extract(
        &Root::open(&dst).unwrap(),
        &buf[..],
        Owners::Set(me.0, me.1),
    )
    .unwrap();
    assert_eq!(std::fs::read(dst.join("copy/f")).unwrap(), b"hello");
    let m = std::fs::metadata(dst.join("copy/f")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o751);
    assert_eq!(
        std::fs::read_link(dst.join("copy/l")).unwrap(),
        Path::new("/etc/passwd")
    );
    let g = std::fs::metadata(dst.join("copy/e/g")).unwrap();
    assert_eq!(g.ino(), m.ino());
    std::fs::remove_dir_all(&t).unwrap();
}

/// Entries of a hostile archive (`..`, absolute names, a symlink then a
/// file under it) stay inside the extraction root.
#[test]
fn a_hostile_archive_stays_inside() {
    let t = std::env::temp_dir().join(format!("minirt-cp-h-{}", std::process::id()));
    let dst = t.join("dst");
    let outside = t.join("outside");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let mut b = tar::Builder::new(vec![]);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "esc", &outside).unwrap();
    let data = b"x";
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "esc/pwned", &data[..]).unwrap();
    let raw = b.into_inner().unwrap();
    // The symlink resolves inside the root, where its target is missing.
    let e = extract(&Root::open(&dst).unwrap(), &raw[..], Owners::Set(0, 0)).unwrap_err();
    assert!(e.0.contains("missing"), "{}", e.0);
    assert!(!outside.join("pwned").exists());
    // A name with `..` written by hand (the builder refuses it).
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..13].copy_from_slice(b"../../escaped");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[b'y'; 512]);
    raw.extend_from_slice(&[0; 1024]);
    extract(&Root::open(&dst).unwrap(), &raw[..], Owners::Set(0, 0)).unwrap();
    assert!(!t.join("escaped").exists());
    assert!(dst.join("escaped").exists());
    std::fs::remove_dir_all(&t).unwrap();
}

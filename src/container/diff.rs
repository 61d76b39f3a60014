//! `diff`: what a container changed in its filesystem, read from its
//! overlay upper directory: an overlay whiteout (a 0/0 character device) is
//! a deletion, an entry the image layers also have is a change, any other
//! an addition (Docker's `A`/`C`/`D`).

use super::copy;
use crate::rootfs::inroot::Root;
use crate::rootfs::{image, mount};
use crate::store::containers::ContainerRow;
use crate::store::Store;
use crate::Instance;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What the upper directory holds at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    Whiteout,
    Entry,
}

/// Docker's change list from the upper dir's entries (container paths,
/// parents before children) and whether the image layers have a path.
pub fn changes(upper: &[(String, Upper)], in_image: impl Fn(&str) -> bool) -> Vec<(char, String)> {
    let mut out: Vec<(char, String)> = upper
        .iter()
        .map(|(p, u)| {
            let kind = match u {
                Upper::Whiteout => 'D',
                Upper::Entry if in_image(p) => 'C',
                Upper::Entry => 'A',
            };
            (kind, p.clone())
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The upper dir's entries as container paths, not following links.
fn walk(upper: &Path) -> Vec<(String, Upper)> {
    let mut out = vec![];
    let mut todo: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(upper.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            let Ok(m) = e.metadata() else { continue };
            let shown = format!("/{}", r.display());
            if m.file_type().is_char_device() && m.rdev() == 0 {
                out.push((shown, Upper::Whiteout));
                continue;
            }
            out.push((shown, Upper::Entry));
            if m.is_dir() {
                todo.push(r);
            }
        }
    }
    out
}

/// The changes of container `row`.
pub fn diff(inst: &Instance, row: &ContainerRow) -> crate::Result<Vec<(char, String)>> {
    let mut store = Store::open(&inst.db_path())?;
    let img = image::resolve(inst, &mut store, &row.image_id)?;
    drop(store);
    let base = inst.root.join("base-layer");
    mount::ensure_base_layer(&base)?;
    let mut lowers = vec![];
    for d in std::iter::once(base).chain(img.layers.iter().map(|d| image::layer_dir(inst, d))) {
        // Each layer is looked into as a root of its own: its symlinks
        // never lead onto the host.
        if let Ok(r) = Root::open(&d) {
            lowers.push(r);
        }
    }
    let upper = walk(&inst.container_dir(&row.id).join("upper"));
    Ok(changes(&upper, |p| {
        lowers
            .iter()
            .any(|r| matches!(copy::kind_in(r, Path::new(p), false), Ok(Some(_))))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_delete_image_paths_change_and_the_rest_is_added() {
        let upper = vec![
            ("/tmp".to_string(), Upper::Entry),
            ("/tmp/new".to_string(), Upper::Entry),
            ("/etc".to_string(), Upper::Entry),
            ("/etc/motd".to_string(), Upper::Whiteout),
            ("/etc/passwd".to_string(), Upper::Entry),
        ];
        let image = ["/tmp", "/etc", "/etc/passwd", "/etc/motd"];
        let c = changes(&upper, |p| image.contains(&p));
        assert_eq!(
            c,
            [
                ('C', "/etc".to_string()),
                ('D', "/etc/motd".to_string()),
                ('C', "/etc/passwd".to_string()),
                ('C', "/tmp".to_string()),
                ('A', "/tmp/new".to_string()),
            ]
        );
    }
}

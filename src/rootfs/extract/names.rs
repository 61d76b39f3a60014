//! What a layer entry's name means: overlayfs whiteouts and the lexical
//! cleaning of entry paths (a `..` above the root refuses the layer).

use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a layer entry's file name means to overlayfs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.NAME`: NAME is deleted from the layers below.
    File(&'a OsStr),
    /// `.wh..wh..opq`: the directory hides everything below it.
    Opaque,
}

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";

pub(crate) fn classify_whiteout(name: &OsStr) -> Whiteout<'_> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        Whiteout::Opaque
    } else if b.len() > WHITEOUT_PREFIX.len() && b.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        Whiteout::File(OsStr::from_bytes(&b[WHITEOUT_PREFIX.len()..]))
    } else {
        Whiteout::None
    }
}

/// Lexically cleans a tar entry path into a path relative to the layer root.
/// `None` is the root itself. `..` that climbs above the root is an error;
/// a leading `/` is dropped.
pub(crate) fn clean_entry_path(raw: &[u8]) -> Result<Option<PathBuf>> {
    let display = || String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(ArchiveError::Escape(display()));
    }
    let mut out: Vec<&OsStr> = vec![];
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(ArchiveError::Escape(display()));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(out.iter().collect()))
}

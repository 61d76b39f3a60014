//! Where each member of an outer (docker-save or OCI-layout) archive lies,
//! so members are read in any order without unpacking the archive.

use crate::rootfs::extract::{self};
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Where each member of an outer archive lies, so members are read in any
/// order without unpacking the archive.
pub struct ArchiveIndex {
    members: HashMap<String, Member>,
}

pub(super) enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Symlink (target relative to the member's directory) or hardlink
    /// (target relative to the archive root), already made root-relative.
    Link(String),
}

pub(super) fn member_name(raw: &[u8]) -> Option<String> {
    let p = extract::clean_entry_path(raw).ok()??;
    Some(p.to_string_lossy().into_owned())
}

impl ArchiveIndex {
    /// Reads every header (skipping the data by seeking) and checks that each
    /// member's data lies inside the file.
    pub fn read<R: Read + Seek>(r: &mut R) -> std::result::Result<ArchiveIndex, String> {
        let len = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&mut *r);
        let entries = ar.entries_with_seek().map_err(|e| e.to_string())?;
        let mut data_end = 0;
        for e in entries {
            let e = e.map_err(|e| {
                format!(
                    "not a tar archive or damaged ({})",
                    extract::describe_tar_error(&e)
                )
            })?;
            let Some(name) = member_name(&e.path_bytes()) else {
                continue;
            };
            let (offset, size) = (e.raw_file_position(), e.size());
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(format!("the archive is truncated ({name} is cut short)"));
            }
            let kind = e.header().entry_type();
            let link = || e.link_name_bytes().map(|l| l.into_owned());
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, Member::File { offset, size });
                }
                tar::EntryType::Symlink => {
                    if let Some(t) = link() {
                        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                        let joined = dir.join(std::ffi::OsStr::from_bytes(&t));
                        if let Some(target) = member_name(joined.as_os_str().as_encoded_bytes()) {
                            members.insert(name, Member::Link(target));
                        }
                    }
                }
                tar::EntryType::Link => {
                    if let Some(target) = link().and_then(|t| member_name(&t)) {
                        members.insert(name, Member::Link(target));
                    }
                }
                _ => {}
            }
            data_end = offset + size.div_ceil(512) * 512;
        }
        // A complete archive ends with two zero blocks; without them it was
        // cut at a member boundary.
        if data_end > 0 && data_end + 1024 > len {
            return Err("the archive is truncated (no end-of-archive marker)".into());
        }
        Ok(ArchiveIndex { members })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = member_name(name.as_bytes())?;
        for _ in 0..16 {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(t) => name = t.clone(),
            }
        }
        None
    }

    /// A reader over one member's data.
    pub fn open<'a, R: Read + Seek>(
        &self,
        r: &'a mut R,
        name: &str,
    ) -> std::result::Result<io::Take<&'a mut R>, String> {
        let (offset, size) = self
            .locate(name)
            .ok_or_else(|| format!("{name} is missing from the archive"))?;
        r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        Ok(r.take(size))
    }

    /// A small member (JSON) read whole.
    pub(crate) fn read_small<R: Read + Seek>(
        &self,
        r: &mut R,
        name: &str,
    ) -> std::result::Result<Vec<u8>, String> {
        let (_, size) = self
            .locate(name)
            .ok_or_else(|| format!("{name} is missing from the archive"))?;
        if size > 64 << 20 {
            return Err(format!("{name} is implausibly large ({size} bytes)"));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(r, name)?
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        if buf.len() as u64 != size {
            return Err(format!("the archive is truncated ({name} is cut short)"));
        }
        Ok(buf)
    }
}

//! Builds tar streams byte by byte, so tests can write what `tar::Builder`
//! refuses to (`..`, absolute paths, escaping links).

use tar::{EntryType, Header};

#[derive(Default)]
pub(crate) struct TarWriter {
    pub bytes: Vec<u8>,
}

impl TarWriter {
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        path: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        dev: (u32, u32),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..path.len()].copy_from_slice(path.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_000_000);
        if kind == EntryType::Char || kind == EntryType::Block {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.raw(path, EntryType::Directory, "", b"", 0o755, 0, (0, 0))
    }
    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(path, EntryType::Regular, "", data, 0o644, 0, (0, 0))
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path, EntryType::Symlink, target, b"", 0o777, 0, (0, 0))
    }
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path, EntryType::Link, target, b"", 0o644, 0, (0, 0))
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.bytes);
        b.extend(std::iter::repeat_n(0u8, 1024));
        b
    }
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

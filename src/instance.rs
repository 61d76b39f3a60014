//! One minirt instance = one `--root` + `--run-root`. Everything that could
//! collide between two instances (cgroup parent, nftables table) is derived here.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Instance {
    /// Persistent state: minirt.db, image layers, container upper dirs.
    pub root: PathBuf,
    /// Volatile state: pid files, monitor sockets, per-container runtime files.
    pub run_root: PathBuf,
    /// 8 hex chars derived from the canonical root path.
    pub tag: String,
}

impl Instance {
    pub fn new(root: &Path, run_root: &Path) -> std::io::Result<Instance> {
        std::fs::create_dir_all(root)?;
        std::fs::create_dir_all(run_root)?;
        let root = std::fs::canonicalize(root)?;
        let run_root = std::fs::canonicalize(run_root)?;
        let tag = instance_tag(&root);
        Ok(Instance {
            root,
            run_root,
            tag,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("minirt.db")
    }
    /// Content-addressed layer store: `layers/<sha256 hex>/` (extracted once).
    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// Persistent per-container dir: upper/, work/, log.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    /// Volatile per-container dir: the running container's config.json (its
    /// OCI spec), /etc files, rootfs mount point.
    pub(crate) fn container_run_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }
    /// Name of this instance's cgroup parent, in every hierarchy.
    pub fn cgroup_parent(&self) -> String {
        format!("minirt-{}", self.tag)
    }
    /// Name of this instance's nftables table (family inet).
    pub fn nft_table(&self) -> String {
        format!("minirt_{}", self.tag)
    }
}

/// 8 hex chars of sha256(root path): stable for a root, distinct between roots.
pub(crate) fn instance_tag(root: &Path) -> String {
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_between_roots_and_are_stable() {
        let a = instance_tag(Path::new("/var/lib/minirt"));
        let b = instance_tag(Path::new("/tmp/other"));
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
        assert_eq!(a, instance_tag(Path::new("/var/lib/minirt")));
    }
}

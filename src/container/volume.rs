//! Volumes: directories minirt keeps under `<root>/volumes/NAME/_data`,
//! made by `volume create` or on first use by `-v NAME:/path` (then filled
//! with what the image has at that path, as Docker does), or anonymously by
//! `-v /path`. A container mounts one as a bind mount of its data dir; which
//! containers use a volume is read from their configurations.

use super::copy;
use crate::rootfs::inroot::Root;
use crate::store::containers::{self, ContainerRow};
use crate::store::volumes::{self, VolumeRow};
use crate::store::Store;
use crate::{util, Instance};
use std::path::{Path, PathBuf};

/// A refusal with Docker's exit code (1 for the daemon's, 125 for input).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct VolumeError {
    pub code: i32,
    pub message: String,
}

type Result<T> = std::result::Result<T, VolumeError>;

fn fail(code: i32, message: impl Into<String>) -> VolumeError {
    VolumeError {
        code,
        message: message.into(),
    }
}

fn store_fail(e: impl std::fmt::Display) -> VolumeError {
    fail(125, e.to_string())
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed",
            crate::validate::escape_controls(name)
        ))
    }
}

/// What one `-v` value asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `HOSTDIR:CTRDIR[:MODE]`: passed on as it is.
    Bind(String),
    /// `NAME:CTRDIR[:MODE]`.
    Named {
        name: String,
        dest: String,
        mode: Option<String>,
    },
    /// `CTRDIR`: a fresh anonymous volume.
    Anonymous { dest: String },
}

/// Reads a `-v` value (pure).
pub fn classify(spec: &str) -> std::result::Result<VolumeSpec, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [d] if d.starts_with('/') => Ok(VolumeSpec::Anonymous {
            dest: (*d).to_string(),
        }),
        [s, rest @ ..] if !s.starts_with('/') && !s.is_empty() && !rest.is_empty() => {
            validate_name(s)?;
            Ok(VolumeSpec::Named {
                name: (*s).to_string(),
                dest: rest[0].to_string(),
                mode: rest.get(1).map(|m| m.to_string()),
            })
        }
        _ => Ok(VolumeSpec::Bind(spec.to_string())),
    }
}

/// Docker's `--mount type=bind|volume,source=..,target=..[,readonly]` as
/// the `-v` value it means (pure). tmpfs mounts and options minirt does not
/// have are refused by name.
pub fn mount_as_volume(spec: &str) -> std::result::Result<String, String> {
    let (mut typ, mut src, mut dst, mut ro) = ("volume".to_string(), None, None, false);
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        match (k.as_str(), v) {
            ("type", Some(v)) => typ = v,
            ("source" | "src", Some(v)) => src = Some(v),
            ("target" | "destination" | "dst", Some(v)) => dst = Some(v),
            ("readonly" | "ro", None) => ro = true,
            ("readonly" | "ro", Some(v)) => {
                ro = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("invalid value for readonly: {v}")),
                }
            }
            (k, _) => return Err(format!("--mount option {k}: not implemented")),
        }
    }
    let dst = dst.ok_or("--mount: target is required")?;
    let mode = if ro { ":ro" } else { "" };
    match (typ.as_str(), src) {
        ("bind", Some(s)) if s.starts_with('/') => Ok(format!("{s}:{dst}{mode}")),
        ("bind", Some(s)) => Err(format!(
            "--mount: invalid bind source {s:?}: the host path must be absolute"
        )),
        ("bind", None) => Err("--mount: bind needs a source".into()),
        ("volume", Some(s)) => {
            validate_name(&s)?;
            Ok(format!("{s}:{dst}{mode}"))
        }
        ("volume", None) if !ro => Ok(dst),
        ("volume", None) => Err("--mount: a read-only anonymous volume is always empty".into()),
        (t, _) => Err(format!("--mount type={t}: not implemented")),
    }
}

pub fn data_dir(inst: &Instance, name: &str) -> PathBuf {
    inst.root.join("volumes").join(name).join("_data")
}

/// Makes volume `name` (a random one when None) unless it exists; the row
/// and whether this call made it.
pub fn create(
    inst: &Instance,
    name: Option<&str>,
    labels: &serde_json::Map<String, serde_json::Value>,
    anonymous: bool,
) -> Result<(VolumeRow, bool)> {
    let name = match name {
        Some(n) => {
            validate_name(n).map_err(|m| fail(125, m))?;
            n.to_string()
        }
        None => {
            let bytes: [u8; 32] = rand::random();
            hex::encode(bytes)
        }
    };
    let row = VolumeRow {
        name: name.clone(),
        driver: "local".into(),
        labels: serde_json::Value::Object(labels.clone()).to_string(),
        anonymous,
        created: util::now_nanos(),
    };
    let store = Store::open(&inst.db_path()).map_err(store_fail)?;
    let made = volumes::insert(store.conn(), &row).map_err(store_fail)?;
    let dir = data_dir(inst, &name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        if made {
            let _ = volumes::delete(store.conn(), &name);
        }
        return Err(fail(125, format!("creating {}: {e}", dir.display())));
    }
    if made {
        super::events::record(
            store.conn(),
            "volume",
            "create",
            &name,
            &[("driver", "local")],
        );
    }
    let row = volumes::get(store.conn(), &name)
        .map_err(store_fail)?
        .unwrap_or(row);
    Ok((row, made))
}

pub fn get(inst: &Instance, name: &str) -> Result<VolumeRow> {
    let store = Store::open(&inst.db_path()).map_err(store_fail)?;
    volumes::get(store.conn(), name)
        .map_err(store_fail)?
        .ok_or_else(|| fail(1, format!("get {name}: no such volume")))
}

pub fn list(inst: &Instance) -> Result<Vec<VolumeRow>> {
    let store = Store::open(&inst.db_path()).map_err(store_fail)?;
    volumes::list(store.conn()).map_err(store_fail)
}

/// The volumes (by name) the configuration of `row` mounts.
pub fn used_by(inst: &Instance, row: &ContainerRow) -> Vec<String> {
    let base = inst.root.join("volumes");
    super::lifecycle::config_of(row)
        .mounts
        .iter()
        .filter_map(|m| {
            let rest = Path::new(&m.source).strip_prefix(&base).ok()?;
            let mut c = rest.components();
            let name = c.next()?.as_os_str().to_string_lossy().into_owned();
            (c.next()?.as_os_str() == "_data").then_some(name)
        })
        .collect()
}

/// Ids of the containers that use volume `name`.
fn users(inst: &Instance, name: &str) -> Result<Vec<String>> {
    let store = Store::open(&inst.db_path()).map_err(store_fail)?;
    let rows = containers::list(store.conn()).map_err(store_fail)?;
    drop(store);
    Ok(rows
        .iter()
        .filter(|r| used_by(inst, r).iter().any(|n| n == name))
        .map(|r| r.id.clone())
        .collect())
}

/// Removes volume `name` and its data; refused while a container uses it
/// unless `force`.
pub fn remove(inst: &Instance, name: &str, force: bool) -> Result<()> {
    get(inst, name).map_err(|_| fail(1, format!("get {name}: no such volume")))?;
    let users = users(inst, name)?;
    if !users.is_empty() && !force {
        return Err(fail(
            1,
            format!("remove {name}: volume is in use - [{}]", users.join(", ")),
        ));
    }
    let store = Store::open(&inst.db_path()).map_err(store_fail)?;
    volumes::delete(store.conn(), name).map_err(store_fail)?;
    super::events::record(
        store.conn(),
        "volume",
        "destroy",
        name,
        &[("driver", "local")],
    );
    drop(store);
    let dir = inst.root.join("volumes").join(name);
    std::fs::remove_dir_all(&dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| fail(125, format!("removing {}: {e}", dir.display())))
}

/// Removes unused volumes: anonymous ones, or all with `all` (Docker's
/// `volume prune` and `-a`). The names removed.
pub fn prune(inst: &Instance, all: bool) -> Result<Vec<String>> {
    let mut gone = vec![];
    for v in list(inst)? {
        if (all || v.anonymous) && users(inst, &v.name)?.is_empty() {
            remove(inst, &v.name, false)?;
            gone.push(v.name);
        }
    }
    Ok(gone)
}

/// Docker's `volume inspect` document.
pub fn inspect_json(inst: &Instance, v: &VolumeRow) -> serde_json::Value {
    let labels: serde_json::Value =
        serde_json::from_str(&v.labels).unwrap_or_else(|_| serde_json::json!({}));
    serde_json::json!({
        "CreatedAt": util::rfc3339(v.created),
        "Driver": v.driver,
        "Labels": labels,
        "Mountpoint": data_dir(inst, &v.name).display().to_string(),
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

/// Fills a new volume's data dir with what the image of container `row`
/// has at `dest` (owners and modes kept), as Docker does on a volume's
/// first mount. Runs in a child process: the image's overlay is mounted in
/// a private mount namespace that goes with it.
pub fn copy_up(inst: &Instance, row: &ContainerRow, dest: &str, volume: &str) -> Result<()> {
    let data = data_dir(inst, volume);
    // SAFETY: the CLI is single-threaded here; the child only copies files
    // and leaves with _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match copy_up_here(inst, row, dest, &data) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("minirt: copying {dest} into volume {volume}: {e}");
                    1
                }
            };
            // SAFETY: ends the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ => Err(fail(
                    125,
                    format!("copying {dest} into volume {volume} failed"),
                )),
            }
        }
        Err(e) => Err(fail(125, format!("fork: {e}"))),
    }
}

fn copy_up_here(
    inst: &Instance,
    row: &ContainerRow,
    dest: &str,
    data: &Path,
) -> std::result::Result<(), String> {
    let fs = copy::open_container(inst, row, false).map_err(|e| e.0)?;
    let src = Path::new(dest);
    if copy::kind_in(&fs.root, src, true).map_err(|e| e.0)? != Some(copy::Kind::Dir) {
        return Ok(());
    }
    let into = Root::open(data).map_err(|e| e.to_string())?;
    let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let t = s.spawn(|| copy::archive(&fs.root, src, true, ".", w));
        let ex = copy::extract(&into, r, copy::Owners::Keep);
        let ar = t
            .join()
            .unwrap_or_else(|_| Err(copy::CopyError("panicked".into())));
        ar.map_err(|e| e.0)?;
        ex.map_err(|e| e.0)
    })?;
    // The volume's own directory takes the image directory's owner and mode.
    if let Ok(Some(fd)) = fs
        .root
        .resolve_existing(src, crate::rootfs::inroot::Links::InRoot)
    {
        if let Ok(st) = nix::sys::stat::fstat(std::os::fd::AsFd::as_fd(&fd)) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::os::unix::fs::chown(data, Some(st.st_uid), Some(st.st_gid));
            let _ = std::fs::set_permissions(
                data,
                std::fs::Permissions::from_mode(st.st_mode & 0o7777),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_values_are_told_apart_like_dockers() {
        assert_eq!(
            classify("data:/var/lib/x:ro").unwrap(),
            VolumeSpec::Named {
                name: "data".into(),
                dest: "/var/lib/x".into(),
                mode: Some("ro".into())
            }
        );
        assert_eq!(
            classify("/srv:/srv").unwrap(),
            VolumeSpec::Bind("/srv:/srv".into())
        );
        assert_eq!(
            classify("/cache").unwrap(),
            VolumeSpec::Anonymous {
                dest: "/cache".into()
            }
        );
        assert!(classify("a$b:/x").is_err());
        assert!(classify("x:/y").is_err(), "one character is too short");
        assert_eq!(
            classify("relative").unwrap(),
            VolumeSpec::Bind("relative".into())
        );
    }

    #[test]
    fn mount_flags_become_volume_values() {
        assert_eq!(
            mount_as_volume("type=bind,source=/srv,target=/data,readonly").unwrap(),
            "/srv:/data:ro"
        );
        assert_eq!(
            mount_as_volume("source=db,target=/var/lib/db").unwrap(),
            "db:/var/lib/db"
        );
        assert_eq!(mount_as_volume("type=volume,dst=/cache").unwrap(), "/cache");
        assert!(mount_as_volume("type=tmpfs,dst=/t")
            .unwrap_err()
            .contains("not implemented"));
        assert!(mount_as_volume("type=bind,src=rel,dst=/x").is_err());
        assert!(mount_as_volume("type=bind,src=/x").is_err());
        assert!(mount_as_volume("type=bind,src=/x,dst=/y,bind-propagation=shared").is_err());
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(validate_name("my_vol.1-x").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
    }
}

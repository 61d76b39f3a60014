//! `--tmpfs PATH[:OPTIONS]` and `--mount type=tmpfs`: a fresh tmpfs at a
//! container path, with Docker's defaults (`nosuid,nodev,noexec`) unless
//! the options say otherwise (pure parsing).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub destination: String,
    pub options: Vec<String>,
}

/// Options tmpfs takes from a user; anything else is refused by name.
fn allowed(opt: &str) -> bool {
    let key = opt.split_once('=').map_or(opt, |(k, _)| k);
    matches!(
        key,
        "rw" | "ro"
            | "exec"
            | "noexec"
            | "suid"
            | "nosuid"
            | "dev"
            | "nodev"
            | "size"
            | "mode"
            | "uid"
            | "gid"
            | "nr_inodes"
            | "nr_blocks"
    )
}

/// Reads a `--tmpfs` value.
pub fn parse(spec: &str) -> Result<Tmpfs, String> {
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !dest.starts_with('/') {
        return Err(format!("invalid tmpfs {spec:?}: the path must be absolute"));
    }
    crate::validate::mount_destination(dest)?;
    let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !allowed(o) {
            return Err(format!("invalid tmpfs option {o:?}"));
        }
        let opposite = match o {
            "exec" => Some("noexec"),
            "suid" => Some("nosuid"),
            "dev" => Some("nodev"),
            _ => None,
        };
        if let Some(x) = opposite {
            options.retain(|k| k != x);
        }
        options.push(o.to_string());
    }
    Ok(Tmpfs {
        destination: dest.to_string(),
        options,
    })
}

/// `--mount type=tmpfs,target=T[,tmpfs-size=N][,tmpfs-mode=M][,readonly]`
/// as the `--tmpfs` value it means; None when it is not a tmpfs mount.
pub fn from_mount(spec: &str) -> Option<Result<String, String>> {
    let fields: Vec<(&str, Option<&str>)> = spec
        .split(',')
        .map(|f| match f.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (f.trim(), None),
        })
        .collect();
    if !fields
        .iter()
        .any(|(k, v)| *k == "type" && *v == Some("tmpfs"))
    {
        return None;
    }
    let mut target = None;
    let mut opts = vec![];
    for (k, v) in fields {
        match (k, v) {
            ("type", _) => {}
            ("target" | "destination" | "dst", Some(v)) => target = Some(v.to_string()),
            ("tmpfs-size", Some(v)) => opts.push(format!("size={v}")),
            ("tmpfs-mode", Some(v)) => opts.push(format!("mode={v}")),
            ("readonly" | "ro", None | Some("true" | "1")) => opts.push("ro".into()),
            (k, _) => {
                return Some(Err(format!(
                    "--mount type=tmpfs option {k}: not implemented"
                )))
            }
        }
    }
    Some(match target {
        Some(t) if opts.is_empty() => Ok(t),
        Some(t) => Ok(format!("{t}:{}", opts.join(","))),
        None => Err("--mount: target is required".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_values_take_dockers_defaults_and_overrides() {
        let t = parse("/run:size=64m,exec").unwrap();
        assert_eq!(t.destination, "/run");
        assert_eq!(t.options, ["nosuid", "nodev", "size=64m", "exec"]);
        assert_eq!(parse("/t").unwrap().options, ["nosuid", "nodev", "noexec"]);
        assert!(parse("rel").is_err());
        assert!(parse("/t:bind").is_err());
    }

    #[test]
    fn tmpfs_mounts_become_tmpfs_values() {
        assert_eq!(
            from_mount("type=tmpfs,target=/t,tmpfs-size=1m")
                .unwrap()
                .unwrap(),
            "/t:size=1m"
        );
        assert_eq!(from_mount("type=tmpfs,dst=/t").unwrap().unwrap(), "/t");
        assert!(from_mount("type=volume,dst=/t").is_none());
        assert!(from_mount("type=tmpfs,target=/t,bogus=1").unwrap().is_err());
    }
}

//! The command's path: Go's exec.LookPath over the process's own PATH (as
//! runc does), and HOME added from passwd. Pure but for `probe_file`.

use super::process::ChildFailure;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Used when the process environment has no PATH (Docker's default).
pub use crate::util::DEFAULT_PATH;

/// runc adds HOME from passwd when the environment has none.
pub(crate) fn env_with_home(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

/// PATH from the process environment (not ours), or Docker's default.
pub(crate) fn path_from_env(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// What a candidate file is, for the PATH search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Missing,
    NotExecutable,
    Executable,
}

/// Go's exec.LookPath (which runc uses): a name with a slash is used as is; otherwise each
/// PATH entry in order ("" means "."), first executable regular file wins.
pub(crate) fn lookup_in_path(
    name: &str,
    path_var: &str,
    probe: impl Fn(&Path) -> Probe,
) -> Result<PathBuf, ChildFailure> {
    if name.is_empty() {
        return Err(ChildFailure::NotFound(
            "exec: \"\": executable file not found in $PATH".to_string(),
        ));
    }
    if name.contains('/') {
        return match probe(Path::new(name)) {
            Probe::Executable => Ok(PathBuf::from(name)),
            Probe::NotExecutable => Err(ChildFailure::CannotExecute(format!(
                "exec: \"{name}\": permission denied"
            ))),
            Probe::Missing => Err(ChildFailure::NotFound(format!(
                "exec: \"{name}\": stat {name}: no such file or directory"
            ))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(name);
        if probe(&cand) == Probe::Executable {
            return Ok(cand);
        }
    }
    Err(ChildFailure::NotFound(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

/// The real probe: a regular file (after symlinks) with any execute bit.
pub(crate) fn probe_file(p: &Path) -> Probe {
    match std::fs::metadata(p) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_dir() || m.permissions().mode() & 0o111 == 0 => Probe::NotExecutable,
        Ok(_) => Probe::Executable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_follows_go_rules() {
        let files = |p: &Path| match p.to_str().unwrap() {
            "/usr/bin/sh" | "/bin/sh" | "./local" => Probe::Executable,
            "/usr/bin/data" | "/etc" => Probe::NotExecutable,
            _ => Probe::Missing,
        };
        let path = "/usr/local/bin:/usr/bin:/bin";
        assert_eq!(
            lookup_in_path("sh", path, files).unwrap(),
            PathBuf::from("/usr/bin/sh")
        );
        assert_eq!(
            lookup_in_path("sh", "/bin:/usr/bin", files).unwrap(),
            PathBuf::from("/bin/sh")
        );
        // A non-executable match is skipped, and in the end it is "not found".
        assert_eq!(
            lookup_in_path("data", path, files).unwrap_err(),
            ChildFailure::NotFound("exec: \"data\": executable file not found in $PATH".into())
        );
        assert_eq!(
            lookup_in_path("local", "/bin::/usr/bin", files).unwrap(),
            PathBuf::from("./local")
        );
        let dir = lookup_in_path("/etc", path, files).unwrap_err();
        assert_eq!(
            dir,
            ChildFailure::CannotExecute("exec: \"/etc\": permission denied".into())
        );
        assert_eq!(dir.exit_code(), 126);
        let missing = lookup_in_path("/nope", path, files).unwrap_err();
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(
            lookup_in_path("nope", path, files).unwrap_err().exit_code(),
            127
        );
    }

    #[test]
    fn path_and_home_come_from_the_spec_env() {
        let env = vec!["A=1".to_string(), "PATH=/x:/y".to_string()];
        assert_eq!(path_from_env(&env), "/x:/y");
        assert_eq!(path_from_env(&[]), DEFAULT_PATH);
        assert_eq!(env_with_home(&env, "/root").last().unwrap(), "HOME=/root");
        let with = vec!["HOME=/h".to_string()];
        assert_eq!(env_with_home(&with, "/root"), with);
    }
}

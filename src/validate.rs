//! Pure checks of what a user types, applied where the input enters the
//! library, each failing with the one line the CLI prints: environment
//! names, mount destinations, hostnames and DNS names (RFC 1123), reserved
//! network names; and the escaping that keeps whatever a user typed from
//! reaching a terminal or a log as raw control characters.

use std::path::{Component, Path, PathBuf};

/// `s` with every control character (newline, escape, NUL, DEL...) written
/// as an escape (`\n`, `\u{1b}`), the rest as is: a name echoed back in an
/// error stays one line and cannot drive the terminal.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One `-e` / `--env-file` entry: `NAME=VALUE` or a bare `NAME`; the name
/// must not be empty (Docker's rule; an empty name is no variable at all).
pub(crate) fn env_entry(entry: &str) -> Result<(), String> {
    let name = entry.split_once('=').map_or(entry, |(k, _)| k);
    if name.is_empty() {
        return Err(format!(
            "invalid environment variable: {:?}: the name is empty",
            entry
        ));
    }
    if name.contains('\0') || entry.contains('\0') {
        return Err(format!(
            "invalid environment variable: {:?}: it contains a NUL byte",
            entry
        ));
    }
    Ok(())
}

/// `path` with `.` and `..` applied lexically, absolute (`..` stops at `/`).
fn lexical(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A volume or `--mount` destination: absolute, and not `/`, `/proc`,
/// `/sys` or anything under them (what is there belongs to the runtime and
/// the kernel: a bind over /proc/self or /sys/fs would hand the container
/// the host's view).
pub(crate) fn mount_destination(dest: &str) -> Result<(), String> {
    if !dest.starts_with('/') {
        return Err(format!(
            "invalid mount destination {dest:?}: it must be an absolute path"
        ));
    }
    let clean = lexical(dest);
    let reserved = if clean == Path::new("/") {
        Some("/")
    } else if clean.starts_with("/proc") {
        Some("/proc")
    } else if clean.starts_with("/sys") {
        Some("/sys")
    } else {
        None
    };
    match reserved {
        Some(top) => Err(format!(
            "invalid mount destination {dest:?}: {top} {} cannot be mounted over",
            if top == "/" {
                "itself"
            } else {
                "and anything under it"
            },
        )),
        None => Ok(()),
    }
}

/// One DNS label (RFC 1123): 1 to 63 letters, digits and hyphens, neither
/// first nor last a hyphen.
fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A DNS name (RFC 1123): dot-separated labels, at most `max` characters.
fn dns_name(kind: &str, name: &str, max: usize) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid {kind} {name:?}: {why}"));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > max {
        return bad(&format!("longer than {max} characters"));
    }
    if !name.split('.').all(label_ok) {
        return bad(
            "not a valid RFC 1123 name (labels of letters, digits and '-', separated by dots)",
        );
    }
    Ok(())
}

/// `-h`: an RFC 1123 name the kernel accepts (at most 64 characters).
pub fn hostname(name: &str) -> Result<(), String> {
    dns_name("hostname", name, 64)
}

/// A domain name or network alias: an RFC 1123 name of at most 253 characters.
pub(crate) fn domain_name(name: &str) -> Result<(), String> {
    dns_name("domain name", name, 253)
}

/// Why a name breaks Docker's rule for object names; each kind (container,
/// network) words its own error from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameProblem {
    Empty,
    /// The first character is not a letter or digit.
    BadFirst,
    /// A character other than letters, digits, `_`, `.` and `-`.
    BadChar,
    /// Longer than the kind's limit (in bytes, all allowed characters being ASCII).
    TooLong,
}

/// Docker's rule for container and network names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// with a length limit of `max`. The characters are checked before the length.
pub(crate) fn object_name(name: &str, max: usize) -> Result<(), NameProblem> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(NameProblem::Empty),
        Some(c) if !c.is_ascii_alphanumeric() => return Err(NameProblem::BadFirst),
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(NameProblem::BadChar);
    }
    if name.len() > max {
        return Err(NameProblem::TooLong);
    }
    Ok(())
}

/// Names `network create` must not take: the predefined networks' (`bridge`
/// is the default network, made by minirt itself; `host` and `none` are
/// network modes, so a network of that name could never be chosen).
pub(crate) fn network_name_not_reserved(name: &str) -> Result<(), String> {
    if matches!(name, "bridge" | "host" | "none") {
        return Err(format!(
            "network name {name:?} is reserved for the predefined network of that name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn object_names_follow_dockers_rule() {
        assert_eq!(object_name("web-1.a_b", 64), Ok(()));
        assert_eq!(object_name("w", 64), Ok(()));
        assert_eq!(object_name("", 64), Err(NameProblem::Empty));
        assert_eq!(object_name("-web", 64), Err(NameProblem::BadFirst));
        assert_eq!(object_name("_web", 64), Err(NameProblem::BadFirst));
        assert_eq!(object_name("we b", 64), Err(NameProblem::BadChar));
        assert_eq!(object_name("wé", 64), Err(NameProblem::BadChar));
        assert_eq!(object_name(&"a".repeat(65), 64), Err(NameProblem::TooLong));
        assert_eq!(object_name(&"a".repeat(64), 64), Ok(()));
        // Characters first: a long name with a bad character is about the character.
        let long_bad = format!("{}!", "a".repeat(70));
        assert_eq!(object_name(&long_bad, 64), Err(NameProblem::BadChar));
    }

    #[test]
    fn control_characters_are_escaped_the_rest_kept() {
        assert_eq!(escape_controls("web-1"), "web-1");
        assert_eq!(escape_controls("a\nb"), "a\\nb");
        assert_eq!(escape_controls("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape_controls("x\0\t\u{7f}"), "x\\u{0}\\t\\u{7f}");
        assert_eq!(escape_controls("café"), "café");
    }

    proptest! {
        #[test]
        fn escaped_text_never_holds_a_control_character(s in ".*") {
            let e = escape_controls(&s);
            prop_assert!(!e.chars().any(char::is_control));
            prop_assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn environment_names_must_not_be_empty() {
        for ok in ["A=b", "A=", "A", "A==b", "_x=1"] {
            assert!(env_entry(ok).is_ok(), "{ok}");
        }
        for bad in ["=x", "=", ""] {
            let e = env_entry(bad).unwrap_err();
            assert!(e.contains("the name is empty"), "{e}");
        }
        assert!(env_entry("A=b\0c").is_err());
    }

    #[test]
    fn mount_destinations_keep_off_root_proc_and_sys() {
        for ok in [
            "/data",
            "/etc/x",
            "/process",
            "/system",
            "/dev/shm/x",
            "/srv/../data",
        ] {
            assert!(mount_destination(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/",
            "/proc",
            "/proc/x",
            "/sys",
            "/sys/fs/cgroup",
            "/data/../proc",
            "//",
            "/./sys/",
            "/..",
        ] {
            let e = mount_destination(bad).unwrap_err();
            assert!(e.contains("cannot be mounted over"), "{bad}: {e}");
        }
        assert!(mount_destination("rel").unwrap_err().contains("absolute"));
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for ok in ["box1", "a", "web-1.example.org", "0abc", &"a".repeat(63)] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bad\nname",
            "bad name",
            "-lead",
            "trail-",
            "a..b",
            ".a",
            "a.",
            "under_score",
            "émoji",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(64)),
        ] {
            let e = hostname(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e:?}");
        }
        assert!(domain_name(&["a"; 120].join(".")).is_ok());
        assert!(domain_name(&["a"; 130].join(".")).is_err());
    }

    #[test]
    fn predefined_network_names_are_reserved() {
        for r in ["bridge", "host", "none"] {
            assert!(network_name_not_reserved(r).is_err());
        }
        for ok in ["bridge2", "hostnet", "None", "mynet"] {
            assert!(network_name_not_reserved(ok).is_ok());
        }
    }
}

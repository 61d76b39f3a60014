//! Fault points: named places in each command where a test can make the
//! process die at once (SIGKILL, as a crash or an OOM kill would), to prove
//! that the next command heals whatever the dead one left half made.
//!
//! `MINIRT_FAULT=<point>` arms one point; compiled in only with the
//! `fault-injection` feature, a no-op (and free) otherwise. A new command
//! (e.g. a registry pull or push) adds `fault::point("pull-after-blob")` at
//! each step and lists the points under its name in [`POINTS`]: the
//! fault matrix test (`tests/e2e/faults.rs`) kills every listed point and
//! fails when a listed point is never reached.

/// Every fault point, by the command that passes it (a point shared by
/// several commands, such as `after-veth`, is listed under each).
pub const POINTS: &[(&str, &[&str])] = &[
    (
        "run",
        &[
            "after-create",
            "after-rootfs",
            "after-cgroup",
            "after-clone",
            "after-veth",
            "after-rules",
            "after-network",
        ],
    ),
    // The caller of a detached start dies while its monitor starts the
    // container: the monitor's hand-over races the next command's reconcile.
    ("run -d", &["run-detach-after-fork"]),
    (
        "network create",
        &[
            "net-create-after-row",
            "bridge-after-link",
            "net-create-after-rules",
        ],
    ),
    (
        "network rm",
        &[
            "net-rm-after-row",
            "bridge-rm-after-rules",
            "net-rm-after-bridge",
        ],
    ),
    (
        "network connect",
        &["connect-after-row", "after-veth", "connect-after-address"],
    ),
    (
        "network disconnect",
        &["disconnect-after-unplug", "disconnect-after-row"],
    ),
    (
        "rm",
        &[
            "rm-after-detach-many",
            "rm-after-kill",
            "rm-after-finish",
            "rm-after-files",
        ],
    ),
    ("stop", &["stop-after-term", "stop-after-kill"]),
    (
        "load",
        &[
            "load-after-temp",
            "layer-after-extract",
            "layer-after-rename",
        ],
    ),
    ("import", &["layer-after-extract", "layer-after-rename"]),
    // cli branch: commit
    ("commit", &["layer-after-extract", "layer-after-rename"]),
];

/// The points of one command (empty for a command that has none).
pub fn points_of(command: &str) -> &'static [&'static str] {
    POINTS
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, p)| *p)
        .unwrap_or(&[])
}

/// Dies here (SIGKILL to itself) when `MINIRT_FAULT` names this point.
pub fn point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("MINIRT_FAULT").as_deref() == Ok(name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    let _ = name;
}

/// Waits here while a test holds this point: hold points order two
/// processes in a test (never a timed sleep there): with
/// `MINIRT_HOLD=<point>` and `MINIRT_HOLD_RELEASE=<file>`, the process
/// creates `<file>.reached` when it gets here and waits until `<file>`
/// exists. Compiled in only with the `fault-injection` feature.
pub fn hold(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("MINIRT_HOLD").as_deref() == Ok(name) {
        if let Some(release) = std::env::var_os("MINIRT_HOLD_RELEASE") {
            let release = std::path::PathBuf::from(release);
            let mut reached = release.clone().into_os_string();
            reached.push(".reached");
            let _ = std::fs::write(&reached, b"");
            while !release.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_names_are_unique_within_a_command_and_well_formed() {
        for (cmd, points) in POINTS {
            let mut seen = std::collections::BTreeSet::new();
            for p in *points {
                assert!(seen.insert(*p), "{cmd}: {p} listed twice");
                assert!(
                    p.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                    "{cmd}: {p}"
                );
            }
        }
        assert_eq!(points_of("stop"), &["stop-after-term", "stop-after-kill"]);
        assert!(points_of("nope").is_empty());
    }
}

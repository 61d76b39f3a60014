//! Capabilities: Docker's default set and its --cap-add/--cap-drop rule
//! (pure), and the child's bounding-set drop and capset (through `Sys`).

use super::process::{errno_text, other, ChildFailure, ProcessError};
use super::sys::Sys;
use caps::Capability;

/// Docker's default capability set (moby's oci/caps/defaults.go).
pub(crate) fn default_capabilities() -> Vec<Capability> {
    use Capability::*;
    vec![
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_FSETID,
        CAP_FOWNER,
        CAP_MKNOD,
        CAP_NET_RAW,
        CAP_SETGID,
        CAP_SETUID,
        CAP_SETFCAP,
        CAP_SETPCAP,
        CAP_NET_BIND_SERVICE,
        CAP_SYS_CHROOT,
        CAP_KILL,
        CAP_AUDIT_WRITE,
    ]
}

/// One --cap-add/--cap-drop word: "NET_ADMIN", "cap_net_admin", or "ALL" (every capability).
pub(crate) fn parse_capability(name: &str) -> Result<Vec<Capability>, ProcessError> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("ALL") {
        let mut all: Vec<Capability> = caps::all().into_iter().collect();
        all.sort_by_key(|c| c.index());
        return Ok(all);
    }
    caps::to_canonical(trimmed)
        .parse::<Capability>()
        .map(|c| vec![c])
        .map_err(|_| ProcessError::UnknownCapability(name.to_string()))
}

/// Docker's rule: start from the default set, add, then drop ("ALL" allowed on both sides).
pub(crate) fn adjust_capabilities(
    base: &[Capability],
    add: &[String],
    drop: &[String],
) -> Result<Vec<Capability>, ProcessError> {
    let mut set: Vec<Capability> = base.to_vec();
    for a in add {
        for c in parse_capability(a)? {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    for d in drop {
        let gone = parse_capability(d)?;
        set.retain(|c| !gone.contains(c));
    }
    set.sort_by_key(|c| c.index());
    Ok(set)
}

/// The capabilities a spec asks for, as a kernel bitmask.
pub(crate) fn capability_mask(spec_caps: &Option<Vec<String>>) -> Result<u64, ProcessError> {
    let list = match spec_caps {
        None => default_capabilities(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                v.extend(parse_capability(n)?);
            }
            v
        }
    };
    Ok(list.iter().fold(0u64, |m, c| m | c.bitmask()))
}

/// Drop every capability outside `mask` from the bounding set (needs CAP_SETPCAP, so first).
pub(crate) fn drop_bounding(sys: &impl Sys, mask: u64) -> Result<(), ChildFailure> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last.min(63) {
        if mask & (1u64 << cap) != 0 {
            continue;
        }
        match sys.prctl(libc::PR_CAPBSET_DROP, cap as u64, 0) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => {
                return Err(other(format!(
                    "drop capability {cap} from bounding set: {}",
                    errno_text(e)
                )))
            }
        }
    }
    Ok(())
}

/// Our own permitted capabilities as a bitmask (all bits when unreadable: capset decides).
pub(crate) fn permitted_mask() -> u64 {
    caps::read(None, caps::CapSet::Permitted)
        .map(|set| set.iter().fold(0u64, |m, c| m | c.bitmask()))
        .unwrap_or(u64::MAX)
}

/// The three sets in one capset call; ambient cleared.
pub(crate) fn set_process_caps(
    sys: &impl Sys,
    effective: u64,
    permitted: u64,
    inheritable: u64,
) -> Result<(), ChildFailure> {
    sys.capset(effective, permitted, inheritable)
        .map_err(|e| other(format!("set capabilities: {}", errno_text(e))))?;
    match sys.prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
        0,
    ) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(other(format!(
            "clear ambient capabilities: {}",
            errno_text(e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_like_docker_flags() {
        assert_eq!(
            parse_capability("NET_ADMIN").unwrap(),
            vec![Capability::CAP_NET_ADMIN]
        );
        assert_eq!(
            parse_capability("cap_net_admin").unwrap(),
            vec![Capability::CAP_NET_ADMIN]
        );
        assert_eq!(parse_capability("ALL").unwrap().len(), caps::all().len());
        assert!(matches!(
            parse_capability("FLY"),
            Err(ProcessError::UnknownCapability(_))
        ));

        let d = default_capabilities();
        assert_eq!(d.len(), 14);
        let adj = adjust_capabilities(&d, &["NET_ADMIN".into()], &["CHOWN".into(), "MKNOD".into()])
            .unwrap();
        assert_eq!(adj.len(), 13);
        assert!(adj.contains(&Capability::CAP_NET_ADMIN) && !adj.contains(&Capability::CAP_CHOWN));
        assert!(adjust_capabilities(&d, &[], &["all".into()])
            .unwrap()
            .is_empty());
        assert_eq!(
            adjust_capabilities(&[], &["ALL".into()], &["SYS_ADMIN".into()])
                .unwrap()
                .len(),
            caps::all().len() - 1
        );

        let m = capability_mask(&None).unwrap();
        assert_eq!(m.count_ones(), 14);
        assert_ne!(m & Capability::CAP_KILL.bitmask(), 0);
        assert_eq!(
            capability_mask(&Some(vec!["CAP_KILL".into()])).unwrap(),
            1 << 5
        );
    }
}

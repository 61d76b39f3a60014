//! A seccomp profile compiled to one classic-BPF filter for this build's architecture: the
//! profile's actions and argument rules become a verdict per syscall number, which `bpf`
//! turns into a program. Pure.

use super::bpf;
use super::numbers::{native_audit_arch, native_oci_arch, syscall_number};
use super::{Result, SeccompError};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use std::collections::BTreeMap;

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActAllow => bpf::RET_ALLOW,
        ScmpActErrno => bpf::RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActKill | ScmpActKillThread => bpf::RET_KILL_THREAD,
        ScmpActKillProcess => bpf::RET_KILL_PROCESS,
        ScmpActTrap => bpf::RET_TRAP,
        ScmpActLog => bpf::RET_LOG,
        ScmpActTrace => bpf::RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        ScmpActNotify => {
            return Err(SeccompError::Profile(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ))
        }
    })
}

fn condition(a: &LinuxSeccompArg) -> Result<bpf::Cond> {
    use LinuxSeccompOperator::*;
    let (op, value) = match a.op() {
        ScmpCmpNe => (bpf::Op::Ne, a.value()),
        ScmpCmpLt => (bpf::Op::Lt, a.value()),
        ScmpCmpLe => (bpf::Op::Le, a.value()),
        ScmpCmpEq => (bpf::Op::Eq, a.value()),
        ScmpCmpGe => (bpf::Op::Ge, a.value()),
        ScmpCmpGt => (bpf::Op::Gt, a.value()),
        // libseccomp's meaning: (arg & value) == valueTwo.
        ScmpCmpMaskedEq => (bpf::Op::MaskedEq(a.value()), a.value_two().unwrap_or(0)),
    };
    let arg = u8::try_from(a.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            SeccompError::Profile(format!("argument index {} out of range", a.index()))
        })?;
    Ok(bpf::Cond { arg, op, value })
}

/// Compiles `profile` for this build's architecture into the filter to
/// install (none when it allows everything).
///
/// Per syscall number: the profile's entries whose action is not the
/// default (like runc, which drops those), strongest action first, as the
/// kernel would rank verdicts of several filters; an entry without
/// argument conditions ends the list. Names unknown on this architecture
/// are skipped, as libseccomp does. Only the native architecture is
/// allowed: a syscall of another ABI (32-bit x86 on x86_64) kills the
/// process, where Docker would filter those too.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<Program>> {
    let arch = native_audit_arch()?;
    if let Some(archs) = profile.architectures() {
        let native = native_oci_arch();
        if !archs.is_empty() && !archs.contains(&native) {
            return Err(SeccompError::Profile(format!(
                "profile does not cover this architecture ({native:?})"
            )));
        }
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut entries: BTreeMap<u32, Vec<(Vec<bpf::Cond>, u32)>> = BTreeMap::new();
    for s in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(s.action(), s.errno_ret().or(profile.default_errno_ret()))?;
        if act == default {
            continue;
        }
        let conds = s
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>>>()?;
        for name in s.names() {
            if let Some(nr) = syscall_number(name) {
                entries
                    .entry(nr as u32)
                    .or_default()
                    .push((conds.clone(), act));
            }
        }
    }
    if default == bpf::RET_ALLOW && entries.is_empty() {
        return Ok(Vec::new());
    }
    let by_nr: BTreeMap<u32, bpf::Verdict> = entries
        .into_iter()
        .map(|(nr, mut rules)| {
            rules.sort_by_key(|(_, act)| std::cmp::Reverse(bpf::strength(*act)));
            if let Some(i) = rules.iter().position(|(conds, _)| conds.is_empty()) {
                rules.truncate(i + 1);
            }
            let verdict = match rules.as_slice() {
                [(conds, act)] if conds.is_empty() => bpf::Verdict::Ret(*act),
                _ => bpf::Verdict::Rules {
                    rules,
                    fallback: default,
                },
            };
            (nr, verdict)
        })
        .collect();
    let prog =
        bpf::compile(arch, &by_nr, default).map_err(|e| SeccompError::Profile(e.to_string()))?;
    Ok(vec![prog])
}

/// One compiled filter.
pub type Program = Vec<bpf::Insn>;

#[cfg(test)]
mod tests {
    use super::super::default_caps;
    use super::super::profile::{default_profile, AF_VSOCK, ALLOWED};
    use super::*;
    use oci_spec::runtime::Arch;

    #[test]
    fn profile_compiles_to_one_short_filter_deciding_like_docker() {
        let progs = compile(&default_profile(&default_caps())).unwrap();
        assert_eq!(progs.len(), 1);
        let p = &progs[0];
        // Docker's allow-list as ranges: a few hundred instructions, not thousands.
        assert!(p.len() < 400, "{} instructions", p.len());
        let arch = native_audit_arch().unwrap();
        let run = |name: &str, args: [u64; 6]| {
            bpf::run(p, arch, syscall_number(name).unwrap() as u32, &args)
        };
        let eperm = Some(bpf::RET_ERRNO | libc::EPERM as u32);
        let allow = Some(bpf::RET_ALLOW);
        for name in ALLOWED.iter().filter(|n| syscall_number(n).is_some()) {
            if !["clone", "personality", "socket"].contains(name) {
                assert_eq!(run(name, [0; 6]), allow, "{name}");
            }
        }
        for name in [
            "keyctl",
            "bpf",
            "mount",
            "unshare",
            "setns",
            "reboot",
            "kexec_load",
        ] {
            assert_eq!(run(name, [0; 6]), eperm, "{name}");
        }
        assert_eq!(run("clone", [0x11, 0, 0, 0, 0, 0]), allow); // SIGCHLD|...
        assert_eq!(
            run("clone", [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(run("clone", [1 << 40, 0, 0, 0, 0, 0]), allow); // high half ignored by mask
        assert_eq!(
            run("clone3", [0; 6]),
            Some(bpf::RET_ERRNO | libc::ENOSYS as u32)
        );
        assert_eq!(run("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), allow);
        assert_eq!(run("personality", [0x0040_0000, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(run("socket", [AF_VSOCK, 1, 0, 0, 0, 0]), eperm);
        assert_eq!(run("socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]), allow);
        // Numbers nobody named, and another ABI.
        assert_eq!(bpf::run(p, arch, 999, &[0; 6]), eperm);
        assert_eq!(bpf::run(p, arch, 0x4000_0000, &[0; 6]), eperm);
        assert_eq!(
            bpf::run(p, 0x4000_0003, 1, &[0; 6]),
            Some(bpf::RET_KILL_PROCESS)
        );

        // SYS_ADMIN: clone is unconditional, clone3 allowed.
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let p = &compile(&default_profile(&caps)).unwrap()[0];
        let clone = syscall_number("clone").unwrap() as u32;
        let ns = [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0];
        assert_eq!(bpf::run(p, arch, clone, &ns), allow);
        // An allow-all profile needs no filter at all.
        assert!(compile(&LinuxSeccomp::default()).unwrap().is_empty());
        // A profile for another architecture is refused.
        let mut other = default_profile(&[]);
        other.set_architectures(Some(vec![Arch::ScmpArchS390x]));
        assert!(compile(&other).is_err());
    }
}

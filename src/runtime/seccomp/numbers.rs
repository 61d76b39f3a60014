//! Syscall numbers and architecture identities. The numbers come from the `syscalls` crate,
//! whose tables are generated from the kernel's own syscall tables, so a syscall added by a
//! new kernel only needs a crate update, not a hand-kept list.

use super::{Result, SeccompError};
use oci_spec::runtime::Arch;
use std::str::FromStr;

/// The OCI architecture of this build.
pub fn native_oci_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::ScmpArchAarch64
    } else {
        Arch::ScmpArchX86_64
    }
}

/// The audit architecture of this build's syscalls (what the filter checks).
pub(crate) fn native_audit_arch() -> Result<u32> {
    if cfg!(target_arch = "x86_64") {
        Ok(0xc000_003e) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Ok(0xc000_00b7) // AUDIT_ARCH_AARCH64
    } else {
        Err(SeccompError::Profile(
            "seccomp filters are only supported on x86_64 and aarch64".into(),
        ))
    }
}

/// The number of syscall `name` on `arch`, if that architecture has it. Only the two
/// architectures minirt builds for have tables.
pub(crate) fn number_on(arch: Arch, name: &str) -> Option<i64> {
    match arch {
        Arch::ScmpArchX86_64 => syscalls::x86_64::Sysno::from_str(name)
            .ok()
            .map(|s| i64::from(s.id())),
        Arch::ScmpArchAarch64 => syscalls::aarch64::Sysno::from_str(name)
            .ok()
            .map(|s| i64::from(s.id())),
        _ => None,
    }
}

/// The number of `name` on this build's architecture, if it has one.
pub fn syscall_number(name: &str) -> Option<i64> {
    number_on(native_oci_arch(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_architecture() {
        let x86 = Arch::ScmpArchX86_64;
        let arm = Arch::ScmpArchAarch64;
        assert_eq!(number_on(x86, "read"), Some(0));
        assert_eq!(number_on(x86, "keyctl"), Some(250));
        assert_eq!(number_on(x86, "clone3"), Some(435));
        assert_eq!(number_on(arm, "read"), Some(63));
        assert_eq!(number_on(arm, "clone3"), Some(435));
        // Legacy calls the generic table dropped exist only on x86_64.
        assert_eq!(number_on(x86, "open"), Some(2));
        assert_eq!(number_on(arm, "open"), None);
        assert_eq!(number_on(x86, "no_such_call"), None);
        assert_eq!(number_on(Arch::ScmpArchS390x, "read"), None);
    }
}

//! Seccomp: Docker's default profile (`profile`, OCI data that depends on the capability
//! set), the syscall numbers it names (`numbers`), its compilation into one classic-BPF
//! filter (`compile` over the `bpf` code generator) and loading it into the child before
//! execve (`install`). Everything is pure up to `install`.

pub mod bpf;
pub mod compile;
pub mod install;
pub mod numbers;
pub mod profile;

pub use compile::{compile, Program};
pub use install::install;
pub use numbers::{native_oci_arch, syscall_number};
pub use profile::default_profile;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

type Result<T> = std::result::Result<T, SeccompError>;

/// Docker's default capability set as names, the set most tests compile the profile for.
#[cfg(test)]
fn default_caps() -> Vec<String> {
    crate::runtime::caps::default_capabilities()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

//! Loads a container's device filter into the kernel and attaches it to its
//! cgroup2 directory: cgroup v2 has no `devices.allow`, only a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program run on every mknod and open of a
//! device node (the program itself is built in `devices.rs`).
//!
//! The program is attached with `BPF_F_ALLOW_MULTI`, as runc and crun do: a
//! device program a parent cgroup has (systemd puts some there) still runs
//! too, and every one of them must allow the access. The kernel holds the
//! program while it is attached, so our descriptors are closed right away;
//! removing the cgroup directory detaches and frees it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::devices::DevicePolicy;
use super::ebpf;
use super::{CgroupError, Result};

// linux/bpf.h
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
#[cfg(test)]
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
#[cfg(test)]
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel takes a
/// shorter attr than its own and treats the missing fields as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Calls bpf(2) with `attr`, returning its non-negative result.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: attr is a live, initialised #[repr(C)] struct laid out as the
    // head of `union bpf_attr` for `cmd`, and its size is passed with it; any
    // pointers inside it point at buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the device program; on a refusal, asks again with the verifier's
/// log so the error says why.
fn load(policy: &DevicePolicy) -> Result<OwnedFd> {
    let code = ebpf::encode(&policy.program());
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"minirt_devices");
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (code.len() / 8) as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        ..Default::default()
    };
    let first = bpf(BPF_PROG_LOAD, &mut attr(&mut []));
    let err = match first {
        // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor we own.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => e,
    };
    let mut log = vec![0u8; 64 * 1024];
    let detail = match bpf(BPF_PROG_LOAD, &mut attr(&mut log)) {
        Ok(fd) => {
            // SAFETY: as above; loading worked the second time, close it.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            String::new()
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&log);
            let last = text
                .trim_end_matches('\0')
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            if last.is_empty() {
                last
            } else {
                format!(" (verifier: {last})")
            }
        }
    };
    let hint = match err.raw_os_error() {
        Some(libc::ENOSYS) => "; the kernel lacks CONFIG_BPF_SYSCALL",
        Some(libc::EPERM) => "; loading BPF programs needs CAP_SYS_ADMIN (or CAP_BPF)",
        Some(libc::EINVAL) if detail.is_empty() => {
            "; the kernel lacks CONFIG_CGROUP_BPF (cgroup device programs)"
        }
        _ => "",
    };
    Err(CgroupError::Io(format!(
        "cannot load the device filter: {err}{detail}{hint}"
    )))
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| CgroupError::Invalid(format!("{} contains a NUL byte", dir.display())))?;
    // SAFETY: path is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(CgroupError::Io(format!(
            "cannot open {}: {}",
            dir.display(),
            io::Error::last_os_error()
        )));
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Restricts device access of every process in the cgroup2 directory `dir`
/// (and its descendants) to what `policy` allows.
pub fn attach(dir: &Path, policy: &DevicePolicy) -> Result<()> {
    let prog = load(policy)?;
    let cgroup = open_dir(dir)?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        CgroupError::Io(format!(
            "cannot attach the device filter to {}: {e}",
            dir.display()
        ))
    })?;
    Ok(())
}

/// The ids of the device programs attached to `dir` itself.
#[cfg(test)]
pub(crate) fn attached_ids(dir: &Path) -> io::Result<Vec<u32>> {
    #[repr(C)]
    #[derive(Default)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let cgroup = open_dir(dir).map_err(|e| io::Error::other(e.to_string()))?;
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// Whether the kernel still holds the program with this id.
#[cfg(test)]
pub(crate) fn program_exists(id: u32) -> io::Result<bool> {
    #[repr(C)]
    #[derive(Default)]
    struct GetFdAttr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    match bpf(
        BPF_PROG_GET_FD_BY_ID,
        &mut GetFdAttr {
            prog_id: id,
            ..Default::default()
        },
    ) {
        Ok(fd) => {
            // SAFETY: a new descriptor we own; only its existence mattered.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

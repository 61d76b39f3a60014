//! The waiting half of a detached container's monitor. Once the container
//! runs, the monitor execs `minirt __wait PID ROOT RUNROOT ID`: a process
//! that only sits in waitpid(2) touches a few pages, so a host with hundreds
//! of containers does not pay a full runtime's memory for each. When the
//! container exits it execs `minirt __finish` to record the exit and tear
//! down (exec keeps the pid, so the monitor stays the container's parent).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

pub const WAIT_ARG: &str = "__wait";

/// Entry point checked first thing in `main`: Some(exit code) when this
/// process is a waiter, None otherwise (normal command line).
pub fn run_if_waiter() -> Option<i32> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a.as_bytes()) != Some(WAIT_ARG.as_bytes()) {
        return None;
    }
    let [exe, _, pid, root, run_root, id] = args.as_slice() else {
        return Some(125);
    };
    let Some(pid) = pid.to_str().and_then(|p| p.parse::<i32>().ok()) else {
        return Some(125);
    };
    release_clean_file_pages();
    let code = super::runtime::wait_exit(pid);
    let argv = [
        exe.as_bytes(),
        b"--root",
        root.as_bytes(),
        b"--run-root",
        run_root.as_bytes(),
        b"__finish",
        id.as_bytes(),
        code.to_string().as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect::<Vec<_>>();
    let path = CString::new("/proc/self/exe").ok()?;
    let _ = nix::unistd::execv(&path, &argv);
    // exec failed: finish here instead, with a full runtime's memory.
    let inst =
        crate::Instance::new(std::path::Path::new(root), std::path::Path::new(run_root)).ok()?;
    Some(
        match super::runtime::finish(&inst, &id.to_string_lossy(), code) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    )
}

/// Unmaps, from this process only, the pages of read-only file mappings
/// that hold nothing but file contents (no private copies: smaps shows
/// `Anonymous: 0 kB`): the runtime's code and constants that startup
/// touched and the wait never needs again. They stay in the page cache,
/// shared with every other minirt process; the few the wait loop and the
/// final exec use are mapped back on demand. What is left is this process's
/// real footprint: ~200 KiB of RSS instead of ~2 MiB, per detached container.
fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_readonly_file_mappings(&smaps) {
        // SAFETY: MADV_DONTNEED on a read-only, file-backed mapping without
        // private pages only drops page table entries; the contents are
        // read back from the file on the next access, unchanged.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Address ranges of mappings in `smaps` that are file-backed, not
/// writable, and hold no anonymous (private, modified) pages (pure).
fn clean_readonly_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            // A mapping header: "start-end perms offset dev inode [path]".
            let perms = f.next().unwrap_or_default();
            let inode = f.nth(2).unwrap_or("0");
            let path = f.next().unwrap_or_default();
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            current =
                range.filter(|_| !perms.contains('w') && inode != "0" && path.starts_with('/'));
        } else if first == "Anonymous:" {
            if let Some(r) = current.take() {
                if f.next() == Some("0") {
                    out.push(r);
                }
            }
        }
    }
    out
}

/// Replaces the monitor with a waiter for `pid`; returns only on failure.
pub fn exec_waiter(inst: &crate::Instance, id: &str, pid: i32) -> nix::Error {
    let argv: Vec<CString> = [
        b"minirt".as_slice(),
        WAIT_ARG.as_bytes(),
        pid.to_string().as_bytes(),
        inst.root.as_os_str().as_bytes(),
        inst.run_root.as_os_str().as_bytes(),
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let Ok(path) = CString::new("/proc/self/exe") else {
        return nix::Error::EINVAL;
    };
    match nix::unistd::execv(&path, &argv) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_readonly_file_mappings_are_released() {
        let smaps = "\
00200000-005b8000 r--p 00000000 fe:00 10010634   /usr/local/bin/minirt
Rss:                 448 kB
Anonymous:             0 kB
005b8000-00baa000 r-xp 003b7000 fe:00 10010634   /usr/local/bin/minirt
Rss:                1544 kB
Anonymous:             0 kB
00baa000-00bb2000 r--p 009a8000 fe:00 10010634   /usr/local/bin/minirt
Anonymous:            32 kB
00bb2000-00bba000 rw-p 009af000 fe:00 10010634   /usr/local/bin/minirt
Anonymous:            32 kB
00bba000-00bc1000 rw-p 00000000 00:00 0
Anonymous:            16 kB
7ffd53d21000-7ffd53d42000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            12 kB
7f35d5a8a000-7f35d5a8c000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            clean_readonly_file_mappings(smaps),
            vec![(0x200000, 0x5b8000), (0x5b8000, 0xbaa000)]
        );
    }

    /// In this (test) process, with other test threads running: dropping
    /// the clean pages leaves code and constants intact (a private page
    /// dropped by mistake would lose relocations or data and crash).
    #[test]
    fn releasing_keeps_the_process_working() {
        release_clean_file_pages();
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v.join("").len(), 16 + 2 * 84);
        assert!(clean_readonly_file_mappings("").is_empty());
    }
}

//! The firewall guardian (`minirt __fwguard`): one small process per
//! instance, alive while the instance has networks, that listens to
//! nftables' change notifications (NFNLGRP_NFTABLES) and runs the heal check
//! as soon as anything removes a table, chain or rule of minirt's table.
//!
//! Why a process: everything that protects the containers (the raw
//! prerouting guard, the forward filter) lives in minirt's own table, and
//! `nft flush ruleset` (a firewall reload) removes it with everything else;
//! a second table, or a guard in another table, goes the same way. Before
//! the guardian, the host stayed open from the flush until the next minirt
//! command; now it stays open until the notification is read and one
//! rebuild is applied (the e2e test measures that it comes back on its own).

use super::NetworkError;
use crate::{util, Instance};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const NFNLGRP_NFTABLES: libc::c_int = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;

fn pid_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("fwguard.pid")
}

/// True when the notifications in `b` (one datagram) include a deletion of
/// a table, chain, rule or set of `table`. Element changes are left out:
/// every `run` and `rm` makes them, and the next command's heal check
/// compares elements anyway. Pure.
pub fn touches_table(mut b: &[u8], table: &str) -> bool {
    while b.len() >= 20 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 20 || len > b.len() {
            return false;
        }
        let typ = u16::from_ne_bytes([b[4], b[5]]);
        let (subsys, msg) = (typ >> 8, typ & 0xff);
        let deletion = matches!(
            msg,
            NFT_MSG_DELTABLE | NFT_MSG_DELCHAIN | NFT_MSG_DELRULE | NFT_MSG_DELSET
        );
        if subsys == NFNL_SUBSYS_NFTABLES && deletion && first_attr_is(&b[20..len], table) {
            return true;
        }
        b = &b[(len.div_ceil(4) * 4).min(b.len())..];
    }
    false
}

/// Attribute 1 of every one of these messages is the table's name.
fn first_attr_is(mut attrs: &[u8], table: &str) -> bool {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let typ = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return false;
        }
        if typ == 1 {
            let name = &attrs[4..len];
            let name = name.split(|c| *c == 0).next().unwrap_or(name);
            return name == table.as_bytes();
        }
        attrs = &attrs[(len.div_ceil(4) * 4).min(attrs.len())..];
    }
    false
}

fn subscribe() -> Result<OwnedFd, NetworkError> {
    // Wakes up every 5 s to see whether it is still needed.
    super::nlsock::open(1 << (NFNLGRP_NFTABLES - 1), 5)
}

/// Whether the instance still has a network (and so needs guarding).
fn has_networks(inst: &Instance) -> bool {
    if !inst.run_root.exists() {
        return false;
    }
    crate::store::Store::open(&inst.db_path())
        .ok()
        .and_then(|s| crate::store::networks::list_networks(s.conn()).ok())
        .is_some_and(|n| !n.is_empty())
}

fn running(inst: &Instance) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_path(inst)) else {
        return false;
    };
    let mut it = text.split_whitespace();
    let (Some(pid), Some(start)) = (
        it.next().and_then(|p| p.parse().ok()),
        it.next().and_then(|s| s.parse().ok()),
    ) else {
        return false;
    };
    util::process_alive(pid, start)
}

/// Starts the guardian unless it runs (cheap: one pid file and one /proc
/// read). Called by every command's heal check while networks exist.
pub fn ensure(inst: &Instance) -> Result<(), NetworkError> {
    if std::env::var_os("MINIRT_NO_FWGUARD").is_some() || running(inst) {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| NetworkError::Firewall(format!("starting the firewall guardian: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&inst.root)
        .arg("--run-root")
        .arg(&inst.run_root)
        .arg("__fwguard")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and close_range are async-signal-safe syscalls; marking
    // inherited fds close-on-exec keeps a caller's pipes from living on in
    // the long-running guardian.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| NetworkError::Firewall(format!("starting the firewall guardian: {e}")))?;
    if !status.success() {
        return Err(NetworkError::Firewall(format!(
            "the firewall guardian did not start ({status})"
        )));
    }
    Ok(())
}

/// `minirt __fwguard`: forks once more (the starter reaps this process at
/// once), subscribes, then heals after every deletion in minirt's table and
/// leaves when the instance has no network left.
pub fn run(inst: &Instance) -> Result<(), NetworkError> {
    // Subscribed before the starter returns: a flush right after the
    // command that started us is seen.
    let fd = subscribe()?;
    // Only one guardian per instance: the pid file is written under this lock.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(inst.run_root.join("fwguard.lock"))
        .map_err(|e| NetworkError::Firewall(format!("fwguard.lock: {e}")))?;
    let Ok(lock) = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        return Ok(()); // another guardian serves this instance
    };
    // SAFETY: no other thread exists in this process.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| NetworkError::Firewall(format!("fork: {e}")))?
    {
        nix::unistd::ForkResult::Parent { .. } => return Ok(()),
        nix::unistd::ForkResult::Child => {}
    }
    let me = std::process::id() as i32;
    let start = util::process_start_time(me).unwrap_or(0);
    let _ = std::fs::write(pid_path(inst), format!("{me} {start}\n"));
    let table = inst.nft_table();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let dirty = if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => false,
                // Notifications were lost: check, to be safe.
                Some(libc::ENOBUFS) => true,
                _ => break,
            }
        } else {
            touches_table(&buf[..n as usize], &table)
        };
        if dirty {
            if let Err(e) = super::heal(inst) {
                tracing::warn!("restoring firewall rules: {e}");
            }
        }
        if !has_networks(inst) {
            break;
        }
    }
    let _ = std::fs::remove_file(pid_path(inst));
    drop(lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg: u16, table: &str) -> Vec<u8> {
        let mut name = table.as_bytes().to_vec();
        name.push(0);
        let alen = 4 + name.len();
        let total = 20 + alen.div_ceil(4) * 4;
        let mut m = vec![];
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, port id
        m.extend_from_slice(&[1, 0, 0, 0]);
        m.extend_from_slice(&(alen as u16).to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(&name);
        m.resize(total, 0);
        m
    }

    #[test]
    fn only_deletions_in_our_table_count() {
        let t = "minirt_1a2b3c4d";
        assert!(touches_table(&msg(NFT_MSG_DELTABLE, t), t));
        assert!(touches_table(&msg(NFT_MSG_DELRULE, t), t));
        assert!(!touches_table(&msg(NFT_MSG_DELTABLE, "other"), t));
        assert!(!touches_table(&msg(NFT_MSG_DELTABLE, "minirt_1a2b3c4"), t));
        // NEWTABLE, and element deletions, are not a reason to check.
        assert!(!touches_table(&msg(0, t), t));
        assert!(!touches_table(&msg(14, t), t));
        // Several messages in one datagram.
        let mut two = msg(0, "x");
        two.extend(msg(NFT_MSG_DELCHAIN, t));
        assert!(touches_table(&two, t));
        assert!(!touches_table(&[1, 2, 3], t));
    }
}

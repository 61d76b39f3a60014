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
//!
//! It reaps its children (the heal's `nfnl::release` forks one to close a
//! socket), leaves when the instance has no network, its root is gone or
//! nothing but itself keeps its network namespace (a bench or test that
//! deleted its namespace and left its root behind), and is replaced by the
//! next command when the minirt binary changed (its pid file records the
//! binary's identity), so an upgrade never leaves the old rules healing.

use super::NetworkError;
use crate::{util, Instance};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

const NFNLGRP_NFTABLES: libc::c_int = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;

/// The longest a guardian goes without checking that it is still needed.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

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
    // Checked first: opening a missing database would create it.
    if !inst.run_root.exists() || !inst.db_path().exists() {
        return false;
    }
    crate::store::Store::open(&inst.db_path())
        .ok()
        .and_then(|s| crate::store::networks::list_networks(s.conn()).ok())
        .is_some_and(|n| !n.is_empty())
}

/// What the pid file says: pid, start time and the identity of the binary
/// the guardian runs ("" when the file predates identities). Pure.
pub(crate) fn parse_pid_file(text: &str) -> Option<(i32, u64, &str)> {
    let mut it = text.trim_end_matches('\n').splitn(3, ' ');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    Some((pid, start, it.next().unwrap_or("")))
}

/// The running binary's identity: device, inode, size, mtime and path of
/// /proc/self/exe. An upgrade (a new file, or the same path rewritten)
/// changes it. None when it cannot be read.
pub(crate) fn exe_identity() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::env::current_exe().ok()?;
    let m = std::fs::metadata(&exe).ok()?;
    Some(format!(
        "{}:{} {} {}.{:09} {}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        exe.display()
    ))
}

/// The live guardian of the instance: (pid, start time, binary identity).
fn running(inst: &Instance) -> Option<(i32, u64, String)> {
    let text = std::fs::read_to_string(pid_path(inst)).ok()?;
    let (pid, start, id) = parse_pid_file(&text)?;
    util::process_alive(pid, start).then(|| (pid, start, id.to_string()))
}

/// Stops a guardian that runs another binary (verified by its start time)
/// and waits, briefly, until it is gone and its lock free.
fn replace(pid: i32, start: u64) {
    if !util::process_alive(pid, start) {
        return;
    }
    // SAFETY: a signal to the pid the guardian's own pid file names, whose
    // start time was just checked.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    util::wait_until(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(5),
        || !util::process_alive(pid, start),
    );
}

/// Starts the guardian unless it runs (cheap: one pid file, one /proc read
/// and one stat). Called by every command's heal check while networks
/// exist. A guardian of another binary (minirt was upgraded) is replaced.
pub(crate) fn ensure(inst: &Instance) -> Result<(), NetworkError> {
    if std::env::var_os("MINIRT_NO_FWGUARD").is_some() {
        return Ok(());
    }
    if let Some((pid, start, id)) = running(inst) {
        match exe_identity() {
            Some(me) if me != id => replace(pid, start),
            _ => return Ok(()),
        }
    }
    crate::network::service::start(inst, "__fwguard", Stdio::null())
        .map_err(|e| NetworkError::Firewall(format!("the firewall guardian did not start: {e}")))
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
    // No other thread exists in this process.
    let detached = super::service::detach_keeping(lock)
        .map_err(|e| NetworkError::Firewall(format!("fork: {e}")))?;
    let Some(lock) = detached else {
        return Ok(());
    };
    let me = std::process::id() as i32;
    let start = util::process_start_time(me).unwrap_or(0);
    let id = exe_identity().unwrap_or_default();
    let _ = std::fs::write(pid_path(inst), format!("{me} {start} {id}\n"));
    let table = inst.nft_table();
    let mut buf = vec![0u8; 64 * 1024];
    let born = std::time::Instant::now();
    let mut last_check = born;
    loop {
        reap_children();
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
        // Whether we are still needed: after a deletion in our table (the
        // last `network rm` is one), when nothing came for a while (the
        // receive timeout), and at least every CHECK_EVERY. Not after every
        // notification: each `run` and `rm` sends about six (their element
        // changes), and a look at the store after each cost 85 system calls
        // and a query per `run`.
        let quiet = n < 0;
        let due = last_check.elapsed() >= CHECK_EVERY;
        if dirty || quiet || due {
            // A young guardian may have been started by a `network create`
            // whose row is not committed yet: it waits for it a while.
            // A root that is gone is never coming back.
            let root_gone = !inst.run_root.exists() || !inst.db_path().exists();
            if root_gone
                || (!has_networks(inst) && born.elapsed() >= std::time::Duration::from_secs(10))
            {
                break;
            }
        }
        // A scan of /proc, at most every CHECK_EVERY.
        if due {
            last_check = std::time::Instant::now();
            if netns_orphaned() {
                break;
            }
        }
    }
    reap_children();
    let _ = std::fs::remove_file(pid_path(inst));
    drop(lock);
    Ok(())
}

/// Reaps exited children without waiting (the heal's `nfnl::release`
/// forks one per socket close and never waits for it). Only between heals,
/// so no `Command` of the heal loses its child to it.
fn reap_children() {
    // SAFETY: waitpid on any child, without blocking, status not read.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// The parent of `pid`, from /proc/PID/stat.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a mountinfo text holds a bind mount of namespace `ns`
/// ("net:[4026532281]": the root field of an nsfs mount). Pure.
pub fn mountinfo_has_ns(mountinfo: &str, ns: &str) -> bool {
    mountinfo
        .lines()
        .any(|l| l.split_whitespace().nth(3) == Some(ns))
}

/// True when nothing but this process (and its children) keeps its network
/// namespace: no bind mount of it (`ip netns add`) and no other process in
/// it. The host's namespace always has init; a test's or bench's has its
/// mount until it is deleted.
fn netns_orphaned() -> bool {
    let Ok(ns) = std::fs::read_link("/proc/self/ns/net") else {
        return false;
    };
    let ns = ns.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mountinfo_has_ns(&mounts, &ns) {
        return false;
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || parent_pid(pid) == Some(me) {
            continue;
        }
        if std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == ns) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_names_pid_start_and_binary() {
        assert_eq!(
            parse_pid_file("42 777 2049:13 9 1.000000002 /usr/bin/minirt x\n"),
            Some((42, 777, "2049:13 9 1.000000002 /usr/bin/minirt x"))
        );
        // Written before identities: an empty one, which no binary has.
        assert_eq!(parse_pid_file("42 777\n"), Some((42, 777, "")));
        assert_eq!(parse_pid_file("x 777"), None);
        assert_eq!(parse_pid_file(""), None);
        let me = exe_identity().unwrap();
        assert!(me.ends_with(&std::env::current_exe().unwrap().display().to_string()));
        assert_eq!(exe_identity(), Some(me));
    }

    #[test]
    fn a_bind_mount_of_the_namespace_keeps_it() {
        let mi = "36 25 0:4 net:[4026532281] /run/netns/t1 rw shared:5 - nsfs nsfs rw\n\
                  40 25 0:38 / /sys rw - sysfs sysfs rw\n";
        assert!(mountinfo_has_ns(mi, "net:[4026532281]"));
        assert!(!mountinfo_has_ns(mi, "net:[4026532282]"));
        assert!(!mountinfo_has_ns("", "net:[1]"));
    }

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

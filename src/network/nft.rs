//! Applies rendered nftables scripts with the `nft` tool: one `nft -f -` per
//! batch, which the kernel commits atomically (all of it or nothing).

use super::NetworkError;
use std::io::Write;
use std::process::{Command, Stdio};

/// The nft binary; overridable for unusual installs.
fn nft_bin() -> String {
    if let Ok(b) = std::env::var("MINIRT_NFT") {
        return b;
    }
    // Resolve once by absolute path: exec'ing a bare name walks $PATH with a
    // failed execve per entry before it finds nft.
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"] {
        let p = format!("{dir}/nft");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    "nft".into()
}

/// Does table `inet <table>` exist in the caller's network namespace? One
/// NFT_MSG_GETTABLE request over nfnetlink (microseconds), instead of an
/// `nft list` process (milliseconds). Errors mean "cannot tell".
pub(crate) fn table_exists(table: &str) -> Result<bool, NetworkError> {
    table_exists_in("inet", table)
}

/// `table_exists` for a table of another family (`inet` or `bridge`).
pub(crate) fn table_exists_in(family: &str, table: &str) -> Result<bool, NetworkError> {
    let family = match family {
        "bridge" => libc::NFPROTO_BRIDGE as u8,
        _ => libc::NFPROTO_INET as u8,
    };
    let msg = gettable_request(family, table, 1);
    let err =
        |what: &str, e: std::io::Error| NetworkError::Firewall(format!("nfnetlink {what}: {e}"));
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(err("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: the buffer is valid for its length; the kernel is the peer.
    if unsafe { libc::send(raw, msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(err("send", std::io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err("recv", e));
        }
        match parse_gettable_reply(&buf[..n as usize]) {
            Some(answer) => return answer,
            None => continue,
        }
    }
}

const NFT_MSG_GETTABLE: u16 = (10 << 8) | 1; // NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
const NFT_MSG_NEWTABLE: u16 = 10 << 8;

/// nlmsghdr + nfgenmsg(NFPROTO_INET) + NFTA_TABLE_NAME. Pure.
pub(crate) fn gettable_request(family: u8, table: &str, seq: u32) -> Vec<u8> {
    let name_len = table.len() + 1;
    let attr_len = 4 + name_len;
    let total = 16 + 4 + attr_len.div_ceil(4) * 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&NFT_MSG_GETTABLE.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]); // family, version, res_id
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes()); // NFTA_TABLE_NAME
    m.extend_from_slice(table.as_bytes());
    m.push(0);
    m.resize(total, 0);
    m
}

/// Reads one datagram of the reply: Some(true) when the table came back (or
/// the request was acked), Some(false) for ENOENT, None to read on. Pure.
pub(crate) fn parse_gettable_reply(mut b: &[u8]) -> Option<Result<bool, NetworkError>> {
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let typ = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            return None;
        }
        if typ == NFT_MSG_NEWTABLE {
            return Some(Ok(true));
        }
        if typ == libc::NLMSG_ERROR as u16 && len >= 20 {
            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            return Some(match code {
                0 => Ok(true),
                c if -c == libc::ENOENT => Ok(false),
                c => Err(NetworkError::Firewall(format!(
                    "nfnetlink: {}",
                    std::io::Error::from_raw_os_error(-c)
                ))),
            });
        }
        let step = (len.div_ceil(4) * 4).min(b.len());
        b = &b[step..];
    }
    None
}

/// Run one script as one atomic transaction in the caller's network namespace.
pub(crate) fn apply(script: &str) -> Result<(), NetworkError> {
    if script.trim().is_empty() {
        return Ok(());
    }
    let out = run(&["-f", "-"], Some(script))?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Firewall(format!(
        "nftables rejected the ruleset: {}",
        first_error(&String::from_utf8_lossy(&out.stderr))
    )))
}

/// Remove the whole table (every chain, map and element); absent is fine.
pub(crate) fn delete_table(table: &str) -> Result<(), NetworkError> {
    // `add` first so the delete never fails on a missing table (no `destroy` in nft 1.0.6).
    apply(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
}

/// `nft list table inet <table>` output, for inspection and tests.
pub fn list_table(table: &str) -> Result<String, NetworkError> {
    let out = run(&["list", "table", "inet", table], None)?;
    if !out.status.success() {
        return Err(NetworkError::Firewall(format!(
            "cannot list nftables table {table}: {}",
            first_error(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -j list table inet <table>`: the structure the heal check compares.
pub(crate) fn list_table_json(table: &str) -> Result<String, NetworkError> {
    list_json("inet", table)
}

/// One chain as a script that re-adds its rules (`nft list chain` output is
/// valid `nft -f` input).
pub(crate) fn list_chain(table: &str, chain: &str) -> Result<String, NetworkError> {
    let out = run(&["list", "chain", "inet", table, chain], None)?;
    if !out.status.success() {
        return Err(NetworkError::Firewall(format!(
            "cannot list chain {chain}: {}",
            first_error(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -j list table <family> <table>` output (JSON), for integrity checks.
pub(crate) fn list_json(family: &str, table: &str) -> Result<String, NetworkError> {
    let out = run(&["-j", "list", "table", family, table], None)?;
    if !out.status.success() {
        return Err(NetworkError::Firewall(format!(
            "cannot list nftables table {family} {table}: {}",
            first_error(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, NetworkError> {
    let bin = nft_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NetworkError::Firewall(format!("cannot run {bin}: {e} (is nftables installed?)"))
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means nft exited early; its stderr says why.
        let _ = pipe.write_all(text.as_bytes());
    }
    child
        .wait_with_output()
        .map_err(|e| NetworkError::Firewall(format!("waiting for {bin}: {e}")))
}

/// nft prints `file:line:col: Error: what` then the offending line and carets;
/// keep the error and the offending statement on one line.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|l| l.contains("Error:")) {
        Some(i) => {
            let msg = lines[i];
            let msg = msg.find("Error:").map_or(msg, |p| &msg[p..]);
            match lines.get(i + 1).map(|l| l.trim()).filter(|l| !l.is_empty()) {
                Some(stmt) => format!("{msg} (in: {stmt})"),
                None => msg.to_string(),
            }
        }
        None => lines
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or_else(|| "no error message".to_string(), |l| l.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_picks_the_error_line() {
        let e = "/dev/stdin:3:1-20: Error: Could not process rule: No such file or directory\n\
                 add rule inet t c accept\n^^^^^^\n";
        assert_eq!(
            first_error(e),
            "Error: Could not process rule: No such file or directory (in: add rule inet t c accept)"
        );
        assert_eq!(first_error("\n  something odd\n"), "something odd");
        assert_eq!(first_error(""), "no error message");
    }
}

#[cfg(test)]
#[path = "nft_root_tests.rs"]
mod root_tests;

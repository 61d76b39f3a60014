//! The kernel's nftables generation (bumped at every commit, anyone's) and
//! the marker of a past intact check: what lets a heal skip listing a table
//! nothing touched since (`rules::heal`, `antispoof::heal`).

use super::{nfnl, NetworkError};

/// Boot id and network namespace of the caller.
pub(crate) fn host_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_default();
    format!("boot {} netns {ns}", boot.trim())
}

pub(crate) fn save_marker(path: &std::path::Path, key: &str) {
    // Written aside and renamed: a concurrent reader sees the old or the new key.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, key).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

const NFT_MSG_GETGEN: u16 = (10 << 8) | 16;
const NFT_MSG_NEWGEN: u16 = (10 << 8) | 15;
const NFTA_GEN_ID: u16 = 1;

/// NFT_MSG_GETGEN, as `nft` sends it. Pure.
fn getgen_request(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&NFT_MSG_GETGEN.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m
}

/// The generation id of a NEWGEN reply; an error message is an error, other
/// messages None. Pure.
fn parse_newgen(b: &[u8]) -> Option<Result<u32, i32>> {
    let len = u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let typ = u16::from_ne_bytes(b.get(4..6)?.try_into().ok()?);
    let msg = b.get(..len)?;
    if typ == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes(msg.get(16..20)?.try_into().ok()?);
        return Some(Err(-code));
    }
    if typ != NFT_MSG_NEWGEN {
        return None;
    }
    let mut a = msg.get(20..)?;
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let atyp = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if alen < 4 || alen > a.len() {
            return None;
        }
        if atyp == NFTA_GEN_ID && alen >= 8 {
            return Some(Ok(u32::from_be_bytes(a[4..8].try_into().ok()?)));
        }
        a = &a[(alen.div_ceil(4) * 4).min(a.len())..];
    }
    None
}

/// The nftables generation of the caller's network namespace.
pub(crate) fn generation() -> Result<u32, NetworkError> {
    use std::os::fd::AsRawFd;
    let fd = nfnl::open_socket()?;
    let msg = getgen_request(1);
    let err = |what: &str| {
        NetworkError::Firewall(format!(
            "nfnetlink {what}: {}",
            std::io::Error::last_os_error()
        ))
    };
    // SAFETY: the buffer is valid for its length; the kernel is the peer.
    if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(err("send"));
    }
    let mut buf = [0u8; 512];
    let answer = loop {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            break Err(err("recv"));
        }
        match parse_newgen(&buf[..n as usize]) {
            Some(Ok(g)) => break Ok(g),
            Some(Err(code)) => {
                break Err(NetworkError::Firewall(format!(
                    "nfnetlink getgen: {}",
                    std::io::Error::from_raw_os_error(code)
                )))
            }
            None => continue,
        }
    };
    // Closing waits for nf_tables' pending destruction work when a commit
    // (anyone's) was just made: 15 ms median measured right after an element
    // delete, 40 us otherwise. A child closes it for us (see nfnl::release).
    nfnl::release(fd);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getgen_is_framed_like_nft_and_its_reply_parsed() {
        // nft 1.0.6 (strace): len 20, NFT_MSG_GETGEN, NLM_F_REQUEST, AF_UNSPEC.
        let r = getgen_request(5);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[4..6], &0x0a10u16.to_ne_bytes());
        assert_eq!(&r[6..8], &1u16.to_ne_bytes());
        assert_eq!(&r[8..12], &5u32.to_ne_bytes());
        assert_eq!(&r[16..20], &[0, 0, 0, 0]);
        // NEWGEN: header, nfgenmsg, NFTA_GEN_ID (be32), NFTA_GEN_PROC_PID.
        let mut reply = vec![];
        reply.extend_from_slice(&36u32.to_ne_bytes());
        reply.extend_from_slice(&0x0a0fu16.to_ne_bytes());
        reply.extend_from_slice(&[0; 10]);
        reply.extend_from_slice(&[0, 0, 0, 0]);
        reply.extend_from_slice(&8u16.to_ne_bytes());
        reply.extend_from_slice(&1u16.to_ne_bytes());
        reply.extend_from_slice(&1234u32.to_be_bytes());
        reply.extend_from_slice(&8u16.to_ne_bytes());
        reply.extend_from_slice(&2u16.to_ne_bytes());
        reply.extend_from_slice(&99u32.to_be_bytes());
        assert_eq!(parse_newgen(&reply), Some(Ok(1234)));
        let mut e = vec![];
        e.extend_from_slice(&36u32.to_ne_bytes());
        e.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        e.extend_from_slice(&[0; 10]);
        e.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        e.extend_from_slice(&[0; 16]);
        assert_eq!(parse_newgen(&e), Some(Err(libc::EPERM)));
        assert_eq!(parse_newgen(&[1, 2]), None);
    }
}

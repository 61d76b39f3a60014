//! Publishes and unpublishes ports (elements of the four port maps) with one
//! nfnetlink batch on our own socket, instead of an `nft` process per change;
//! `add_batch`/`del_batch` do the same for elements of any set (antispoof.rs).
//!
//! The encoders are pure and match what `nft add/delete element` sends
//! (checked byte for byte in the tests), with two differences: no
//! NFTA_SET_ELEM_LIST_SET_ID (nft copies it from its cache; the kernel looks
//! the set up by name first) and NLM_F_ACK on each element message, so the
//! kernel answers every element and an error names the element it belongs to.

use super::firewall::FwPort;
use super::portspec::Proto;
use super::NetworkError;
use std::os::fd::{AsRawFd, OwnedFd};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;

/// Add or delete elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// NEWSETELEM with NLM_F_CREATE and without NLM_F_EXCL, as `nft add
    /// element`: re-adding an element with the same data succeeds.
    Add,
    Del,
}

/// One map element, encoded as the kernel stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// NFPROTO_* of the table (inet for the port maps).
    pub family: u8,
    pub map: String,
    /// Register-padded key: each component of a concatenation padded to 4
    /// bytes; a lone inet_service is its 2 bytes.
    pub key: Vec<u8>,
    /// ctr ip . ctr port, register-padded; empty for an element of a set.
    pub data: Vec<u8>,
    /// For error messages: `tcp 0.0.0.0:8080 -> 10.77.0.2:80`.
    pub what: String,
}

/// The elements of `firewall::port_elements` for one port (the DNAT map
/// element unless routed, then the `pub_*` set element, no data). Pure.
pub fn port_elements(p: &FwPort) -> Vec<Element> {
    let published = published_element(p);
    if p.routed {
        return vec![published];
    }
    vec![port_element(p), published]
}

fn octets(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// "6" for the IPv6 maps and sets (`pm6_tcp`, `pub6_udp`, ...).
fn six(p: &FwPort) -> &'static str {
    if p.ctr_ip.is_ipv6() {
        "6"
    } else {
        ""
    }
}

/// The container address . port in `pub_tcp`/`pub_udp`. Pure.
pub fn published_element(p: &FwPort) -> Element {
    let proto = match p.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let mut key = octets(p.ctr_ip);
    let b = p.ctr_port.to_be_bytes();
    key.extend_from_slice(&[b[0], b[1], 0, 0]);
    Element {
        family: libc::NFPROTO_INET as u8,
        map: format!("pub{}_{proto}", six(p)),
        key,
        data: vec![],
        what: format!("{proto} {}:{} (published)", p.ctr_ip, p.ctr_port),
    }
}

/// The DNAT map element of one port. Pure.
pub fn port_element(p: &FwPort) -> Element {
    let proto = match p.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let padded_port = |port: u16| {
        let b = port.to_be_bytes();
        [b[0], b[1], 0, 0]
    };
    let mut data = octets(p.ctr_ip);
    data.extend_from_slice(&padded_port(p.ctr_port));
    let six = six(p);
    let (map, key) = if p.host_ip.is_unspecified() {
        (
            format!("pm{six}_any_{proto}"),
            p.host_port.to_be_bytes().to_vec(),
        )
    } else {
        let mut k = octets(p.host_ip);
        k.extend_from_slice(&padded_port(p.host_port));
        (format!("pm{six}_{proto}"), k)
    };
    Element {
        family: libc::NFPROTO_INET as u8,
        map,
        key,
        data,
        what: format!(
            "{proto} {}:{} -> {}:{}",
            p.host_ip, p.host_port, p.ctr_ip, p.ctr_port
        ),
    }
}

fn attr(m: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    m.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&typ.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(m.len().div_ceil(4) * 4, 0);
}

fn nested(m: &mut Vec<u8>, typ: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let at = m.len();
    m.extend_from_slice(&[0; 4]);
    body(m);
    let len = (m.len() - at) as u16;
    m[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    m[at + 2..at + 4].copy_from_slice(&(typ | NLA_F_NESTED).to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// nlmsghdr + nfgenmsg, then `body`; the length is patched in at the end.
fn message(
    m: &mut Vec<u8>,
    typ: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let at = m.len();
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&typ.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.push(family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&res_id.to_be_bytes());
    body(m);
    let len = (m.len() - at) as u32;
    m[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

/// One NEWSETELEM / DELSETELEM message for one element. Pure.
pub fn setelem_message(op: Op, table: &str, e: &Element, seq: u32, ack: bool) -> Vec<u8> {
    let (typ, mut flags) = match op {
        Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
        Op::Del => (NFT_MSG_DELSETELEM, NLM_F_REQUEST),
    };
    if ack {
        flags |= NLM_F_ACK;
    }
    let mut m = Vec::with_capacity(128);
    let typ = (NFNL_SUBSYS_NFTABLES << 8) | typ;
    message(&mut m, typ, flags, seq, e.family, 0, |m| {
        attr(m, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        attr(m, NFTA_SET_ELEM_LIST_SET, &cstr(&e.map));
        nested(m, NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
            nested(m, NFTA_LIST_ELEM, |m| {
                nested(m, NFTA_SET_ELEM_KEY, |m| attr(m, NFTA_DATA_VALUE, &e.key));
                if op == Op::Add && !e.data.is_empty() {
                    nested(m, NFTA_SET_ELEM_DATA, |m| attr(m, NFTA_DATA_VALUE, &e.data));
                }
            });
        });
    });
    m
}

/// BATCH_BEGIN (seq `first`), one acked element message each (seq first+1..),
/// BATCH_END: one transaction, committed whole or not at all. Pure.
pub fn batch(op: Op, table: &str, elems: &[Element], first: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(40 + 128 * elems.len());
    let marker = |m: &mut Vec<u8>, typ: u16, seq: u32| {
        message(
            m,
            typ,
            NLM_F_REQUEST,
            seq,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        )
    };
    marker(&mut m, NFNL_MSG_BATCH_BEGIN, first);
    for (i, e) in elems.iter().enumerate() {
        m.extend_from_slice(&setelem_message(op, table, e, first + 1 + i as u32, true));
    }
    marker(&mut m, NFNL_MSG_BATCH_END, first + 1 + elems.len() as u32);
    m
}

/// The (seq, errno) of every NLMSG_ERROR in one datagram; errno 0 is an ack.
/// Pure.
pub fn parse_acks(mut b: &[u8]) -> Vec<(u32, i32)> {
    let mut out = vec![];
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            break;
        }
        let typ = u16::from_ne_bytes([b[4], b[5]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        if typ == libc::NLMSG_ERROR as u16 && len >= 20 {
            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            out.push((seq, -code));
        }
        b = &b[(len.div_ceil(4) * 4).min(b.len())..];
    }
    out
}

fn os_err(what: &str) -> NetworkError {
    NetworkError::Firewall(format!(
        "nfnetlink {what}: {}",
        std::io::Error::last_os_error()
    ))
}

/// The kernel answers inside sendmsg; the timeout only guards against a
/// kernel that never answers (we then fall back to nft).
pub(super) fn open_socket() -> Result<OwnedFd, NetworkError> {
    super::nlsock::open(0, 5)
}

/// Sends one batch and returns each element's errno (0 = done). Any nonzero
/// errno means the kernel aborted the whole batch.
fn transact(
    fd: &OwnedFd,
    op: Op,
    table: &str,
    elems: &[Element],
    seq: &mut u32,
) -> Result<Vec<i32>, NetworkError> {
    let first = *seq;
    *seq += elems.len() as u32 + 2;
    let msg = batch(op, table, elems, first);
    // SAFETY: the buffer is valid for its length; the kernel is the peer.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(os_err("send"));
    }
    let mut codes: Vec<Option<i32>> = vec![None; elems.len()];
    let mut buf = vec![0u8; 64 * 1024];
    while codes.iter().any(Option::is_none) {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(NetworkError::Firewall(format!("nfnetlink recv: {e}")));
        }
        for (s, code) in parse_acks(&buf[..n as usize]) {
            match s.checked_sub(first + 1).map(|i| i as usize) {
                Some(i) if i < elems.len() => codes[i] = Some(code),
                // The batch itself was refused (begin/end): no element acks follow.
                _ if code != 0 => {
                    return Err(NetworkError::Firewall(format!(
                        "nftables refused the batch: {}",
                        std::io::Error::from_raw_os_error(code)
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(codes.into_iter().map(|c| c.unwrap_or(0)).collect())
}

fn element_error(op: Op, table: &str, e: &Element, code: i32) -> NetworkError {
    let verb = match op {
        Op::Add => "cannot publish",
        Op::Del => "cannot unpublish",
    };
    NetworkError::Firewall(format!(
        "{verb} {} (nftables map inet {table} {}): {}",
        e.what,
        e.map,
        std::io::Error::from_raw_os_error(code)
    ))
}

/// Adds `elems` in one transaction (all or none); re-adding an element with
/// the same data is not an error. `Some((element, errno))` names the one the
/// kernel refused.
pub fn add_batch(table: &str, elems: &[Element]) -> Result<Option<(Element, i32)>, NetworkError> {
    if elems.is_empty() {
        return Ok(None);
    }
    let codes = with_socket(|fd, seq| transact(fd, Op::Add, table, elems, seq))?;
    Ok(codes
        .iter()
        .position(|c| *c != 0)
        .map(|i| (elems[i].clone(), codes[i])))
}

/// Deletes `elems`; those already gone (or a missing table or set: ENOENT)
/// are not an error. `Some((element, errno))` names one that could not go.
pub fn del_batch(table: &str, elems: &[Element]) -> Result<Option<(Element, i32)>, NetworkError> {
    let mut left = elems.to_vec();
    if left.is_empty() {
        return Ok(None);
    }
    with_socket(|fd, seq| {
        // The kernel aborts the whole batch on the first error but still
        // answers every element, so each round drops the ones already gone
        // and retries the rest: at most one round more than there are
        // absent elements.
        loop {
            let codes = transact(fd, Op::Del, table, &left, seq)?;
            if let Some(i) = codes.iter().position(|c| *c != 0 && *c != libc::ENOENT) {
                return Ok(Some((left[i].clone(), codes[i])));
            }
            if codes.iter().all(|c| *c == 0) {
                return Ok(None);
            }
            let mut codes = codes.into_iter();
            left.retain(|_| codes.next() == Some(0));
            if left.is_empty() {
                return Ok(None);
            }
        }
    })
}

thread_local! {
    /// The socket of this thread's [`Shared`] scope and its next sequence
    /// number: `Some(None)` in a scope before its first batch.
    static SHARED: std::cell::RefCell<Option<Option<(OwnedFd, u32)>>> =
        const { std::cell::RefCell::new(None) };
}

/// While one lives, the element batches of this thread go through one
/// socket, released (see [`release`]) when the outermost scope ends,
/// instead of a socket and a release each. Every release ends in the
/// kernel's flush of nf_tables' deferred destruction under the commit
/// mutex, which any commit in the namespace then waits for: the fewer, the
/// fewer such waits (a teardown's port maps and anti-spoofing elements are
/// one release, not two).
pub(crate) struct Shared {
    outermost: bool,
}

impl Shared {
    pub(crate) fn begin() -> Shared {
        let outermost = SHARED.with(|s| {
            let mut s = s.borrow_mut();
            let first = s.is_none();
            if first {
                *s = Some(None);
            }
            first
        });
        Shared { outermost }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        if let Some((fd, _)) = SHARED.with(|s| s.borrow_mut().take()).flatten() {
            release(fd);
        }
    }
}

/// The inode of the socket this thread's scope keeps, if any (tests).
#[cfg(test)]
pub(crate) fn shared_socket_inode() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    SHARED.with(|s| {
        let s = s.borrow();
        let (fd, _) = s.as_ref()?.as_ref()?;
        let file = std::fs::File::from(fd.try_clone().ok()?);
        file.metadata().ok().map(|m| m.ino())
    })
}

/// Runs `f` on this thread's shared socket (opened on first use) inside a
/// [`Shared`] scope, else on a socket of its own that is released after.
/// A socket that saw an error is not kept: unread answers could be taken
/// for the next batch's.
fn with_socket<T>(
    f: impl FnOnce(&OwnedFd, &mut u32) -> Result<T, NetworkError>,
) -> Result<T, NetworkError> {
    let kept = SHARED.with(|s| s.borrow_mut().as_mut().and_then(Option::take));
    let (fd, mut seq) = match kept {
        Some(k) => k,
        None => (open_socket()?, 1),
    };
    let out = f(&fd, &mut seq);
    let back = match out.is_ok() {
        true => SHARED.with(|s| match s.borrow_mut().as_mut() {
            Some(slot) => {
                *slot = Some((fd, seq));
                None
            }
            None => Some(fd),
        }),
        false => Some(fd),
    };
    if let Some(fd) = back {
        release(fd);
    }
    out
}

/// Adds the ports' map elements in one transaction (all or none). Re-adding
/// a port with the same target is not an error.
pub fn add_port_elements(table: &str, ports: &[FwPort]) -> Result<(), NetworkError> {
    let elems: Vec<Element> = ports.iter().flat_map(port_elements).collect();
    match add_batch(table, &elems)? {
        Some((e, code)) => Err(element_error(Op::Add, table, &e, code)),
        None => Ok(()),
    }
}

/// The elements that go with the ports: routed or not, both kinds (an
/// absent one is fine to delete). Pure.
pub fn port_del_elements(ports: &[FwPort]) -> Vec<Element> {
    ports
        .iter()
        .flat_map(|p| {
            port_elements(&FwPort {
                routed: false,
                ..*p
            })
        })
        .collect()
}

/// Deletes the ports' map elements; those already gone (or a missing table
/// or map: ENOENT) are not an error.
pub fn del_port_elements(table: &str, ports: &[FwPort]) -> Result<(), NetworkError> {
    match del_batch(table, &port_del_elements(ports))? {
        Some((e, code)) => Err(element_error(Op::Del, table, &e, code)),
        None => Ok(()),
    }
}

/// Closes the socket without making anyone wait. Releasing an nfnetlink
/// socket runs nf_tables' NETLINK_URELEASE handler, which, holding the
/// netns' commit mutex, flushes the deferred destruction of the last commit
/// (`nf_tables_trans_destroy_flush_work`: its worker waits out an RCU grace
/// period, ~8-12 ms here); `nft` pays the same in its own close. The change
/// is already committed and in effect, so a child holds the last
/// reference (`closer::close_later`): it waits until our copy is closed,
/// then waits out a grace period itself with
/// `membarrier(MEMBARRIER_CMD_GLOBAL)`, which is `synchronize_rcu` without
/// any lock, and only then closes, when the destruction is done and the
/// flush has nothing to wait for. Closing at once held the commit mutex for
/// the grace period, and every nftables change in the namespace queued
/// behind it: the next batch of the same teardown (the anti-spoofing
/// elements after the port maps), the next command's port maps.
pub(super) fn release(fd: OwnedFd) {
    super::closer::close_later(fd);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from `strace -X raw` of nft 1.0.6, as listed in a hex string.
    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(s).unwrap()
    }

    fn u16ne(v: u16) -> String {
        hex::encode(v.to_ne_bytes())
    }
    fn u32ne(v: u32) -> String {
        hex::encode(v.to_ne_bytes())
    }

    /// A message on table `minirt_cap` as nft sends it (sequence 1, the
    /// inet family, the table-name attribute), followed by `body`.
    fn minirt_cap_msg(len: u32, typ: u16, flags: u16, body: &str) -> Vec<u8> {
        hex(&format!(
            "{} {} {} {} 00000000 01000000 0f00 0100 6d696e6972745f63617000 00 {body}",
            u32ne(len),
            u16ne(typ),
            u16ne(flags),
            u32ne(1),
        ))
    }

    #[test]
    fn elements_are_register_padded() {
        let e = port_element(&FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80));
        assert_eq!(e.map, "pm_any_tcp");
        assert_eq!(e.key, vec![0x1f, 0x90]);
        assert_eq!(e.data, vec![10, 77, 0, 2, 0, 80, 0, 0]);
        assert_eq!(e.what, "tcp 0.0.0.0:8080 -> 10.77.0.2:80");
        let e = port_element(&FwPort::test(
            Proto::Udp,
            "198.51.100.1",
            8081,
            "10.77.0.3",
            81,
        ));
        assert_eq!(e.map, "pm_udp");
        assert_eq!(e.key, vec![198, 51, 100, 1, 0x1f, 0x91, 0, 0]);
        assert_eq!(e.data, vec![10, 77, 0, 3, 0, 81, 0, 0]);
    }

    /// The element message of `nft add element inet minirt_cap pm_any_tcp
    /// { 8080 : 10.77.0.2 . 80 }`, without nft's NFTA_SET_ELEM_LIST_SET_ID
    /// (so 8 bytes shorter: 88, not 96) and with `flags` as given.
    fn nft_add_any(flags: u16) -> Vec<u8> {
        minirt_cap_msg(
            88,
            0x0a0c,
            flags,
            "0f00 0200 706d5f616e795f74637000 00
             2400 0380 2000 0180 0c00 0180 0600 0100 1f90 0000
             1000 0280 0c00 0100 0a4d0002 00500000",
        )
    }

    #[test]
    fn add_message_matches_nft() {
        let e = port_element(&FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80));
        // nft: NLM_F_REQUEST | NLM_F_CREATE, no NLM_F_EXCL.
        assert_eq!(
            setelem_message(Op::Add, "minirt_cap", &e, 1, false),
            nft_add_any(0x401)
        );
        assert_eq!(
            setelem_message(Op::Add, "minirt_cap", &e, 1, true),
            nft_add_any(0x405)
        );
    }

    /// tcp 198.51.100.1:8081 -> 10.77.0.3:81, a key of address and port.
    fn specific_tcp() -> FwPort {
        FwPort::test(Proto::Tcp, "198.51.100.1", 8081, "10.77.0.3", 81)
    }

    #[test]
    fn add_concatenated_message_matches_nft() {
        // nft add element inet minirt_cap pm_tcp { 198.51.100.1 . 8081 : 10.77.0.3 . 81 }
        let want = minirt_cap_msg(
            88,
            0x0a0c,
            0x401,
            "0b00 0200 706d5f74637000 00
             2800 0380 2400 0180 1000 0180 0c00 0100 c6336401 1f910000
             1000 0280 0c00 0100 0a4d0003 00510000",
        );
        let e = port_element(&specific_tcp());
        assert_eq!(setelem_message(Op::Add, "minirt_cap", &e, 1, false), want);
    }

    #[test]
    fn delete_messages_match_nft() {
        // nft delete element inet minirt_cap pm_tcp { 198.51.100.1 . 8081 }:
        // exactly nft's bytes (nft sends no SET_ID with a delete).
        let want = minirt_cap_msg(
            72,
            0x0a0e,
            0x1,
            "0b00 0200 706d5f74637000 00
             1800 0380 1400 0180 1000 0180 0c00 0100 c6336401 1f910000",
        );
        let e = port_element(&specific_tcp());
        assert_eq!(setelem_message(Op::Del, "minirt_cap", &e, 1, false), want);
        // nft delete element inet minirt_cap pm_any_tcp { 8080 }
        let want = minirt_cap_msg(
            72,
            0x0a0e,
            0x5,
            "0f00 0200 706d5f616e795f74637000 00
             1400 0380 1000 0180 0c00 0180 0600 0100 1f900000",
        );
        let e = port_element(&FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80));
        assert_eq!(setelem_message(Op::Del, "minirt_cap", &e, 1, true), want);
    }

    #[test]
    fn batch_is_framed_like_nft() {
        let e = port_element(&FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80));
        let b = batch(Op::Add, "minirt_cap", std::slice::from_ref(&e), 0);
        // Begin and end as nft sends them: AF_UNSPEC, res_id = htons(10).
        let marker = |typ: u16, seq: u32| {
            hex(&format!(
                "{} {} {} {} 00000000 0000000a",
                u32ne(20),
                u16ne(typ),
                u16ne(1),
                u32ne(seq)
            ))
        };
        let mut want = marker(0x10, 0);
        want.extend(nft_add_any(0x405));
        want.extend(marker(0x11, 2));
        assert_eq!(b, want);
        // Elements get consecutive sequence numbers between begin and end.
        let b = batch(Op::Del, "t", &[e.clone(), e], 7);
        let seqs: Vec<u32> = {
            let mut v = vec![];
            let mut r = &b[..];
            while r.len() >= 16 {
                let len = u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize;
                v.push(u32::from_ne_bytes(r[8..12].try_into().unwrap()));
                r = &r[len..];
            }
            v
        };
        assert_eq!(seqs, vec![7, 8, 9, 10]);
    }

    #[test]
    fn acks_are_parsed_with_their_sequence() {
        let ack = |seq: u32, err: i32| {
            let mut m = vec![];
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&err.to_ne_bytes());
            m.extend_from_slice(&[0; 16]); // the echoed request header
            m
        };
        let mut d = ack(3, 0);
        d.extend(ack(4, -libc::ENOENT));
        d.extend_from_slice(&[1, 2, 3]); // a truncated tail is ignored
        assert_eq!(parse_acks(&d), vec![(3, 0), (4, libc::ENOENT)]);
        assert!(parse_acks(&[]).is_empty());
    }
}

/// Root tests against the real kernel, each inside a namespace it creates.
#[cfg(test)]
mod root_tests {
    use super::*;
    use crate::network::firewall::{render_base, render_ports_add, FwPort};
    use crate::network::nft;

    const T: &str = "minirt_nfnl0001";

    use crate::network::testns::TestNs;

    fn all_maps() -> Vec<FwPort> {
        vec![
            FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80),
            FwPort::test(Proto::Udp, "0.0.0.0", 5353, "10.77.0.2", 53),
            FwPort::test(Proto::Tcp, "198.51.100.1", 8081, "10.77.0.3", 81),
            FwPort::test(Proto::Udp, "127.0.0.1", 6000, "10.77.0.3", 60),
            FwPort::test(Proto::Tcp, "::", 8080, "fd00:77::2", 80),
            FwPort::test(Proto::Udp, "::", 5353, "fd00:77::2", 53),
            FwPort::test(Proto::Tcp, "::1", 8082, "fd00:77::3", 82),
            FwPort::test(Proto::Udp, "2001:db8::1", 6001, "fd00:77::3", 61),
        ]
    }

    #[test]
    fn add_and_delete_like_nft() {
        let ns = TestNs::new("nfnl");
        let ports = all_maps();
        ns.run(|| {
            nft::apply(&render_base(T)).unwrap();
            let empty = nft::list_table(T).unwrap();
            // What the nft path produces, as the reference listing.
            nft::apply(&render_ports_add(T, &ports)).unwrap();
            let by_nft = nft::list_table(T).unwrap();
            assert!(by_nft.contains("198.51.100.1 . 8081 : 10.77.0.3 . 81"));
            assert!(by_nft.contains("::1 . 8082 : fd00:77::3 . 82"));
            assert!(by_nft.contains("8080 : fd00:77::2 . 80"));
            del_port_elements(T, &ports).unwrap();
            assert_eq!(nft::list_table(T).unwrap(), empty, "nfnl left elements");

            add_port_elements(T, &ports).unwrap();
            assert_eq!(nft::list_table(T).unwrap(), by_nft);
            // Adding again with the same data is fine and changes nothing.
            add_port_elements(T, &ports).unwrap();
            assert_eq!(nft::list_table(T).unwrap(), by_nft);
            // A clash (same host port, other target) fails, names the port
            // and changes nothing (the batch is atomic).
            let clash = [
                FwPort::test(Proto::Tcp, "0.0.0.0", 9999, "10.77.0.9", 99),
                FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.9", 80),
            ];
            let e = add_port_elements(T, &clash).unwrap_err().to_string();
            assert!(e.contains("tcp 0.0.0.0:8080 -> 10.77.0.9:80"), "{e}");
            assert!(e.contains("pm_any_tcp"), "{e}");
            assert_eq!(nft::list_table(T).unwrap(), by_nft);

            // Deleting a mix of present and absent elements deletes the
            // present ones; deleting again is not an error.
            let mut mixed = vec![
                ports[0],
                FwPort::test(Proto::Udp, "0.0.0.0", 1, "10.77.0.2", 1),
            ];
            mixed.extend_from_slice(&ports[1..]);
            del_port_elements(T, &mixed).unwrap();
            assert_eq!(nft::list_table(T).unwrap(), empty);
            del_port_elements(T, &ports).unwrap();
            assert_eq!(nft::list_table(T).unwrap(), empty);

            // A missing table: adding fails, deleting is a no-op.
            assert!(add_port_elements("minirt_absent", &ports).is_err());
            del_port_elements("minirt_absent", &ports).unwrap();
            nft::delete_table(T).unwrap();
        });
    }
}

//! PLACEHOLDER until the `exec` branch lands (it owns this file).
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
pub fn open_pty() -> nix::Result<(OwnedFd, OwnedFd)> {
    let r = nix::pty::openpty(None, None)?;
    Ok((r.master, r.slave))
}
pub fn relay_to_writer(master: OwnedFd, mut out: impl Write) -> std::io::Result<()> {
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => out.write_all(&buf[..n])?,
        }
    }
}
pub fn relay(master: OwnedFd, _stdin: bool) -> std::io::Result<()> {
    relay_to_writer(master, std::io::stdout())
}

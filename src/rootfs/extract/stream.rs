//! The layer byte stream: hashed as read (blob digest and diff id) and
//! gunzipped when it starts with the gzip magic.

use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufReader, Read};

/// Counts and hashes the bytes read through it, and remembers how many zero
/// bytes the stream ended with (a complete tar ends with two zero blocks).
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hash: Sha256,
    pub(super) total: u64,
    pub(super) trailing_zeros: u64,
}

impl<R> Hashing<R> {
    pub(super) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            total: 0,
            trailing_zeros: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.hash.update(chunk);
        self.total += n as u64;
        match chunk.iter().rposition(|b| *b != 0) {
            Some(i) => self.trailing_zeros = (n - i - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        Ok(n)
    }
}

/// Peeks at the stream and returns a reader of its uncompressed bytes.
pub(super) enum Decoded<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
}

impl<R: Read> Decoded<R> {
    pub(super) fn new(r: R) -> io::Result<Self> {
        let mut br = BufReader::with_capacity(64 * 1024, r);
        if is_gzip(br.fill_buf()?) {
            Ok(Decoded::Gzip(Box::new(
                flate2::bufread::MultiGzDecoder::new(br),
            )))
        } else {
            Ok(Decoded::Plain(br))
        }
    }
    pub(super) fn into_inner(self) -> BufReader<R> {
        match self {
            Decoded::Plain(b) => b,
            Decoded::Gzip(g) => g.into_inner(),
        }
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(b) => b.read(buf),
            Decoded::Gzip(g) => g.read(buf),
        }
    }
}

/// True when the bytes start with the gzip magic.
pub(crate) fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

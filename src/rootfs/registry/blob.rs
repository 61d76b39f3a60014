//! A blob as it streams in from a registry: `Verify` checks its size and
//! digest (and reports progress), `Zstd` decodes a zstd-compressed layer.
//! Nothing is kept: the stream goes straight into the layer extractor.

use super::pull::{Event, Progress};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

/// Where a `Verify` leaves its failure (the extractor rewords read errors).
pub(super) type Verdict = Arc<Mutex<Option<String>>>;

/// Hashes and counts a blob as it streams, and fails the stream at its end
/// when the bytes are not what the manifest promised. The failure is also
/// left in `verdict`, since the extractor rewords read errors.
pub(super) struct Verify<R> {
    inner: R,
    hash: Sha256,
    got: u64,
    want_size: u64,
    want_digest: String,
    verdict: Verdict,
    progress: Option<Progress>,
    reported: u64,
}

impl<R> Verify<R> {
    /// The verifier of a blob of `want_size` bytes and `want_digest`, and
    /// where it leaves its verdict.
    pub(super) fn new(
        inner: R,
        want_size: u64,
        want_digest: String,
        progress: Option<Progress>,
    ) -> (Verify<R>, Verdict) {
        let verdict = Verdict::default();
        let v = Verify {
            inner,
            hash: Sha256::new(),
            got: 0,
            want_size,
            want_digest,
            verdict: verdict.clone(),
            progress,
            reported: 0,
        };
        (v, verdict)
    }

    fn fail(&self, msg: String) -> io::Error {
        if let Ok(mut v) = self.verdict.lock() {
            v.get_or_insert(msg.clone());
        }
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                return Err(self.fail(format!(
                    "layer {}: the download broke off after {} of {} bytes ({e})",
                    self.want_digest, self.got, self.want_size
                )))
            }
        };
        self.hash.update(&buf[..n]);
        self.got += n as u64;
        if self.got > self.want_size {
            return Err(self.fail(format!(
                "layer {}: the registry sent more than the {} bytes its manifest states",
                self.want_digest, self.want_size
            )));
        }
        if let Some(p) = &self.progress {
            // Reports every 256 KiB: enough for a bar, cheap on the hot path.
            if self.got - self.reported >= 256 << 10 || (n == 0 && self.got != self.reported) {
                self.reported = self.got;
                p(Event::LayerBytes {
                    digest: self.want_digest.clone(),
                    read: self.got,
                });
            }
        }
        if n == 0 && !buf.is_empty() {
            if self.got < self.want_size {
                return Err(self.fail(format!(
                    "layer {}: truncated: the registry sent {} of {} bytes",
                    self.want_digest, self.got, self.want_size
                )));
            }
            let got = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
            if got != self.want_digest {
                return Err(self.fail(format!(
                    "layer {} does not match its digest (got {got})",
                    self.want_digest
                )));
            }
        }
        Ok(n)
    }
}

/// A zstd stream of one or more frames, read to the end of its input so the
/// verifier underneath sees all of it.
pub(super) struct Zstd<R: Read> {
    dec: Option<ruzstd::decoding::StreamingDecoder<BufReader<R>, ruzstd::decoding::FrameDecoder>>,
}

impl<R: Read> Zstd<R> {
    pub(super) fn new(r: R) -> io::Result<Self> {
        let dec = ruzstd::decoding::StreamingDecoder::new(BufReader::with_capacity(64 << 10, r))
            .map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad zstd data: {e}"))
            })?;
        Ok(Zstd { dec: Some(dec) })
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.dec.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // End of a frame: another frame may follow.
            if dec.get_mut().fill_buf()?.is_empty() {
                // Let the verifier see the end of the stream.
                let mut rest = [0u8; 1];
                let _ = dec.get_mut().read(&mut rest)?;
                self.dec = None;
                return Ok(0);
            }
            let Some(old) = self.dec.take() else {
                return Ok(0);
            };
            let (src, _) = old.into_parts();
            self.dec = Some(ruzstd::decoding::StreamingDecoder::new(src).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad zstd data: {e}"))
            })?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(data: &[u8], size: u64, digest: String) -> (io::Result<Vec<u8>>, Option<String>) {
        let (mut v, verdict) = Verify::new(data, size, digest, None);
        let mut out = vec![];
        let r = v.read_to_end(&mut out).map(|_| out);
        let found = verdict.lock().unwrap().take();
        (r, found)
    }

    #[test]
    fn the_verifier_checks_size_and_digest_at_the_end() {
        let data = b"hello layer";
        let good = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let (r, v) = verify(data, data.len() as u64, good.clone());
        assert_eq!(r.unwrap(), data);
        assert_eq!(v, None);
        let (r, v) = verify(&data[..5], data.len() as u64, good.clone());
        assert!(r.is_err());
        assert!(v
            .unwrap()
            .contains("truncated: the registry sent 5 of 11 bytes"));
        let (r, v) = verify(data, 4, good.clone());
        assert!(r.is_err());
        assert!(v.unwrap().contains("more than the 4 bytes"));
        let bad = format!("sha256:{}", "0".repeat(64));
        let (r, v) = verify(data, data.len() as u64, bad);
        assert!(r.is_err());
        assert!(v.unwrap().contains("does not match its digest"));
    }
}

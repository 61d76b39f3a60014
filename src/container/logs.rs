//! The container's log: what its stdout and stderr said, each line with the
//! time it was received and the stream it came on (Docker's json-file and
//! conmon's k8s-file keep the same three facts).
//!
//! One file, `<container dir>/stdio.log`, one record a line:
//! `NANOS STREAM F|P CONTENT\n` — NANOS the receive time in nanoseconds since
//! the epoch, STREAM `stdout` or `stderr`, `F` a full line (its newline ends
//! the record), `P` a part of a line whose rest follows in later records of
//! the same stream (a read that ended mid-line: a line longer than the
//! buffer, or a last line without newline). CONTENT holds no newline, so no
//! escaping is needed. The writer ([`RecordWriter`]) allocates nothing (it
//! runs in the resident waiter; its buffer is on the stack while it writes); the reader ([`LogReader`]) rebuilds lines.
//!
//! Containers started before this file existed have `container.log` and
//! `container-stderr.log` with raw bytes: they are read too, as lines
//! without a time (shown as Docker's zero time).

use crate::{util, Instance};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// The records file of container `id`.
pub fn records_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join(RECORDS_FILE)
}

pub const RECORDS_FILE: &str = "stdio.log";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

// ---------------------------------------------------------------- writing

/// Turns chunks of a stream into records appended to a file, through a small
/// fixed buffer (no allocation: it runs in the resident waiter).
pub struct RecordWriter<W: Write> {
    out: W,
}

/// The records of one chunk, gathered on the stack (not in the writer, so
/// an idle waiter does not hold the buffer's pages).
struct Batch<'a, W: Write> {
    out: &'a mut W,
    buf: [u8; 4096],
    len: usize,
}

impl<W: Write> Batch<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.len + bytes.len() > self.buf.len() {
            self.flush()?;
            if bytes.len() > self.buf.len() {
                return self.out.write_all(bytes);
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let n = std::mem::take(&mut self.len);
        self.out.write_all(&self.buf[..n])
    }
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter { out }
    }

    /// Appends the records of `data`, read from `stream` at `nanos`.
    pub fn write_chunk(&mut self, stream: Stream, nanos: i64, data: &[u8]) -> io::Result<()> {
        let mut header = [0u8; 40];
        let hlen = encode_header(&mut header, nanos, stream);
        let mut batch = Batch {
            out: &mut self.out,
            buf: [0; 4096],
            len: 0,
        };
        let mut rest = data;
        while !rest.is_empty() {
            let (content, full) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = &rest[(content.len() + usize::from(full))..];
            header[hlen - 2] = if full { b'F' } else { b'P' };
            batch.put(&header[..hlen])?;
            batch.put(content)?;
            batch.put(b"\n")?;
        }
        batch.flush()
    }
}

/// "NANOS STREAM F " into `out` (the F is patched to P by the caller);
/// the header's length.
fn encode_header(out: &mut [u8; 40], nanos: i64, stream: Stream) -> usize {
    let mut digits = [0u8; 20];
    let mut n = nanos.max(0) as u64;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    for part in [&digits[i..], b" ", stream.name(), b" F "] {
        out[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    len
}

/// A `Write` that records everything written to it as one stream (the pty
/// relay of a detached `-t` container: stdout and stderr are one there).
pub struct StreamRecorder<W: Write> {
    pub writer: RecordWriter<W>,
    pub stream: Stream,
}

impl<W: Write> Write for StreamRecorder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.writer
            .write_chunk(self.stream, util::now_nanos(), data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.out.flush()
    }
}

/// Opens (creates) the records file for appending.
pub fn open_for_append(inst: &Instance, id: &str) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(records_path(inst, id))
}

// ---------------------------------------------------------------- reading

/// One record, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub nanos: i64,
    pub stream: Stream,
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one record line (without its newline); None when malformed.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let nanos = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record {
        nanos,
        stream,
        full,
        content: parts.next().unwrap_or_default(),
    })
}

/// One line of the log as shown: the time its first part was received (0
/// when not recorded), its stream, its bytes (with the newline unless it was
/// cut off by the container's exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub nanos: i64,
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// Where lines come from: a records file, or an old raw file of one stream.
enum Source {
    Records {
        file: std::fs::File,
        /// Bytes after the last complete record.
        tail: Vec<u8>,
        /// Lines begun by P records, per stream.
        open: [Option<Line>; 2],
    },
    Raw {
        file: std::fs::File,
        stream: Stream,
        tail: Vec<u8>,
    },
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Source {
    /// The complete lines appended since the last call.
    fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        match self {
            Source::Records { file, tail, open } => {
                file.read_to_end(tail)?;
                let end = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                for raw in tail[..end].split(|b| *b == b'\n') {
                    let Some(r) = parse_record(raw) else { continue };
                    let line = open[slot(r.stream)].get_or_insert_with(|| Line {
                        nanos: r.nanos,
                        stream: r.stream,
                        text: vec![],
                    });
                    line.text.extend_from_slice(r.content);
                    if r.full {
                        line.text.push(b'\n');
                        out.extend(open[slot(r.stream)].take());
                    }
                }
                tail.drain(..end);
            }
            Source::Raw { file, stream, tail } => {
                file.read_to_end(tail)?;
                let end = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                for l in tail[..end].split_inclusive(|b| *b == b'\n') {
                    out.push(Line {
                        nanos: 0,
                        stream: *stream,
                        text: l.to_vec(),
                    });
                }
                tail.drain(..end);
            }
        }
        Ok(())
    }

    /// Lines left unfinished (the writer is gone: they stay so).
    fn finish(&mut self, out: &mut Vec<Line>) {
        match self {
            Source::Records { open, .. } => {
                let mut rest: Vec<Line> = open.iter_mut().filter_map(Option::take).collect();
                rest.sort_by_key(|l| l.nanos);
                out.extend(rest);
            }
            Source::Raw { stream, tail, .. } => {
                if !tail.is_empty() {
                    out.push(Line {
                        nanos: 0,
                        stream: *stream,
                        text: std::mem::take(tail),
                    });
                }
            }
        }
    }
}

/// Reads a container's log, from the start, then what is appended.
pub struct LogReader {
    sources: Vec<Source>,
    /// Paths not there yet (a container that has not started): opened when
    /// they appear.
    records_path: PathBuf,
    has_records: bool,
}

impl LogReader {
    pub fn open(inst: &Instance, id: &str) -> LogReader {
        let mut sources = vec![];
        for (path, stream) in [
            (super::runtime::log_path(inst, id), Stream::Stdout),
            (super::runtime::stderr_log_path(inst, id), Stream::Stderr),
        ] {
            if let Ok(file) = std::fs::File::open(path) {
                sources.push(Source::Raw {
                    file,
                    stream,
                    tail: vec![],
                });
            }
        }
        let mut r = LogReader {
            sources,
            records_path: records_path(inst, id),
            has_records: false,
        };
        r.open_records();
        r
    }

    fn open_records(&mut self) {
        if self.has_records {
            return;
        }
        if let Ok(file) = std::fs::File::open(&self.records_path) {
            self.has_records = true;
            self.sources.push(Source::Records {
                file,
                tail: vec![],
                open: [None, None],
            });
        }
    }

    /// The complete lines appended since the last call (old raw files first).
    pub fn poll(&mut self) -> io::Result<Vec<Line>> {
        self.open_records();
        let mut out = vec![];
        for s in &mut self.sources {
            s.poll(&mut out)?;
        }
        Ok(out)
    }

    /// A reader of what comes after now (attach).
    pub fn open_at_end(inst: &Instance, id: &str) -> io::Result<LogReader> {
        let mut r = LogReader::open(inst, id);
        for s in &mut r.sources {
            match s {
                Source::Records { file, .. } | Source::Raw { file, .. } => {
                    io::Seek::seek(file, io::SeekFrom::End(0))?;
                }
            }
        }
        Ok(r)
    }

    /// What was appended since the last call as it was written, parts of
    /// lines included (attach shows them at once).
    pub fn poll_chunks(&mut self) -> io::Result<Vec<(Stream, Vec<u8>)>> {
        self.open_records();
        let mut out = vec![];
        for s in &mut self.sources {
            match s {
                Source::Records { file, tail, .. } => {
                    file.read_to_end(tail)?;
                    let end = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    for raw in tail[..end].split(|b| *b == b'\n') {
                        if let Some(r) = parse_record(raw) {
                            let mut v = r.content.to_vec();
                            if r.full {
                                v.push(b'\n');
                            }
                            out.push((r.stream, v));
                        }
                    }
                    tail.drain(..end);
                }
                Source::Raw { file, stream, tail } => {
                    file.read_to_end(tail)?;
                    if !tail.is_empty() {
                        out.push((*stream, std::mem::take(tail)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The lines still unfinished, once nothing will be written any more.
    pub fn finish(&mut self) -> Vec<Line> {
        let mut out = vec![];
        for s in &mut self.sources {
            s.finish(&mut out);
        }
        out
    }

    /// Back to the start (tests).
    #[cfg(test)]
    fn rewind(&mut self) -> io::Result<()> {
        use std::io::Seek;
        for s in &mut self.sources {
            match s {
                Source::Records { file, .. } | Source::Raw { file, .. } => {
                    file.seek(io::SeekFrom::Start(0))?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- showing

/// What `logs` shows and how.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Only the last N lines (of both streams together, as Docker counts).
    pub tail: Option<usize>,
    /// Only lines received at or after this time (ns since the epoch).
    pub since: Option<i64>,
    /// Only lines received at or before this time.
    pub until: Option<i64>,
    pub timestamps: bool,
    /// Docker's --details: the log's extra attributes before each line
    /// (minirt records none: an empty prefix).
    pub details: bool,
    pub follow: bool,
}

impl ShowOptions {
    fn wanted(&self, l: &Line) -> bool {
        self.since.is_none_or(|s| l.nanos >= s) && self.until.is_none_or(|u| l.nanos <= u)
    }

    /// The bytes shown for `l`: [time ][attributes ]text.
    pub fn render(&self, l: &Line) -> Vec<u8> {
        let mut v = vec![];
        if self.timestamps {
            v.extend_from_slice(util::rfc3339(l.nanos.max(0)).as_bytes());
            v.push(b' ');
        }
        if self.details {
            v.push(b' ');
        }
        v.extend_from_slice(&l.text);
        v
    }
}

/// The lines to show first: filtered by time, then the last `tail` of them.
pub fn select(lines: Vec<Line>, o: &ShowOptions) -> Vec<Line> {
    let mut kept: Vec<Line> = lines.into_iter().filter(|l| o.wanted(l)).collect();
    if let Some(n) = o.tail {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    kept
}

/// Shows a container's log on `out` (stdout lines) and `err` (stderr
/// lines). With `follow`, keeps showing what comes until `running` says
/// the container is gone (asked only when nothing new came, so the last
/// lines are never lost) or `until` has passed.
pub fn show(
    inst: &Instance,
    id: &str,
    o: &ShowOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    mut running: impl FnMut() -> crate::Result<bool>,
) -> crate::Result<()> {
    let mut reader = LogReader::open(inst, id);
    let mut emit = |lines: Vec<Line>| -> io::Result<()> {
        for l in lines {
            let w: &mut dyn Write = match l.stream {
                Stream::Stdout => &mut *out,
                Stream::Stderr => &mut *err,
            };
            w.write_all(&o.render(&l))?;
        }
        out.flush()?;
        err.flush()
    };
    let first = reader.poll()?;
    if !o.follow {
        let mut all = first;
        all.extend(reader.finish());
        emit(select(all, o))?;
        return Ok(());
    }
    emit(select(first, o))?;
    loop {
        let lines: Vec<Line> = reader.poll()?;
        let past_until = o.until.is_some_and(|u| util::now_nanos() > u);
        if lines.is_empty() {
            if past_until || !running()? {
                let mut last = reader.poll()?;
                last.extend(reader.finish());
                emit(last.into_iter().filter(|l| o.wanted(l)).collect())?;
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        emit(lines.into_iter().filter(|l| o.wanted(l)).collect())?;
    }
}

/// Whether the container's output may still grow: its row is not finished
/// and its init or its monitor (which drains the pipes before it records
/// the exit) lives.
pub fn still_writing(row: &crate::store::containers::ContainerRow) -> bool {
    use crate::store::containers::{CREATED, RUNNING};
    (row.status == RUNNING || row.status == CREATED)
        && (util::process_alive(row.pid, row.pid_start)
            || util::process_alive(row.monitor_pid, row.monitor_start))
}

// ---------------------------------------------------------------- times

/// Docker's `--since`/`--until` values, as nanoseconds since the epoch:
/// RFC 3339 (also without zone, seconds or time: read as UTC), Unix seconds
/// with an optional fraction, or a Go duration before `now` ("10m",
/// "1h30m", "1.5h").
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let bad = || {
        format!("invalid time value {s:?} (an RFC 3339 time, Unix seconds or a duration like 10m)")
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(d) = super::health::parse_go_duration(s) {
        return Ok(now.saturating_sub(d));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let frac_ns = if frac.is_empty() {
            0
        } else {
            let d = &frac[..frac.len().min(9)];
            if !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            d.parse::<i64>().map_err(|_| bad())? * 10i64.pow(9 - d.len() as u32)
        };
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(frac_ns))
            .ok_or_else(bad);
    }
    // Shorter RFC 3339 forms Docker takes: a date, date+hour, +minutes, no zone.
    let candidates = [
        s.to_string(),
        format!("{s}Z"),
        format!("{s}:00Z"),
        format!("{s}:00:00Z"),
        format!("{s}T00:00:00Z"),
    ];
    candidates
        .iter()
        .find_map(|c| crate::rootfs::image::parse_rfc3339(c))
        .ok_or_else(bad)
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;

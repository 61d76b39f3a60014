//! Per-step timings of the run path (`minirt --timings`, `MINIRT_TIMINGS`):
//! a tracing layer that prints one line per closed minirt span with its duration.
//!
//! A line reads `timing <step> <microseconds> pid=<pid>`; steps nest (the
//! `rootfs` step includes the image lookup of the start path). The output
//! goes to stderr, or is appended to a file when `MINIRT_TIMINGS` names one,
//! so a detached container's monitor (whose stderr is /dev/null) can report
//! its network setup and teardown too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Where timing lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    File(PathBuf),
}

/// Reads the `--timings` flag and the `MINIRT_TIMINGS` value: "1"/"true"/"yes"
/// or the flag mean stderr, an absolute path means that file, anything else off.
pub fn sink_from(flag: bool, env: Option<&str>) -> Option<Sink> {
    if let Some(v) = env {
        if v.starts_with('/') {
            return Some(Sink::File(PathBuf::from(v)));
        }
        if matches!(v, "1" | "true" | "yes") {
            return Some(Sink::Stderr);
        }
    }
    flag.then_some(Sink::Stderr)
}

/// One output line, newline included.
pub(crate) fn format_line(step: &str, micros: u128, pid: u32) -> String {
    format!("timing {step} {micros} pid={pid}\n")
}

/// Parses a line written by [`format_line`] back into (step, microseconds).
#[cfg(test)]
pub(crate) fn parse_line(line: &str) -> Option<(&str, u128)> {
    let mut it = line.split_whitespace();
    if it.next()? != "timing" {
        return None;
    }
    let step = it.next()?;
    let micros = it.next()?.parse().ok()?;
    Some((step, micros))
}

enum Out {
    Stderr,
    File(Mutex<File>),
    #[cfg(test)]
    Memory(std::sync::Arc<Mutex<Vec<u8>>>),
}

/// The layer: remembers when each span was created and prints on close.
pub(crate) struct TimingsLayer {
    out: Out,
}

struct Started(Instant);

impl TimingsLayer {
    /// Opens the sink (a file is opened for appending, created if missing).
    pub fn new(sink: &Sink) -> std::io::Result<TimingsLayer> {
        let out = match sink {
            Sink::Stderr => Out::Stderr,
            Sink::File(p) => Out::File(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        };
        Ok(TimingsLayer { out })
    }

    fn emit(&self, line: &str) {
        // One write per line: with O_APPEND, lines of concurrent processes
        // never interleave inside a line.
        match &self.out {
            Out::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Out::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            #[cfg(test)]
            Out::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.extend_from_slice(line.as_bytes());
                }
            }
        }
    }
}

impl<S> Layer<S> for TimingsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let Some(Started(t)) = ext.get::<Started>() else {
            return;
        };
        let line = format_line(span.name(), t.elapsed().as_micros(), std::process::id());
        self.emit(&line);
    }
}

/// Only minirt's own spans are timed (not those of the libraries it uses).
pub(crate) struct MinirtSpans;

impl<S> Filter<S> for MinirtSpans {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        meta.is_span() && meta.target().starts_with("minirt")
    }
}

/// The layer with its filter, ready for `registry().with(...)`; `None` when
/// timings are off or the file cannot be opened (timings never fail a command).
pub fn layer<S>(sink: Option<Sink>) -> Option<impl Layer<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let sink = sink?;
    match TimingsLayer::new(&sink) {
        Ok(l) => Some(l.with_filter(MinirtSpans)),
        Err(e) => {
            eprintln!("minirt: timings disabled: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tracing_subscriber::prelude::*;

    #[test]
    fn sink_selection() {
        assert_eq!(sink_from(false, None), None);
        assert_eq!(sink_from(true, None), Some(Sink::Stderr));
        assert_eq!(sink_from(false, Some("1")), Some(Sink::Stderr));
        assert_eq!(sink_from(false, Some("0")), None);
        assert_eq!(sink_from(true, Some("0")), Some(Sink::Stderr));
        assert_eq!(
            sink_from(false, Some("/tmp/t.log")),
            Some(Sink::File(PathBuf::from("/tmp/t.log")))
        );
    }

    #[test]
    fn lines_round_trip() {
        let l = format_line("network", 1234, 42);
        assert_eq!(l, "timing network 1234 pid=42\n");
        assert_eq!(parse_line(&l), Some(("network", 1234)));
        assert_eq!(parse_line("something else"), None);
        assert_eq!(parse_line("timing network x"), None);
    }

    #[test]
    fn closed_spans_are_reported_in_close_order_with_their_duration() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let layer = TimingsLayer {
            out: Out::Memory(buf.clone()),
        }
        .with_filter(MinirtSpans);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            let outer = tracing::info_span!("outer").entered();
            {
                let _inner = tracing::info_span!("inner").entered();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(outer);
            // Events and other crates' spans are not timed.
            tracing::info!("an event");
            let _other = tracing::info_span!(target: "rtnetlink", "foreign").entered();
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let got: Vec<(&str, u128)> = text.lines().filter_map(parse_line).collect();
        assert_eq!(got.len(), 2, "{text}");
        assert_eq!(got[0].0, "inner");
        assert_eq!(got[1].0, "outer");
        assert!(got[0].1 >= 5_000, "{text}");
        assert!(got[1].1 >= got[0].1, "{text}");
    }

    #[test]
    fn a_file_sink_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.log");
        std::fs::write(&p, "timing earlier 1 pid=1\n").unwrap();
        let l = TimingsLayer::new(&Sink::File(p.clone())).unwrap();
        l.emit(&format_line("x", 7, 2));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "timing earlier 1 pid=1\ntiming x 7 pid=2\n");
    }
}

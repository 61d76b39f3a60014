//! `minirt events`: the past events in `--since`..`--until` from the store's
//! event log, then new ones as they are written, until `--until` passes (or
//! for ever). New rows are noticed through inotify on the root directory
//! (every commit writes the database's WAL there) and read with one
//! `seq > cursor` query; a one-second poll is the safety net.

use super::template::{self, Format};
use super::{CliError, CliResult};
use clap::Args;
use minirt::container::events::{self, Event, EventFilter};
use minirt::store::Store;
use minirt::{util, Instance};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp (RFC 3339, Unix seconds, or a duration like 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type=, container=, event=, image=, label=, network=, volume=).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format the output using the given Go template, or json.
    #[arg(long)]
    pub format: Option<String>,
}

fn usage(msg: String) -> CliError {
    CliError {
        code: 125,
        message: msg,
    }
}

/// How each event is printed (made once per command: the size difference
/// between variants is irrelevant).
#[allow(clippy::large_enum_variant)]
enum Printer {
    Line,
    Json,
    Template(template::GoTemplate),
}

impl Printer {
    fn parse(format: Option<&str>) -> Result<Printer, String> {
        // `{{json .}}` prints the message as Docker marshals it: the json
        // shape, not the template view's Go field names.
        if format.is_some_and(|f| f.trim().replace(' ', "") == "{{json.}}") {
            return Ok(Printer::Json);
        }
        Ok(match template::parse(format, true)? {
            Format::Default => Printer::Line,
            Format::Json => Printer::Json,
            Format::Template(t) => Printer::Template(t),
        })
    }

    fn print(&self, e: &Event) -> Result<String, String> {
        Ok(match self {
            Printer::Line => events::line(e),
            Printer::Json => events::json_doc(e).to_string(),
            Printer::Template(t) => t.render(&events::template_doc(e))?,
        })
    }
}

pub fn events(inst: &Instance, a: EventsArgs) -> CliResult {
    let filter = EventFilter::parse(&a.filter).map_err(usage)?;
    let printer = Printer::parse(a.format.as_deref()).map_err(usage)?;
    let now = util::now_nanos();
    let since = a
        .since
        .as_deref()
        .map(|s| events::parse_time(s, now))
        .transpose()
        .map_err(|e| usage(format!("invalid value for --since: {e}")))?;
    let until = a
        .until
        .as_deref()
        .map(|s| events::parse_time(s, now))
        .transpose()
        .map_err(|e| usage(format!("invalid value for --until: {e}")))?;
    let store = Store::open(&inst.db_path()).map_err(|e| usage(e.to_string()))?;
    // The watch comes before the first read: nothing written in between is missed.
    let notify = watch(inst);
    // Without a window only new events, as Docker.
    let mut cursor = if since.is_none() && until.is_none() {
        events::last_seq(store.conn()).map_err(|e| usage(e.to_string()))?
    } else {
        0
    };
    let since = since.unwrap_or(i64::MIN);
    loop {
        let read_at = util::now_nanos();
        let rows = events::read_after(store.conn(), cursor).map_err(|e| usage(e.to_string()))?;
        for e in rows {
            cursor = e.seq;
            if e.time_ns < since || until.is_some_and(|u| e.time_ns > u) || !filter.matches(&e) {
                continue;
            }
            let line = printer.print(&e).map_err(usage)?;
            println!("{line}");
        }
        let wait = match until {
            Some(u) if read_at >= u => return Ok(0),
            Some(u) => Duration::from_nanos((u - read_at) as u64).min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        match &notify {
            Some(n) => wait_for_change(n, wait),
            None => std::thread::sleep(wait.min(Duration::from_millis(100))),
        }
    }
}

/// Changes to files directly in the root (the database and its WAL).
fn watch(inst: &Instance) -> Option<Inotify> {
    let n = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
    let mask = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO;
    n.add_watch(&inst.root, mask).ok()?;
    Some(n)
}

/// Blocks until the root changes or `limit` passes, then drains the queue.
fn wait_for_change(n: &Inotify, limit: Duration) {
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(n.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ms.max(1)));
    while matches!(n.read_events(), Ok(v) if !v.is_empty()) {}
}

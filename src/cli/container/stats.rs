//! `minirt stats`: Docker's resource table from readings of each
//! container's cgroup, refreshed every second (`--no-stream`: once).

use super::{lookup_1, template_err};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::lifecycle;
use minirt::container::stats::{self, Sample};
use minirt::Instance;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    pub no_stream: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output: table, json, or a Go template.
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// Docker's binary sizes for memory ("1.5MiB").
pub fn binary_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    // Go's %.4g: 4 significant digits, no trailing zeros.
    let int_digits = (v.max(1.0).log10().floor() as usize) + 1;
    let s = format!("{:.*}", 4usize.saturating_sub(int_digits), v);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// One row of the table, as the JSON document templates see.
pub fn row_doc(
    id: &str,
    name: &str,
    before: &Sample,
    after: &Sample,
    wall: u64,
    host_mem: u64,
) -> serde_json::Value {
    use crate::cli::format::human_size;
    let limit = after.mem_limit.unwrap_or(host_mem);
    let mem_perc = if limit == 0 {
        0.0
    } else {
        after.mem_usage as f64 / limit as f64 * 100.0
    };
    json!({
        "BlockIO": format!("{} / {}", human_size(after.blk_read), human_size(after.blk_write)),
        "CPUPerc": format!("{:.2}%", stats::cpu_percent(before.cpu_ns, after.cpu_ns, wall)),
        "Container": name,
        "ID": id,
        "MemPerc": format!("{mem_perc:.2}%"),
        "MemUsage": format!("{} / {}", binary_size(after.mem_usage), binary_size(limit)),
        "Name": name,
        "NetIO": format!("{} / {}", human_size(after.net_rx), human_size(after.net_tx)),
        "PIDs": after.pids.to_string(),
    })
}

const HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

pub fn stats_cmd(inst: &Instance, a: StatsArgs) -> CliResult {
    use crate::cli::template::{self, Format};
    let format = template::parse(a.format.as_deref(), true).map_err(template_err)?;
    // A table is redrawn (screen cleared); other formats print their lines
    // at each refresh, as Docker does.
    let redraw = match &format {
        Format::Default => true,
        Format::Template(t) => t.is_table(),
        Format::Json => false,
    };
    let table = match format {
        Format::Default => {
            let t = "table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";
            template::parse(Some(t), true).map_err(template_err)?
        }
        f => f,
    };
    lifecycle::reconcile(inst)?;
    // The previous reading of each container and when it was taken: the
    // CPU percentage is the use between two readings.
    let mut prev: std::collections::HashMap<String, (Sample, Instant)> = Default::default();
    let mut first = true;
    loop {
        let rows = if a.containers.is_empty() {
            lifecycle::list(inst)?
                .into_iter()
                .filter(|r| a.all || lifecycle::is_running(r))
                .collect::<Vec<_>>()
        } else {
            let mut v = vec![];
            for c in &a.containers {
                v.push(lookup_1(inst, c)?);
            }
            v
        };
        let live: Vec<bool> = rows.iter().map(lifecycle::is_running).collect();
        let read = |i: usize| {
            if live[i] {
                stats::sample(inst, &rows[i].id, rows[i].pid)
            } else {
                Sample::default()
            }
        };
        if first {
            // Two readings a moment apart for the first CPU figure.
            let t0 = Instant::now();
            for (i, r) in rows.iter().enumerate() {
                prev.insert(r.id.clone(), (read(i), t0));
            }
            if live.iter().any(|l| *l) {
                std::thread::sleep(Duration::from_millis(500));
            }
            first = false;
        }
        let host_mem = stats::host_memory();
        let mut next = std::collections::HashMap::new();
        let docs: Vec<serde_json::Value> = (0..rows.len())
            .map(|i| {
                let id = if a.no_trunc {
                    rows[i].id.clone()
                } else {
                    rows[i].id[..12].to_string()
                };
                let now = Instant::now();
                let after = read(i);
                let (before, t0) = prev.remove(&rows[i].id).unwrap_or((after.clone(), now));
                let wall = now.duration_since(t0).as_nanos() as u64;
                let doc = row_doc(&id, &rows[i].name, &before, &after, wall, host_mem);
                next.insert(rows[i].id.clone(), (after, now));
                doc
            })
            .collect();
        prev = next;
        let text = match &table {
            Format::Json => docs.iter().map(|d| format!("{d}\n")).collect::<String>(),
            Format::Template(t) => t.render_list(&docs, HEADERS).map_err(template_err)?,
            Format::Default => String::new(),
        };
        let mut out = std::io::stdout().lock();
        if a.no_stream {
            let _ = out.write_all(text.as_bytes());
            return Ok(0);
        }
        // Clear the screen and home the cursor, then the table.
        let clear = if redraw { "\x1b[2J\x1b[H" } else { "" };
        let _ = out.write_all(format!("{clear}{text}").as_bytes());
        let _ = out.flush();
        drop(out);
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_binary_like_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(2_087_354_368), "1.944GiB");
    }

    #[test]
    fn a_row_has_dockers_fields() {
        let before = Sample::default();
        let after = Sample {
            cpu_ns: 250_000_000,
            mem_usage: 1 << 20,
            mem_limit: Some(64 << 20),
            net_rx: 1500,
            net_tx: 648,
            blk_read: 0,
            blk_write: 4096,
            pids: 2,
        };
        let d = row_doc("abc", "web", &before, &after, 1_000_000_000, 0);
        assert_eq!(d["CPUPerc"], "25.00%");
        assert_eq!(d["MemUsage"], "1MiB / 64MiB");
        assert_eq!(d["MemPerc"], "1.56%");
        assert_eq!(d["NetIO"], "1.5kB / 648B");
        assert_eq!(d["BlockIO"], "0B / 4.1kB");
        assert_eq!(d["PIDs"], "2");
    }
}

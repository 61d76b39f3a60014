//! `stats`: one container's resource use read from its cgroup (v1 or v2)
//! and its network namespace's `/proc/PID/net/dev`. The parsers are pure
//! functions over the files' text; `sample` reads the files.

use super::runtime::cgroup_of;
use crate::Instance;
use std::path::{Path, PathBuf};

/// One reading. `cpu_ns` is cumulative CPU time; the percentage needs two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub cpu_ns: u64,
    /// Memory in use without the page cache the kernel can drop at once
    /// (Docker subtracts inactive file pages).
    pub mem_usage: u64,
    /// The limit; None when unlimited.
    pub mem_limit: Option<u64>,
    pub net_rx: u64,
    pub net_tx: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
}

/// A `KEY VALUE` line's value from files like memory.stat or cpu.stat.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// v1 `memory.limit_in_bytes`: a huge value (page-rounded i64::MAX) means
/// no limit. v2 `memory.max`: `max` means none.
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

/// Bytes read and written from v1 `blkio.throttle.io_service_bytes`
/// (`MAJ:MIN Read N` lines).
pub(crate) fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => r += n,
                "Write" => w += n,
                _ => {}
            }
        }
    }
    (r, w)
}

/// Bytes read and written from v2 `io.stat` (`MAJ:MIN rbytes=N wbytes=N ...`).
pub(crate) fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        for kv in l.split_whitespace().skip(1) {
            match kv.split_once('=') {
                Some(("rbytes", n)) => r += n.parse().unwrap_or(0),
                Some(("wbytes", n)) => w += n.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// Received and sent bytes over every interface but `lo`, from
/// `/proc/net/dev`.
pub(crate) fn net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// Docker's CPU percentage: CPU time used over wall time, where 100% is
/// one CPU fully busy.
pub fn cpu_percent(before: u64, after: u64, wall_ns: u64) -> f64 {
    if wall_ns == 0 || after < before {
        return 0.0;
    }
    (after - before) as f64 / wall_ns as f64 * 100.0
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The first of `dirs` that has `file`.
fn find(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(file)).find(|p| p.exists())
}

/// Reads one sample of container `id` whose init is `pid`.
pub fn sample(inst: &Instance, id: &str, pid: i32) -> Sample {
    let cg = cgroup_of(inst, id);
    let mut dirs = cg.paths();
    if let Some(v2) = cg.v2_dir() {
        dirs.push(v2.to_path_buf());
    }
    let text = |f: &str| find(&dirs, f).and_then(|p| read(&p));
    let mut s = Sample::default();
    if let Some(t) = text("cpuacct.usage") {
        s.cpu_ns = t.trim().parse().unwrap_or(0);
    } else if let Some(t) = text("cpu.stat") {
        s.cpu_ns = keyed(&t, "usage_usec").unwrap_or(0) * 1000;
    }
    let stat = text("memory.stat").unwrap_or_default();
    if let Some(t) = text("memory.usage_in_bytes") {
        let used: u64 = t.trim().parse().unwrap_or(0);
        let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
        s.mem_usage = used.saturating_sub(inactive);
        s.mem_limit = text("memory.limit_in_bytes").and_then(|t| parse_limit(&t));
    } else if let Some(t) = text("memory.current") {
        let used: u64 = t.trim().parse().unwrap_or(0);
        let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
        s.mem_usage = used.saturating_sub(inactive);
        s.mem_limit = text("memory.max").and_then(|t| parse_limit(&t));
    }
    (s.blk_read, s.blk_write) = if let Some(t) = text("blkio.throttle.io_service_bytes") {
        blkio_v1(&t)
    } else {
        text("io.stat").map(|t| io_stat_v2(&t)).unwrap_or((0, 0))
    };
    s.pids = text("pids.current")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(cg.procs().len() as u64);
    if let Some(t) = read(Path::new(&format!("/proc/{pid}/net/dev"))) {
        (s.net_rx, s.net_tx) = net_dev(&t);
    }
    s
}

/// The host's memory, Docker's limit shown for an unlimited container.
pub fn host_memory() -> u64 {
    read(Path::new("/proc/meminfo"))
        .and_then(|t| keyed(&t.replace(':', ""), "MemTotal"))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_parse() {
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("67108864\n"), Some(64 << 20));
        let stat = "cache 4096\nrss 1000\ntotal_inactive_file 8192\n";
        assert_eq!(keyed(stat, "total_inactive_file"), Some(8192));
        assert_eq!(keyed(stat, "nope"), None);
        let blk =
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\n8:16 Read 10\nTotal 4618\n";
        assert_eq!(blkio_v1(blk), (4106, 512));
    }

    #[test]
    fn v2_files_parse() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("1048576\n"), Some(1 << 20));
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        let io =
            "8:0 rbytes=4096 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2\n";
        assert_eq!(io_stat_v2(io), (4097, 1026));
    }

    #[test]
    fn net_dev_skips_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    1500      10    0    0    0     0          0         0      648       5    0    0    0     0       0          0\n";
        assert_eq!(net_dev(t), (1500, 648));
    }

    #[test]
    fn cpu_percent_is_of_one_cpu() {
        assert_eq!(cpu_percent(0, 500_000_000, 1_000_000_000), 50.0);
        assert_eq!(cpu_percent(10, 5, 100), 0.0);
        assert_eq!(cpu_percent(0, 5, 0), 0.0);
    }
}

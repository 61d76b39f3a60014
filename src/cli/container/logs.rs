//! `minirt logs`.

use super::cli_err;
use crate::cli::CliResult;
use clap::Args;
use minirt::container::lifecycle;
use minirt::store::containers;
use minirt::Instance;
use std::io::Write;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs (or "all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps (not recorded by minirt: refused).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since a time (not recorded by minirt: refused).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a time (not recorded by minirt: refused).
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

pub fn logs(inst: &Instance, a: LogsArgs) -> CliResult {
    use crate::cli::format::{parse_tail, tail_lines};
    for (given, flag) in [
        (a.timestamps, "--timestamps"),
        (a.since.is_some(), "--since"),
        (a.until.is_some(), "--until"),
    ] {
        if given {
            return Err(cli_err(
                125,
                format!("logs {flag}: not implemented (minirt does not record log times)"),
            ));
        }
    }
    let tail = parse_tail(&a.tail).map_err(|e| cli_err(125, e))?;
    // Docker: a missing container is the daemon's error, exit 1.
    let row = lifecycle::lookup(inst, &a.container).map_err(|e| match e {
        minirt::Error::Container(minirt::container::ContainerError::NotFound(_)) => {
            cli_err(1, e.to_string())
        }
        e => e.into(),
    })?;
    let paths = [
        minirt::container::runtime::log_path(inst, &row.id),
        minirt::container::runtime::stderr_log_path(inst, &row.id),
    ];
    let mut files: Vec<Option<std::fs::File>> = vec![];
    for p in &paths {
        files.push(std::fs::File::open(p).ok());
    }
    let mut outs: [Box<dyn Write>; 2] = [
        Box::new(std::io::stdout().lock()),
        Box::new(std::io::stderr().lock()),
    ];
    // The first read honours --tail; later ones (with -f) copy what came.
    for (f, out) in files.iter_mut().zip(outs.iter_mut()) {
        let Some(f) = f else { continue };
        let mut buf = vec![];
        std::io::Read::read_to_end(f, &mut buf).map_err(|e| cli_err(125, e.to_string()))?;
        let shown = match tail {
            Some(n) => tail_lines(&buf, n),
            None => &buf[..],
        };
        out.write_all(shown)
            .map_err(|e| cli_err(125, e.to_string()))?;
        let _ = out.flush();
    }
    if !a.follow {
        return Ok(0);
    }
    loop {
        let mut copied = 0;
        for ((f, out), p) in files.iter_mut().zip(outs.iter_mut()).zip(&paths) {
            if f.is_none() {
                *f = std::fs::File::open(p).ok();
            }
            if let Some(f) = f {
                copied += std::io::copy(f, out).map_err(|e| cli_err(125, e.to_string()))?;
                let _ = out.flush();
            }
        }
        if copied == 0 {
            // Still running? Check after the read, so the last bytes are never lost.
            let r = lifecycle::lookup(inst, &row.id)?;
            if !lifecycle::is_running(&r) && r.status != containers::CREATED {
                for (f, out) in files.iter_mut().zip(outs.iter_mut()) {
                    if let Some(f) = f {
                        std::io::copy(f, out).map_err(|e| cli_err(125, e.to_string()))?;
                        let _ = out.flush();
                    }
                }
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

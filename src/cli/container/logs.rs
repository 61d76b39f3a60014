//! `minirt logs`: parses, then `container::logs::show` reads and prints.

use super::cli_err;
use crate::cli::CliResult;
use clap::Args;
use minirt::container::lifecycle;
use minirt::container::logs::{self, ShowOptions};
use minirt::Instance;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs (or "all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since a time (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a time (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    pub until: Option<String>,
    /// Show extra details provided to logs.
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

pub fn logs(inst: &Instance, a: LogsArgs) -> CliResult {
    let tail = crate::cli::format::parse_tail(&a.tail).map_err(|e| cli_err(125, e))?;
    let now = minirt::util::now_nanos();
    let time = |v: &Option<String>| {
        v.as_deref()
            .map(|s| logs::parse_time(s, now))
            .transpose()
            .map_err(|e| cli_err(125, e))
    };
    let opts = ShowOptions {
        tail,
        since: time(&a.since)?,
        until: time(&a.until)?,
        timestamps: a.timestamps,
        details: a.details,
        follow: a.follow,
    };
    // Docker: a missing container is the daemon's error, exit 1.
    let row = lifecycle::lookup(inst, &a.container).map_err(|e| match e {
        minirt::Error::Container(minirt::container::ContainerError::NotFound(_)) => {
            cli_err(1, e.to_string())
        }
        e => e.into(),
    })?;
    let running =
        || -> minirt::Result<bool> { Ok(logs::still_writing(&lifecycle::lookup(inst, &row.id)?)) };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    logs::show(inst, &row.id, &opts, &mut out, &mut err, running)?;
    Ok(0)
}

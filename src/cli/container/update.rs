//! `minirt update`: new limits for containers.

use super::{cli_err, each};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::update::{self, Limits};
use minirt::Instance;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 64m, 1g; 0 removes it).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5; 0 removes the limit).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes (0 or -1 removes the limit).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when the container exits (no, on-failure[:N], always, unless-stopped).
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn update_cmd(inst: &Instance, a: UpdateArgs) -> CliResult {
    let bad = |e: minirt::cgroups::CgroupError| cli_err(125, e.to_string());
    let limits = Limits {
        memory: a
            .memory
            .as_deref()
            .map(minirt::cgroups::parse_memory)
            .transpose()
            .map_err(bad)?,
        nano_cpus: a
            .cpus
            .as_deref()
            .map(minirt::cgroups::parse_cpus)
            .transpose()
            .map_err(bad)?,
        pids_limit: a.pids_limit,
        restart: a
            .restart
            .as_deref()
            .map(minirt::container::restart::RestartPolicy::parse)
            .transpose()
            .map_err(|e| cli_err(125, e))?,
    };
    if limits == Limits::default() {
        return Err(cli_err(
            125,
            "you must provide one or more flags when using this command",
        ));
    }
    minirt::container::lifecycle::reconcile(inst)?;
    each(&a.containers, |c| update::update(inst, c, &limits))
}

//! `minirt healthcheck run CONTAINER` (Podman's command): runs the
//! container's health check now and records the result, as a scheduled
//! check does. Exit 0 when the check passed, 1 when it failed ("unhealthy"
//! on stdout), 125 when it could not run (no such container, no health
//! check defined, not running).

use super::{CliError, CliResult};
use clap::{Args, Subcommand};
use minirt::container::{health, lifecycle};
use minirt::Instance;

#[derive(Subcommand, Debug)]
pub enum HealthcheckCommand {
    /// Run a container's health check now.
    Run(HealthcheckRunArgs),
}

#[derive(Args, Debug)]
pub struct HealthcheckRunArgs {
    pub container: String,
}

pub fn dispatch(inst: &Instance, c: HealthcheckCommand) -> CliResult {
    match c {
        HealthcheckCommand::Run(a) => run(inst, a),
    }
}

fn run(inst: &Instance, a: HealthcheckRunArgs) -> CliResult {
    lifecycle::reconcile(inst)?;
    let row = lifecycle::lookup(inst, &a.container)?;
    match health::check_and_record(inst, &row.id) {
        Ok((_, true)) => Ok(0),
        Ok((status, false)) => {
            // Podman prints the status the failure left ("unhealthy", or
            // "starting" inside the start period).
            println!(
                "{}",
                if status == health::HEALTHY {
                    health::UNHEALTHY
                } else {
                    &status
                }
            );
            Ok(1)
        }
        Err(e) => Err(CliError {
            code: 125,
            message: e.to_string(),
        }),
    }
}

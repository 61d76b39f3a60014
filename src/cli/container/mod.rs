//! Docker-style container commands, one file per concern; this file holds
//! the shared error helpers and the `minirt container …` group.

mod attach;
mod control;
mod cp;
mod exec;
mod fsys;
mod inspect;
mod logs;
mod port;
mod ps;
mod run;
mod stats;
mod update;

pub use attach::*;
pub use control::*;
pub use cp::*;
pub use exec::*;
pub use fsys::*;
pub use inspect::*;
pub use logs::*;
pub use port::*;
pub use ps::*;
pub use run::*;
pub use stats::*;
pub use update::*;

use super::{CliError, CliResult};
use minirt::container::lifecycle;
use minirt::store::containers;
use minirt::Instance;

fn cli_err(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

fn store_err(e: impl Into<minirt::Error>) -> CliError {
    e.into().into()
}

pub(crate) fn template_err(message: String) -> CliError {
    cli_err(125, message)
}

fn each(keys: &[String], mut f: impl FnMut(&str) -> minirt::Result<()>) -> CliResult {
    let mut code = 0;
    for k in keys {
        match f(k) {
            Ok(()) => println!("{k}"),
            Err(e) => {
                eprintln!(
                    "minirt: {}",
                    minirt::validate::escape_controls(&e.to_string())
                );
                code = 1;
            }
        }
    }
    Ok(code)
}

/// A lookup miss as Docker's daemon reports it: exit 1.
fn lookup_1(inst: &Instance, key: &str) -> Result<containers::ContainerRow, CliError> {
    lifecycle::lookup(inst, key).map_err(|e| match e {
        minirt::Error::Container(minirt::container::ContainerError::NotFound(_)) => {
            cli_err(1, e.to_string())
        }
        e => e.into(),
    })
}

// `minirt container …`: Docker's management-group spellings of the
// container commands. (A plain comment: a doc comment would become the
// group's help text, over the one `cli::Command::Container` gives it.)
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers.
    #[command(alias = "ps", alias = "list")]
    Ls(PsArgs),
    /// Create and start a container from an image.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// Stop running containers.
    Stop(StopArgs),
    /// Restart containers.
    Restart(RestartArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Remove containers.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show low-level information on containers.
    Inspect(InspectArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(AttachArgs),
    /// List port mappings of a container.
    Port(PortArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(WaitArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Display the running processes of a container.
    Top(TopArgs),
    /// Copy files between a container and the host.
    Cp(CpArgs),
    /// Display resource usage of containers.
    Stats(StatsArgs),
    /// Change the limits of containers.
    Update(UpdateArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Pause all processes within containers.
    Pause(PauseArgs),
    /// Unpause all processes within containers.
    Unpause(PauseArgs),
    /// Remove all stopped containers.
    Prune(super::PruneArgs),
    /// Create a new image from a container's changes.
    Commit(crate::cli::commit::CommitArgs),
}

pub fn dispatch_group(inst: &Instance, c: ContainerCommand) -> CliResult {
    match c {
        ContainerCommand::Ls(a) => ps(inst, a),
        ContainerCommand::Run(a) => run(inst, a),
        ContainerCommand::Create(a) => create(inst, a),
        ContainerCommand::Start(a) => start(inst, a),
        ContainerCommand::Stop(a) => stop(inst, a),
        ContainerCommand::Restart(a) => restart(inst, a),
        ContainerCommand::Kill(a) => kill(inst, a),
        ContainerCommand::Rm(a) => rm(inst, a),
        ContainerCommand::Exec(a) => exec(inst, a),
        ContainerCommand::Inspect(a) => inspect(
            inst,
            InspectArgs {
                kind: Some("container".into()),
                ..a
            },
        ),
        ContainerCommand::Logs(a) => logs(inst, a),
        ContainerCommand::Attach(a) => attach(inst, a),
        ContainerCommand::Port(a) => port(inst, a),
        ContainerCommand::Wait(a) => wait(inst, a),
        ContainerCommand::Rename(a) => rename(inst, a),
        ContainerCommand::Top(a) => top(inst, a),
        ContainerCommand::Cp(a) => cp(inst, a),
        ContainerCommand::Stats(a) => stats_cmd(inst, a),
        ContainerCommand::Update(a) => update_cmd(inst, a),
        ContainerCommand::Commit(a) => crate::cli::commit::commit(inst, a),
        ContainerCommand::Diff(a) => diff_cmd(inst, a),
        ContainerCommand::Export(a) => export(inst, a),
        ContainerCommand::Pause(a) => pause(inst, a),
        ContainerCommand::Unpause(a) => unpause(inst, a),
        ContainerCommand::Prune(_) => {
            let removed = lifecycle::prune(inst)?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for id in &removed {
                    println!("{id}");
                }
            }
            Ok(0)
        }
    }
}

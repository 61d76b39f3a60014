//! Command-line surface (clap derive). Only parses, prints and maps errors to
//! exit codes; the work is done by library functions.

mod container;
mod image;
mod network;
pub mod oci;
mod output;

use clap::{Args, Parser, Subcommand};
use minirt::Instance;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "minirt",
    version,
    about = "A daemonless container runtime with built-in networking"
)]
pub struct Cli {
    /// Persistent state directory (database, image layers, containers).
    #[arg(
        long,
        global = true,
        env = "MINIRT_ROOT",
        default_value = "/var/lib/minirt"
    )]
    pub root: PathBuf,
    /// Volatile state directory (pid files, sockets, mounts).
    #[arg(
        long,
        global = true,
        env = "MINIRT_RUN_ROOT",
        default_value = "/run/minirt"
    )]
    pub run_root: PathBuf,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "MINIRT_LOG", default_value = "warn")]
    pub log_level: String,
    /// Print each run-path step's duration (microseconds) on stderr
    /// (env MINIRT_TIMINGS=1, or =/abs/path to append to a file).
    #[arg(long, global = true)]
    pub timings: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start a container from an image.
    Run(container::RunArgs),
    /// Start one or more stopped containers.
    Start(container::StartArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Show low-level information on containers.
    Inspect(container::InspectArgs),
    /// Fetch the logs of a container.
    Logs(container::LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period).
    Stop(container::StopArgs),
    /// Send a signal to running containers.
    Kill(container::KillArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Load images from a `docker save` or OCI image-layout archive.
    Load(image::LoadArgs),
    /// Import a flat root filesystem tarball as an image.
    Import(image::ImportArgs),
    /// List images.
    Images(image::ImagesArgs),
    /// Remove images.
    Rmi(image::RmiArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage minirt itself.
    #[command(subcommand)]
    System(SystemCommand),
    /// The DNS responder of user-defined networks (started by minirt itself).
    #[command(name = "__dns", hide = true)]
    Dns,
    /// Records a detached container's exit and tears it down (run by its
    /// waiting monitor, see container::waiter).
    #[command(name = "__finish", hide = true)]
    Finish { id: String, code: i32 },
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Remove stopped containers, unused networks and dangling state.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation (minirt never prompts; accepted for compatibility).
    #[arg(short, long)]
    pub force: bool,
}

/// The error the CLI reports: one line, and the exit code to leave with.
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl From<minirt::Error> for CliError {
    fn from(e: minirt::Error) -> CliError {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        match e.downcast::<minirt::Error>() {
            Ok(e) => e.into(),
            Err(e) => CliError {
                code: 125,
                message: format!("{e:#}"),
            },
        }
    }
}

pub type CliResult = std::result::Result<i32, CliError>;

pub fn main() -> i32 {
    let cli = Cli::parse();
    let timings =
        minirt::timings::sink_from(cli.timings, std::env::var("MINIRT_TIMINGS").ok().as_deref());
    init_tracing(&cli.log_level, timings);
    let total = tracing::info_span!("total").entered();
    let res = dispatch(cli);
    drop(total);
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minirt: {}", e.message);
            e.code
        }
    }
}

fn init_tracing(level: &str, timings: Option<minirt::timings::Sink>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Per-layer filters: the log level must not hide the spans timings need.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(minirt::timings::layer(timings))
        .try_init();
}

fn instance(cli: &Cli) -> Result<Instance, CliError> {
    Instance::new(&cli.root, &cli.run_root).map_err(|e| CliError {
        code: 125,
        message: format!("cannot use root {}: {e}", cli.root.display()),
    })
}

fn dispatch(cli: Cli) -> CliResult {
    let inst = instance(&cli)?;
    match cli.command {
        Command::Run(a) => container::run(&inst, a),
        Command::Start(a) => container::start(&inst, a),
        Command::Exec(a) => container::exec(&inst, a),
        Command::Ps(a) => container::ps(&inst, a),
        Command::Inspect(a) => container::inspect(&inst, a),
        Command::Logs(a) => container::logs(&inst, a),
        Command::Stop(a) => container::stop(&inst, a),
        Command::Kill(a) => container::kill(&inst, a),
        Command::Rm(a) => container::rm(&inst, a),
        Command::Load(a) => image::load(&inst, a),
        Command::Import(a) => image::import(&inst, a),
        Command::Images(a) => image::images(&inst, a),
        Command::Rmi(a) => image::rmi(&inst, a),
        Command::Network(c) => network::dispatch(&inst, c),
        Command::System(SystemCommand::Prune(_)) => container::system_prune(&inst),
        Command::Finish { id, code } => {
            minirt::container::runtime::finish(&inst, &id, code)?;
            Ok(0)
        }
        Command::Dns => minirt::network::dns::run_responder(&inst)
            .map(|()| 0)
            .map_err(|e| CliError {
                code: 1,
                message: e.to_string(),
            }),
    }
}

//! Command-line surface (clap derive). Only parses, prints and maps errors to
//! exit codes; the work is done by library functions.

mod commit;
mod container;
mod df;
mod events;
mod format;
mod healthcheck;
mod image;
mod lazy;
mod network;
pub mod oci;
mod output;
mod registry;
mod system;
mod template;
mod volume;

use clap::{Args, Parser, Subcommand};
use lazy::Lazy;
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
    /// The cluster store of overlay networks: etcd://HOST:PORT[,HOST:PORT...].
    #[arg(long, global = true, env = "MINIRT_CLUSTER_STORE")]
    pub cluster_store: Option<String>,
    /// This host's underlay address for overlay networks (never guessed).
    #[arg(long, global = true, env = "MINIRT_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start a container from an image.
    Run(Lazy<container::RunArgs>),
    /// Create a container without starting it.
    Create(Lazy<container::RunArgs>),
    /// Start one or more stopped containers.
    Start(Lazy<container::StartArgs>),
    /// Run a command in a running container.
    Exec(Lazy<container::ExecArgs>),
    /// List containers.
    Ps(Lazy<container::PsArgs>),
    /// Show low-level information on containers.
    Inspect(Lazy<container::InspectArgs>),
    /// Fetch the logs of a container.
    Logs(Lazy<container::LogsArgs>),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(Lazy<container::AttachArgs>),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period).
    Stop(Lazy<container::StopArgs>),
    /// Send a signal to running containers.
    Kill(Lazy<container::KillArgs>),
    /// Remove containers.
    Rm(Lazy<container::RmArgs>),
    /// Load images from a `docker save` or OCI image-layout archive.
    Load(Lazy<image::LoadArgs>),
    /// Save images to a tar archive (docker-archive or oci-archive).
    Save(Lazy<image::SaveArgs>),
    /// Import a flat root filesystem tarball as an image.
    Import(Lazy<image::ImportArgs>),
    /// List images.
    Images(Lazy<image::ImagesArgs>),
    /// Remove images.
    Rmi(Lazy<image::RmiArgs>),
    /// Pull an image from a registry.
    Pull(Lazy<registry::PullArgs>),
    /// Push an image to a registry.
    Push(Lazy<registry::PushArgs>),
    /// Log in to a registry (credentials in Docker's config.json).
    Login(Lazy<registry::LoginArgs>),
    /// Log out from a registry.
    Logout(Lazy<registry::LogoutArgs>),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(Lazy<registry::TagArgs>),
    /// Show the history of an image.
    History(Lazy<image::HistoryArgs>),
    /// Manage images.
    #[command(subcommand)]
    Image(Lazy<ImageCommand>),
    /// Manage networks.
    #[command(subcommand)]
    Network(Lazy<network::NetworkCommand>),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(Lazy<volume::VolumeCommand>),
    /// Manage minirt itself.
    #[command(subcommand)]
    System(Lazy<SystemCommand>),
    /// List port mappings of a container.
    Port(Lazy<container::PortArgs>),
    /// Block until containers stop, then print their exit codes.
    Wait(Lazy<container::WaitArgs>),
    /// Rename a container.
    Rename(Lazy<container::RenameArgs>),
    /// Display the running processes of a container.
    Top(Lazy<container::TopArgs>),
    /// Restart containers.
    Restart(Lazy<container::RestartArgs>),
    /// Run a container's health check now (Podman's command).
    #[command(subcommand)]
    Healthcheck(Lazy<healthcheck::HealthcheckCommand>),
    /// Copy files between a container and the host (`-` for a tar stream).
    Cp(Lazy<container::CpArgs>),
    /// Display resource usage of containers (--no-stream).
    Stats(Lazy<container::StatsArgs>),
    /// Change the limits of containers (memory, CPUs, pids).
    Update(Lazy<container::UpdateArgs>),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(Lazy<container::DiffArgs>),
    /// Export a container's filesystem as a tar archive.
    Export(Lazy<container::ExportArgs>),
    /// Pause all processes within containers.
    Pause(Lazy<container::PauseArgs>),
    /// Unpause all processes within containers.
    Unpause(Lazy<container::PauseArgs>),
    /// Show the minirt version.
    Version(Lazy<system::VersionArgs>),
    /// Display system-wide information.
    Info(Lazy<system::InfoArgs>),
    /// Manage containers (Docker's management-group spelling).
    #[command(subcommand)]
    Container(Lazy<container::ContainerCommand>),
    /// Create a new image from a container's changes.
    Commit(Lazy<commit::CommitArgs>),
    /// Get real time events (and past ones with --since/--until).
    Events(Lazy<events::EventsArgs>),
    /// Print a shell completion script (bash, zsh, fish ...).
    Completion(Lazy<system::CompletionArgs>),
    /// Writes man pages into a directory (used by scripts/setup).
    #[command(name = "__man", hide = true)]
    Man { dir: PathBuf },
    /// The DNS responder of user-defined networks (started by minirt itself).
    #[command(name = "__dns", hide = true)]
    Dns,
    /// The overlay agent: leases, watch, VXLAN peers (started by minirt).
    #[command(name = "__overlay", hide = true)]
    Overlay,
    /// Restores the firewall table when someone removes it (started by minirt).
    #[command(name = "__fwguard", hide = true)]
    FwGuard,
    /// Serves a port published on [::1] (started by minirt, see
    /// network::proxy6): PORT on [::1] to TARGET, its pid into PIDFILE.
    #[command(name = "__proxy6", hide = true)]
    Proxy6 {
        port: u16,
        target: std::net::SocketAddr,
        pid_file: PathBuf,
    },
    /// Records a detached container's exit and tears it down (run by its
    /// waiting monitor, see container::waiter).
    #[command(name = "__finish", hide = true)]
    Finish { id: String, code: i32 },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Show images as JSON (Docker's shape).
    Inspect(image::ImageInspectArgs),
    /// Show the history of an image.
    History(image::HistoryArgs),
    /// Pull an image from a registry.
    Pull(registry::PullArgs),
    /// Push an image to a registry.
    Push(registry::PushArgs),
    /// Save images to a tar archive.
    Save(image::SaveArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(registry::TagArgs),
    /// Remove unused images (dangling ones, or with -a all unused).
    Prune(image::ImagePruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Remove stopped containers, unused networks and dangling state.
    Prune(PruneArgs),
    /// Show disk usage (images, containers, local volumes, build cache).
    Df(df::DfArgs),
    /// Get real time events (Docker's `system events`).
    Events(events::EventsArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let timings =
        minirt::timings::sink_from(cli.timings, std::env::var("MINIRT_TIMINGS").ok().as_deref());
    init_tracing(&cli.log_level, timings);
    overlay_env(&cli);
    let total = tracing::info_span!("total").entered();
    let res = dispatch(cli);
    drop(total);
    overlay_requests_log();
    match res {
        Ok(code) => code,
        Err(e) => {
            // Whatever a user typed and the message repeats stays one line.
            eprintln!("minirt: {}", minirt::validate::escape_controls(&e.message));
            e.code
        }
    }
}

/// The overlay options reach the overlay code (and the agent it starts)
/// through their environment variables.
fn overlay_env(cli: &Cli) {
    use minirt::network::overlay::{ADVERTISE_ENV, STORE_ENV};
    for (key, v) in [
        (STORE_ENV, &cli.cluster_store),
        (ADVERTISE_ENV, &cli.advertise_addr),
    ] {
        if let Some(v) = v {
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var(key, v);
        }
    }
}

/// `MINIRT_ETCD_REQUESTS_LOG=FILE`: appends how many requests this command
/// sent to the cluster store (the bench counts them per container start).
fn overlay_requests_log() {
    if let Some(path) = std::env::var_os("MINIRT_ETCD_REQUESTS_LOG") {
        use std::io::Write;
        let n = minirt::network::overlay::store::requests();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{n}");
        }
    }
}

/// Help and version are printed as clap does (exit 0); any other parse error is one line
/// on stderr and Docker's 125 (clap would exit 2 with a multi-line report).
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        _ => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            eprintln!("minirt: {}", usage_line(&e, &command_path(&args)));
            125
        }
    }
}

/// One line: Docker's "unknown flag: --x" for an unknown option, clap's own
/// first line otherwise, and where the help is.
fn usage_line(e: &clap::Error, path: &str) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let what = match (e.kind(), arg) {
        (ErrorKind::UnknownArgument, Some(a)) if a.starts_with('-') => {
            format!("unknown flag: {a}")
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    };
    format!("{what} (see '{path} --help')")
}

/// "minirt network create": the subcommands named on the command line.
fn command_path(args: &[String]) -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = vec!["minirt".to_string()];
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a.starts_with('-') {
            // A global option's value is the next word.
            if matches!(a.as_str(), "--root" | "--run-root" | "--log-level") {
                rest.next();
            }
            continue;
        }
        match cmd.find_subcommand(a) {
            // (clap's own `help` subcommand, which building adds, is no step.)
            Some(sub) if sub.get_name() != "help" => {
                path.push(sub.get_name().to_string());
                cmd = sub.clone();
                // Its own subcommands may be defined lazily (cli::lazy).
                cmd.build();
            }
            _ => break,
        }
    }
    path.join(" ")
}

fn init_tracing(level: &str, timings: Option<minirt::timings::Sink>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Per-layer filters: the log level must not hide the spans timings need.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        // No colour codes into files and pipes (scripts grep these lines).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

/// Commands that only print: output into a closed pipe (`| head -1`) ends
/// them quietly by SIGPIPE, as it ends Docker's Go binary. Commands that own
/// a container (run, start -a, exec) keep SIGPIPE ignored: a reader going
/// away must not kill a container's monitor, and commands that feed `nft`
/// on a pipe (network create/rm/connect) must see its early exit as an
/// error, not die of it.
fn prints_only(c: &Command) -> bool {
    matches!(
        c,
        Command::Ps(_)
            | Command::Inspect(_)
            | Command::Logs(_)
            | Command::Images(_)
            | Command::Network(Lazy(network::NetworkCommand::Ls(_)))
            | Command::Network(Lazy(network::NetworkCommand::Inspect(_)))
            | Command::Port(_)
            | Command::Top(_)
            | Command::Stats(_)
            | Command::Diff(_)
            | Command::Export(_)
            | Command::Version(_)
            | Command::Info(_)
            | Command::Completion(_)
            | Command::Events(_)
            | Command::System(Lazy(SystemCommand::Df(_)))
            | Command::System(Lazy(SystemCommand::Events(_)))
            | Command::Container(Lazy(container::ContainerCommand::Ls(_)))
            | Command::Container(Lazy(container::ContainerCommand::Inspect(_)))
            | Command::Container(Lazy(container::ContainerCommand::Logs(_)))
    )
}

fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal before any
    // thread exists; no handler code runs.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

fn dispatch(cli: Cli) -> CliResult {
    if prints_only(&cli.command) {
        quiet_on_closed_pipe();
    }
    // Commands that need no state directory.
    match &cli.command {
        Command::Version(_) | Command::Completion(_) | Command::Man { .. } => {
            return match cli.command {
                Command::Version(Lazy(a)) => system::version(a),
                Command::Completion(Lazy(a)) => system::completion(a),
                Command::Man { dir } => system::man_pages(&dir),
                _ => Ok(0),
            }
        }
        _ => {}
    }
    let inst = instance(&cli)?;
    match cli.command {
        Command::Run(Lazy(a)) => container::run(&inst, a),
        Command::Create(Lazy(a)) => container::create(&inst, a),
        Command::Start(Lazy(a)) => container::start(&inst, a),
        Command::Exec(Lazy(a)) => container::exec(&inst, a),
        Command::Ps(Lazy(a)) => container::ps(&inst, a),
        Command::Inspect(Lazy(a)) => container::inspect(&inst, a),
        Command::Logs(Lazy(a)) => container::logs(&inst, a),
        Command::Attach(Lazy(a)) => container::attach(&inst, a),
        Command::Stop(Lazy(a)) => container::stop(&inst, a),
        Command::Kill(Lazy(a)) => container::kill(&inst, a),
        Command::Rm(Lazy(a)) => container::rm(&inst, a),
        Command::Load(Lazy(a)) => image::load(&inst, a),
        Command::Save(Lazy(a)) => image::save(&inst, a),
        Command::Import(Lazy(a)) => image::import(&inst, a),
        Command::Images(Lazy(a)) => image::images(&inst, a),
        Command::Rmi(Lazy(a)) => image::rmi(&inst, a),
        Command::Pull(Lazy(a)) => registry::pull_cmd(&inst, a),
        Command::Push(Lazy(a)) => registry::push_cmd(&inst, a),
        Command::Login(Lazy(a)) => registry::login(&inst, a),
        Command::Logout(Lazy(a)) => registry::logout(&inst, a),
        Command::Tag(Lazy(a)) => registry::tag(&inst, a),
        Command::History(Lazy(a)) => image::history(&inst, a),
        Command::Image(Lazy(ImageCommand::Inspect(a))) => image::inspect(&inst, a),
        Command::Image(Lazy(ImageCommand::History(a))) => image::history(&inst, a),
        Command::Image(Lazy(ImageCommand::Pull(a))) => registry::pull_cmd(&inst, a),
        Command::Image(Lazy(ImageCommand::Push(a))) => registry::push_cmd(&inst, a),
        Command::Image(Lazy(ImageCommand::Save(a))) => image::save(&inst, a),
        Command::Image(Lazy(ImageCommand::Tag(a))) => registry::tag(&inst, a),
        Command::Image(Lazy(ImageCommand::Prune(a))) => image::prune(&inst, a),
        Command::Network(Lazy(c)) => network::dispatch(&inst, c),
        Command::Volume(Lazy(c)) => volume::dispatch(&inst, c),
        Command::System(Lazy(SystemCommand::Prune(_))) => container::system_prune(&inst),
        Command::System(Lazy(SystemCommand::Df(a))) => df::df(&inst, a),
        Command::System(Lazy(SystemCommand::Events(a))) => events::events(&inst, a),
        Command::Port(Lazy(a)) => container::port(&inst, a),
        Command::Wait(Lazy(a)) => container::wait(&inst, a),
        Command::Rename(Lazy(a)) => container::rename(&inst, a),
        Command::Top(Lazy(a)) => container::top(&inst, a),
        Command::Restart(Lazy(a)) => container::restart(&inst, a),
        Command::Cp(Lazy(a)) => container::cp(&inst, a),
        Command::Stats(Lazy(a)) => container::stats_cmd(&inst, a),
        Command::Update(Lazy(a)) => container::update_cmd(&inst, a),
        Command::Diff(Lazy(a)) => container::diff_cmd(&inst, a),
        Command::Export(Lazy(a)) => container::export(&inst, a),
        Command::Pause(Lazy(a)) => container::pause(&inst, a),
        Command::Unpause(Lazy(a)) => container::unpause(&inst, a),
        Command::Info(Lazy(a)) => system::info(&inst, a),
        Command::Events(Lazy(a)) => events::events(&inst, a),
        Command::Commit(Lazy(a)) => commit::commit(&inst, a),
        Command::Healthcheck(Lazy(c)) => healthcheck::dispatch(&inst, c),
        Command::Container(Lazy(c)) => container::dispatch_group(&inst, c),
        Command::Version(_) | Command::Completion(_) | Command::Man { .. } => Ok(0),
        Command::Finish { id, code } => {
            minirt::container::monitor::after_exit(&inst, &id, code)?;
            Ok(0)
        }
        Command::Proxy6 {
            port,
            target,
            pid_file,
        } => minirt::network::proxy6::run(port, target, &pid_file)
            .map(|()| 0)
            .map_err(|e| CliError {
                code: 1,
                message: e.to_string(),
            }),
        Command::FwGuard => minirt::network::guard::run(&inst)
            .map(|()| 0)
            .map_err(|e| CliError {
                code: 1,
                message: e.to_string(),
            }),
        Command::Overlay => minirt::network::overlay::agent::run_agent(&inst)
            .map(|()| 0)
            .map_err(|e| CliError {
                code: 1,
                message: e.to_string(),
            }),
        Command::Dns => minirt::network::dns::run_responder(&inst)
            .map(|()| 0)
            .map_err(|e| CliError {
                code: 1,
                message: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("minirt").chain(args.iter().copied()))
    }

    #[test]
    fn an_unknown_flag_before_the_image_is_a_flag_error() {
        let e = parse(&["run", "--bogus-flag", "x", "busybox"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        let line = usage_line(&e, &command_path(&["run".into()]));
        assert_eq!(line, "unknown flag: --bogus-flag (see 'minirt run --help')");
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let Command::Run(Lazy(a)) = parse(&["run", "--rm", "busybox", "ls", "-l", "--x"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert_eq!(a.image_and_cmd, ["busybox", "ls", "-l", "--x"]);
        let Command::Exec(Lazy(a)) = parse(&["exec", "web", "ls", "-la"]).unwrap().command else {
            panic!("not exec")
        };
        assert_eq!(a.container_and_cmd, ["web", "ls", "-la"]);
    }

    #[test]
    fn the_help_path_names_the_subcommands_past_global_options() {
        let args: Vec<String> = ["--root", "/r", "network", "create", "--bogus", "n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_path(&args), "minirt network create");
        assert_eq!(command_path(&["nope".into()]), "minirt");
    }
}

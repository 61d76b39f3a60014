//! `minirt run | start | exec | ps | inspect | logs | stop | kill | rm`.

use super::{not_implemented, CliResult, MonitorArgs};
use clap::Args;
use minirt::Instance;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Keep STDIN open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Container hostname.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set environment variables (K=V, or K to copy from the caller).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOSTDIR:CTRDIR[:ro].
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Network: none, host, bridge or a network name.
    #[arg(long, visible_alias = "network")]
    pub net: Option<String>,
    /// IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
    /// DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Extra /etc/hosts entries NAME:IP.
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Publish ports [HOSTIP:]HOSTPORT:CTRPORT[/PROTO] or CTRPORT.
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Extra DNS names on the network.
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// Image, then command and arguments.
    #[arg(required = true, allow_hyphen_values = true)]
    pub image_and_cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container, then command and arguments.
    #[arg(required = true, num_args = 2.., allow_hyphen_values = true)]
    pub container_and_cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(_inst: &Instance, _a: RunArgs) -> CliResult {
    not_implemented("run")
}
pub fn start(_inst: &Instance, _a: StartArgs) -> CliResult {
    not_implemented("start")
}
pub fn exec(_inst: &Instance, _a: ExecArgs) -> CliResult {
    not_implemented("exec")
}
pub fn ps(_inst: &Instance, _a: PsArgs) -> CliResult {
    not_implemented("ps")
}
pub fn inspect(_inst: &Instance, _a: InspectArgs) -> CliResult {
    not_implemented("inspect")
}
pub fn logs(_inst: &Instance, _a: LogsArgs) -> CliResult {
    not_implemented("logs")
}
pub fn stop(_inst: &Instance, _a: StopArgs) -> CliResult {
    not_implemented("stop")
}
pub fn kill(_inst: &Instance, _a: KillArgs) -> CliResult {
    not_implemented("kill")
}
pub fn rm(_inst: &Instance, _a: RmArgs) -> CliResult {
    not_implemented("rm")
}
pub fn system_prune(_inst: &Instance) -> CliResult {
    not_implemented("system prune")
}
pub fn monitor(_inst: &Instance, _a: MonitorArgs) -> CliResult {
    not_implemented("__monitor")
}

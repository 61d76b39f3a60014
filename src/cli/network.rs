//! `minirt network create | ls | inspect | rm | prune | connect | disconnect | reload`.

use super::{not_implemented, CliResult};
use clap::{Args, Subcommand};
use minirt::Instance;

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(InspectArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all networks no container uses.
    Prune(PruneArgs),
    /// Connect a running container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Re-apply every network's firewall rules.
    Reload,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver (only `bridge`).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address (default: first address of the subnet).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Driver options: mtu=N, bridge_name=NAME.
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub alias: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

pub fn dispatch(_inst: &Instance, c: NetworkCommand) -> CliResult {
    match c {
        NetworkCommand::Create(_) => not_implemented("network create"),
        NetworkCommand::Ls(_) => not_implemented("network ls"),
        NetworkCommand::Inspect(_) => not_implemented("network inspect"),
        NetworkCommand::Rm(_) => not_implemented("network rm"),
        NetworkCommand::Prune(_) => not_implemented("network prune"),
        NetworkCommand::Connect(_) => not_implemented("network connect"),
        NetworkCommand::Disconnect(_) => not_implemented("network disconnect"),
        NetworkCommand::Reload => not_implemented("network reload"),
    }
}

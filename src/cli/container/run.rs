//! `minirt run` and `start`: the run flags and starting containers.

use super::cli_err;
use crate::cli::{CliError, CliResult};
use clap::Args;
use minirt::container::create::RunOptions;
use minirt::container::lifecycle;
use minirt::network::NetworkRequest;
use minirt::Instance;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Keep STDIN open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Pull the image: missing (when not present), always, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Overwrite the image's entrypoint ("" clears it; the image's Cmd is dropped too).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    /// Command to run to check health ("none" disables the image's).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 3).
    #[arg(long, allow_negative_numbers = true)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period (ms|s|m|h) (default 5s).
    #[arg(long)]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Signal to stop the container (default the image's, else SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the container to stop before killing it (default 10).
    #[arg(long, allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Container hostname (a value with a leading '-' is taken as the
    /// value, as Docker's flag parser does, and then refused as a name).
    #[arg(short = 'h', long, allow_hyphen_values = true)]
    pub hostname: Option<String>,
    /// Set environment variables (K=V, or K to copy from the caller).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOSTDIR:CTRDIR[:ro], a named volume NAME:CTRDIR[:ro], or
    /// an anonymous volume CTRDIR.
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Mount: type=bind|volume,source=..,target=..[,readonly].
    #[arg(long)]
    pub mount: Vec<String>,
    /// Set metadata KEY=VALUE on the container.
    #[arg(short = 'l', long)]
    pub label: Vec<String>,
    /// Mount a tmpfs PATH[:OPTIONS] (size=64m, mode=1777, exec, ...).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, ...).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. 128m).
    #[arg(long)]
    pub shm_size: Option<String>,
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
    /// IPv6 address on the network (one created with --ipv6).
    #[arg(long)]
    pub ip6: Option<String>,
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
    /// Add Linux capabilities (NET_ADMIN, CAP_SYS_TIME, ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (CHOWN, ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Every capability and device, no seccomp, /proc and /sys unmasked.
    #[arg(long)]
    pub privileged: bool,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Image, then command and arguments.
    #[arg(required = true)]
    pub image_and_cmd: Vec<String>,
}

/// The options a `run` or `create` asks for, and its pull policy.
fn options(a: RunArgs, cmd: &str) -> Result<(RunOptions, String), CliError> {
    let mut a = a;
    for m in std::mem::take(&mut a.mount) {
        if let Some(t) = minirt::container::tmpfs::from_mount(&m) {
            let t = t.map_err(|e| {
                cli_err(
                    125,
                    format!("invalid argument \"{m}\" for \"--mount\" flag: {e}"),
                )
            })?;
            a.tmpfs.push(t);
            continue;
        }
        let v = minirt::container::volume::mount_as_volume(&m).map_err(|e| {
            cli_err(
                125,
                format!("invalid argument \"{m}\" for \"--mount\" flag: {e}"),
            )
        })?;
        a.volume.push(v);
    }
    let mut it = a.image_and_cmd.into_iter();
    let image = it.next().ok_or_else(|| {
        cli_err(
            125,
            format!("\"minirt {cmd}\" requires at least 1 argument"),
        )
    })?;
    let mut env_files = vec![];
    for f in &a.env_file {
        env_files.push(
            std::fs::read_to_string(f)
                .map_err(|e| cli_err(125, format!("open {}: {e}", f.display())))?,
        );
    }
    let opts = RunOptions {
        labels: a.label,
        ulimits: a.ulimit,
        tmpfs: a.tmpfs,
        shm_size: a.shm_size,
        image,
        cmd: it.collect(),
        name: a.name,
        hostname: a.hostname,
        env: a.env,
        env_files,
        volumes: a.volume,
        workdir: a.workdir,
        user: a.user,
        memory: a.memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: a.rm,
        restart: a.restart,
        health: minirt::container::health::HealthFlags {
            cmd: a.health_cmd,
            interval: a.health_interval,
            timeout: a.health_timeout,
            retries: a.health_retries,
            start_period: a.health_start_period,
            start_interval: a.health_start_interval,
            none: a.no_healthcheck,
        },
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        network: NetworkRequest {
            mode: a.net.unwrap_or_default(),
            ip: a.ip,
            ip6: a.ip6,
            dns: a.dns,
            add_hosts: a.add_host,
            publish: a.publish,
            aliases: a.network_alias,
        },
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        security_opt: a.security_opt,
        read_only: a.read_only,
        entrypoint: a.entrypoint,
    };
    Ok((opts, a.pull))
}

pub fn run(inst: &Instance, a: RunArgs) -> CliResult {
    let (detach, tty, interactive) = (a.detach, a.tty, a.interactive);
    let (opts, pull) = options(a, "run")?;
    let id = create_with_volumes(inst, opts, &pull)?;
    let res = if detach {
        lifecycle::start_detached(inst, &id, tty).map(|()| {
            println!("{id}");
            0
        })
    } else {
        lifecycle::run_foreground(inst, &id, tty, interactive)
    };
    // A container that never started is not left behind (unlike Docker's
    // "Created" leftovers): bad input leaves nothing.
    res.map_err(|e| {
        match lifecycle::rm(inst, &id, true) {
            // With --rm the failed start has removed it already.
            Ok(())
            | Err(minirt::Error::Container(minirt::container::ContainerError::NotFound(_))) => {}
            Err(rm) => tracing::warn!("removing {id} after a failed start: {rm}"),
        }
        e.into()
    })
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn start(inst: &Instance, a: StartArgs) -> CliResult {
    if a.attach && a.containers.len() > 1 {
        return Err(cli_err(
            125,
            "you cannot start and attach multiple containers at once",
        ));
    }
    let mut failed = None;
    for c in &a.containers {
        match lifecycle::start(inst, c, a.attach) {
            Ok(code) if a.attach => return Ok(code),
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!(
                    "minirt: {}",
                    minirt::validate::escape_controls(&e.to_string())
                );
                failed = Some(e.exit_code());
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

/// `minirt create`: everything `run` does but the start; the container
/// stays `Created` (owned by nobody, so no later command takes it for a
/// crashed `run`) until `start`.
pub fn create(inst: &Instance, a: RunArgs) -> CliResult {
    if a.detach {
        return Err(cli_err(
            125,
            "unknown flag: --detach (see 'minirt create --help')",
        ));
    }
    let (opts, pull) = options(a, "create")?;
    let id = create_with_volumes(inst, opts, &pull)?;
    lifecycle::release_created(inst, &id)?;
    println!("{id}");
    Ok(0)
}

/// The container made, with the volumes its `-v` values name (made and
/// filled from the image on first use); nothing is left when it fails.
fn create_with_volumes(
    inst: &Instance,
    mut opts: RunOptions,
    pull: &str,
) -> Result<String, CliError> {
    use crate::cli::volume;
    let vols = volume::prepare(inst, &mut opts.volumes)?;
    let id =
        crate::cli::registry::create_pulling(inst, &opts, pull).inspect_err(|_| vols.undo(inst))?;
    if let Err(e) = vols.copy_up(inst, &id) {
        let _ = lifecycle::rm(inst, &id, true);
        vols.undo(inst);
        return Err(e);
    }
    Ok(id)
}

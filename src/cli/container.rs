//! `minirt run | start | exec | ps | inspect | logs | stop | kill | rm`.

use super::output::table;
use super::{CliError, CliResult};
use clap::Args;
use minirt::container::create::{self, RunOptions};
use minirt::container::lifecycle;
use minirt::network::{self, NetworkRequest};
use minirt::store::{containers, Store};
use minirt::util;
use minirt::Instance;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
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

fn cli_err(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

pub fn run(inst: &Instance, a: RunArgs) -> CliResult {
    let mut it = a.image_and_cmd.into_iter();
    let image = it
        .next()
        .ok_or_else(|| cli_err(125, "\"minirt run\" requires at least 1 argument"))?;
    let mut env_files = vec![];
    for f in &a.env_file {
        env_files.push(
            std::fs::read_to_string(f)
                .map_err(|e| cli_err(125, format!("open {}: {e}", f.display())))?,
        );
    }
    if a.detach && a.rm && a.interactive && a.tty {
        // Fine: -dit --rm is allowed, like Docker.
    }
    let opts = RunOptions {
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
        network: NetworkRequest {
            mode: a.net.unwrap_or_default(),
            ip: a.ip,
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
    };
    let id = create::create(inst, &opts)?;
    let res = if a.detach {
        lifecycle::start_detached(inst, &id, a.tty).map(|()| {
            println!("{id}");
            0
        })
    } else {
        lifecycle::run_foreground(inst, &id, a.tty, a.interactive)
    };
    // A container that never started is not left behind (unlike Docker's
    // "Created" leftovers): bad input leaves nothing.
    res.map_err(|e| {
        if let Err(rm) = lifecycle::rm(inst, &id, true) {
            tracing::warn!("removing {id} after a failed start: {rm}");
        }
        e.into()
    })
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
                eprintln!("minirt: {e}");
                failed = Some(e.exit_code());
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

pub fn exec(inst: &Instance, a: ExecArgs) -> CliResult {
    use minirt::container::exec::{exec_in, ExecRequest};
    use minirt::container::process::ProcessSpec;
    use minirt::container::spec;
    let mut it = a.container_and_cmd.into_iter();
    let key = it.next().unwrap_or_default();
    let args: Vec<String> = it.collect();
    lifecycle::reconcile(inst)?;
    let row = lifecycle::lookup(inst, &key)?;
    if !lifecycle::is_running(&row) {
        return Err(cli_err(125, format!("Container {} is not running", row.id)));
    }
    let cfg = lifecycle::config_of(&row);
    let mut env = cfg.env.clone();
    for e in &a.env {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        env.retain(|x| x.split_once('=').map(|(k, _)| k) != Some(key));
        match e.split_once('=') {
            Some(_) => env.push(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push(format!("{e}={v}"));
                }
            }
        }
    }
    // The container's own capabilities and seccomp filter, as its init got them.
    let caps = spec::capabilities(&cfg).map_err(|e| cli_err(125, e.to_string()))?;
    let seccomp = spec::seccomp_profile(&cfg, &caps);
    let process = ProcessSpec {
        args,
        env,
        cwd: a.workdir.unwrap_or(cfg.workdir),
        user: a.user.unwrap_or(cfg.user),
        capabilities: Some(caps),
        no_new_privs: true,
        seccomp,
        ..Default::default()
    };
    let mut req = ExecRequest::new(row.pid, process);
    req.cgroup_procs = minirt::container::runtime::cgroup_of(inst, &row.id).procs_files();
    req.tty = a.tty;
    req.interactive = a.interactive;
    req.detach = a.detach;
    Ok(exec_in(&req).map_err(minirt::Error::from)?)
}

pub fn ps(inst: &Instance, a: PsArgs) -> CliResult {
    let rows = lifecycle::list(inst)?;
    let store = Store::open(&inst.db_path()).map_err(minirt::Error::from)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| a.all || r.status == containers::RUNNING)
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", &r.id[..12]);
        }
        return Ok(0);
    }
    let now = util::now_nanos();
    let mut out = vec![];
    let mut json_rows = vec![];
    for r in &rows {
        let nets: Vec<String> = network::container_networks(&store, &r.id)
            .map_err(minirt::Error::from)?
            .iter()
            .map(|e| format!("{}={}", e.network_name, e.ip))
            .collect();
        let ports = network::container_ports(&store, &r.id).map_err(minirt::Error::from)?;
        let created = format!(
            "{} ago",
            util::human_duration((now - r.created) / 1_000_000_000)
        );
        let status = lifecycle::status_text(r, now);
        json_rows.push(json!({
            "ID": &r.id[..12], "Image": r.image, "Command": lifecycle::command_text(&r.command),
            "CreatedAt": util::rfc3339(r.created), "RunningFor": created, "Status": status,
            "State": r.status, "Ports": ports.join(", "), "Names": r.name, "Networks": nets.join(", "),
        }));
        out.push(vec![
            r.id[..12].to_string(),
            r.image.clone(),
            lifecycle::command_text(&r.command),
            created,
            status,
            ports.join(", "),
            r.name.clone(),
            nets.join(", "),
        ]);
    }
    if a.format == "json" {
        for j in json_rows {
            println!("{j}");
        }
        return Ok(0);
    }
    if a.format != "table" {
        return Err(cli_err(
            125,
            format!("unknown format {:?}: use table or json", a.format),
        ));
    }
    print!(
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
                "NETWORKS"
            ],
            &out
        )
    );
    Ok(0)
}

pub fn inspect(inst: &Instance, a: InspectArgs) -> CliResult {
    lifecycle::reconcile(inst)?;
    let store = Store::open(&inst.db_path()).map_err(minirt::Error::from)?;
    let mut out = vec![];
    let mut missing = vec![];
    for key in &a.containers {
        let r = match containers::lookup(store.conn(), key) {
            Ok(r) => r,
            Err(_) => {
                missing.push(key.clone());
                continue;
            }
        };
        let cfg = lifecycle::config_of(&r);
        let mut nets = serde_json::Map::new();
        for e in network::container_networks(&store, &r.id).map_err(minirt::Error::from)? {
            nets.insert(
                e.network_name.clone(),
                json!({
                    "NetworkID": e.network_id, "EndpointID": e.endpoint_id,
                    "Gateway": e.gateway.to_string(), "IPAddress": e.ip.to_string(),
                    "IPPrefixLen": e.prefix_len, "MacAddress": e.mac,
                }),
            );
        }
        let ports = network::container_ports(&store, &r.id).map_err(minirt::Error::from)?;
        let running = lifecycle::is_running(&r);
        out.push(json!({
            "Id": r.id,
            "Created": util::rfc3339(r.created),
            "Path": r.command.first(),
            "Args": r.command.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": r.status, "Running": running, "Pid": if running { r.pid } else { 0 },
                "ExitCode": r.exit_code, "OOMKilled": r.oom_killed,
                "StartedAt": util::rfc3339(r.started_at), "FinishedAt": util::rfc3339(r.finished_at),
            },
            "Image": format!("sha256:{}", r.image_id),
            "Name": format!("/{}", r.name),
            "Config": {
                "Hostname": cfg.hostname, "User": cfg.user, "Tty": cfg.tty, "OpenStdin": cfg.interactive,
                "Env": cfg.env, "Cmd": cfg.args, "Image": cfg.image, "WorkingDir": cfg.workdir,
            },
            "HostConfig": {
                "Memory": cfg.resources.memory.unwrap_or(0),
                "NanoCpus": cfg.resources.nano_cpus.unwrap_or(0),
                "PidsLimit": cfg.resources.pids_limit,
                "NetworkMode": if cfg.network.mode == "bridge" { "bridge".to_string() } else { cfg.network.mode.clone() },
                "AutoRemove": cfg.auto_remove,
                "Privileged": cfg.privileged,
                "ReadonlyRootfs": cfg.read_only,
                "CapAdd": cfg.cap_add,
                "CapDrop": cfg.cap_drop,
                "SecurityOpt": match &cfg.seccomp {
                    minirt::container::config::SeccompMode::Default => vec![],
                    minirt::container::config::SeccompMode::Unconfined => vec!["seccomp=unconfined"],
                    minirt::container::config::SeccompMode::Profile(_) => vec!["seccomp=<profile>"],
                },
                "Binds": cfg.mounts.iter().map(|m| format!("{}:{}{}", m.source, m.destination, if m.readonly { ":ro" } else { "" })).collect::<Vec<_>>(),
            },
            "NetworkSettings": { "Ports": ports, "Networks": nets },
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if let Some(m) = missing.first() {
        return Err(cli_err(1, format!("No such container: {m}")));
    }
    Ok(0)
}

pub fn logs(inst: &Instance, a: LogsArgs) -> CliResult {
    let row = lifecycle::lookup(inst, &a.container)?;
    let path = minirt::container::runtime::log_path(inst, &row.id);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) if !a.follow => return Ok(0),
        Err(e) => {
            return Err(cli_err(
                125,
                format!("reading logs of {}: {e}", a.container),
            ))
        }
    };
    let mut out = std::io::stdout().lock();
    loop {
        let n = std::io::copy(&mut f, &mut out).map_err(|e| cli_err(125, e.to_string()))?;
        let _ = out.flush();
        if !a.follow {
            return Ok(0);
        }
        if n == 0 {
            // Still running? Check after the read, so the last bytes are never lost.
            let r = lifecycle::lookup(inst, &row.id)?;
            if !lifecycle::is_running(&r) && r.status != containers::CREATED {
                std::io::copy(&mut f, &mut out).map_err(|e| cli_err(125, e.to_string()))?;
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn each(keys: &[String], mut f: impl FnMut(&str) -> minirt::Result<()>) -> CliResult {
    let mut code = 0;
    for k in keys {
        match f(k) {
            Ok(()) => println!("{k}"),
            Err(e) => {
                eprintln!("minirt: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn stop(inst: &Instance, a: StopArgs) -> CliResult {
    each(&a.containers, |c| {
        lifecycle::stop(inst, c, Duration::from_secs(a.time))
    })
}

pub fn kill(inst: &Instance, a: KillArgs) -> CliResult {
    let sig = lifecycle::parse_signal(&a.signal).map_err(minirt::Error::from)?;
    each(&a.containers, |c| lifecycle::kill(inst, c, sig))
}

pub fn rm(inst: &Instance, a: RmArgs) -> CliResult {
    each(&a.containers, |c| lifecycle::rm(inst, c, a.force))
}

pub fn system_prune(inst: &Instance) -> CliResult {
    let removed = lifecycle::prune(inst)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
    }
    // Like Docker: networks no container uses go too.
    let mut store = Store::open(&inst.db_path()).map_err(minirt::Error::from)?;
    let nets = network::manage::prune(inst, &mut store).map_err(minirt::Error::from)?;
    if !nets.is_empty() {
        println!("Deleted Networks:");
        for n in &nets {
            println!("{n}");
        }
    }
    Ok(0)
}

//! `minirt run | start | exec | ps | inspect | logs | stop | kill | rm`.

use super::{CliError, CliResult};
use clap::Args;
use minirt::container::create::RunOptions;
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
    #[arg(required = true, num_args = 2..)]
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
    /// Filter: name, id, label, status, network, ancestor, exited (KEY=VALUE).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show the N last created containers (all states).
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Show the latest created container (all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Display the size of each container's writable layer.
    #[arg(short, long)]
    pub size: bool,
    /// Add a NETWORKS column (network=address), minirt's own.
    #[arg(long)]
    pub networks: bool,
    /// Output: table, json, or a Go template ("table {{.Names}}\t{{.Status}}").
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only this type of object: container or network.
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs (or "all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps (not recorded by minirt: refused).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since a time (not recorded by minirt: refused).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a time (not recorded by minirt: refused).
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps(1) (default -ef).
    #[arg(allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before killing.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
    #[arg(short, long, allow_negative_numbers = true)]
    pub time: Option<i64>,
    /// Signal to send (default: the container's stop signal).
    #[arg(short, long)]
    pub signal: Option<String>,
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
    let id = super::registry::create_pulling(inst, &opts, &a.pull)?;
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
        match lifecycle::rm(inst, &id, true) {
            // With --rm the failed start has removed it already.
            Ok(())
            | Err(minirt::Error::Container(minirt::container::ContainerError::NotFound(_))) => {}
            Err(rm) => tracing::warn!("removing {id} after a failed start: {rm}"),
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

pub fn exec(inst: &Instance, a: ExecArgs) -> CliResult {
    use minirt::container::exec::{exec_in, ExecRequest};
    use minirt::container::spec;
    use minirt::runtime::process::ProcessSpec;
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
        minirt::validate::env_entry(e).map_err(|m| cli_err(125, m))?;
    }
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

fn store_err(e: impl Into<minirt::Error>) -> CliError {
    e.into().into()
}

fn template_err(message: String) -> CliError {
    cli_err(125, message)
}

/// Bytes of files under `dir` (the writable layer), not following links.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub fn ps(inst: &Instance, a: PsArgs) -> CliResult {
    use super::format::{docker_time, human_size, PsFacts, PsFilter};
    use super::template::{self, Format};
    let format = template::parse(a.format.as_deref(), true).map_err(template_err)?;
    let filter = PsFilter::parse(&a.filter).map_err(|e| cli_err(e.code, e.message))?;
    let limit = if a.latest { Some(1) } else { a.last };
    let all = a.all || limit.is_some() || filter.wants_stopped();
    let rows = lifecycle::list(inst)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    let now = util::now_nanos();
    let no_labels = std::collections::BTreeMap::new();
    let mut docs = vec![];
    let mut ids = vec![];
    // Docker lists a restarting container with the running ones.
    let shown = |r: &&containers::ContainerRow| {
        all || lifecycle::is_running(r) || lifecycle::state_word(inst, r) == "restarting"
    };
    for r in rows.iter().filter(shown) {
        let eps = network::container_networks(&store, &r.id).map_err(store_err)?;
        let state = lifecycle::state_word(inst, r);
        let facts = PsFacts {
            id: &r.id,
            name: &r.name,
            image: &r.image,
            image_id: &r.image_id,
            state,
            exit_code: r.exit_code,
            networks: eps
                .iter()
                .map(|e| (e.network_name.clone(), e.network_id.clone()))
                .collect(),
            labels: &no_labels,
        };
        if !filter.matches(&facts) {
            continue;
        }
        if limit.is_some_and(|n| docs.len() >= n) {
            break;
        }
        let id = if a.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_string()
        };
        ids.push(id.clone());
        if a.quiet {
            docs.push(serde_json::Value::Null);
            continue;
        }
        let ports = network::container_ports(&store, &r.id).map_err(store_err)?;
        let command = if a.no_trunc {
            format!("\"{}\"", r.command.join(" "))
        } else {
            lifecycle::command_text(&r.command)
        };
        let size = if a.size {
            human_size(dir_size(&inst.container_dir(&r.id).join("upper")))
        } else {
            "0B".to_string()
        };
        let mounts: Vec<String> = lifecycle::config_of(r)
            .mounts
            .iter()
            .map(|m| m.source.clone())
            .collect();
        docs.push(json!({
            "ID": id,
            "Image": r.image,
            "Command": command,
            "CreatedAt": docker_time(&util::rfc3339(r.created)),
            "RunningFor": format!("{} ago", util::human_duration((now - r.created) / 1_000_000_000)),
            "Status": lifecycle::status_line(inst, r, now),
            "State": state,
            "Ports": ports.join(", "),
            "Names": r.name,
            "Labels": "",
            "LocalVolumes": "0",
            "Mounts": mounts.join(","),
            "Size": size,
            "Networks": eps.iter().map(|e| e.network_name.as_str()).collect::<Vec<_>>().join(","),
            "NetworkAddresses": eps.iter().map(|e| format!("{}={}", e.network_name, e.ip)).collect::<Vec<_>>().join(", "),
        }));
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for id in ids {
            let _ = writeln!(out, "{id}");
        }
        return Ok(0);
    }
    let text = match format {
        Format::Json => docs.iter().map(|d| format!("{d}\n")).collect::<String>(),
        Format::Template(t) => t.render_list(&docs, PS_HEADERS).map_err(template_err)?,
        Format::Default => {
            // Docker's columns and order; NETWORKS only when asked for.
            let mut text = String::from("table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}");
            if a.size {
                text.push_str("\\t{{.Size}}");
            }
            if a.networks {
                text.push_str("\\t{{.NetworkAddresses}}");
            }
            match template::parse(Some(&text), true).map_err(template_err)? {
                Format::Template(t) => t.render_list(&docs, PS_HEADERS).map_err(template_err)?,
                _ => String::new(),
            }
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(0)
}

/// Docker's column headers of `ps`.
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Size", "SIZE"),
    ("Networks", "NETWORKS"),
    ("NetworkAddresses", "NETWORKS"),
];

/// JSON as Docker's inspect prints it: an array, 4-space indents.
pub fn print_json_array(docs: &[serde_json::Value]) -> Result<(), CliError> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    docs.serialize(&mut ser)
        .map_err(|e| cli_err(125, e.to_string()))?;
    buf.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&buf);
    Ok(())
}

/// Prints inspect documents as JSON or through `-f`'s template.
pub fn print_docs(docs: &[serde_json::Value], format: Option<&str>) -> Result<(), CliError> {
    use super::template::{self, Format};
    match template::parse(format, false).map_err(template_err)? {
        Format::Template(t) => {
            let mut text = String::new();
            for d in docs {
                text.push_str(&t.render(d).map_err(template_err)?);
                text.push('\n');
            }
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(())
        }
        Format::Json if format.is_some() => {
            let mut text = String::new();
            for d in docs {
                text.push_str(&format!("{d}\n"));
            }
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(())
        }
        _ => print_json_array(docs),
    }
}

pub fn inspect(inst: &Instance, a: InspectArgs) -> CliResult {
    // A bad template is found before anything is looked up.
    super::template::parse(a.format.as_deref(), false).map_err(template_err)?;
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "container" | "network") {
        return Err(cli_err(
            125,
            format!("\"{kind}\" is not a valid value for --type"),
        ));
    }
    lifecycle::reconcile(inst)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    let mut docs = vec![];
    let mut missing = vec![];
    for key in &a.containers {
        if kind != "network" {
            match minirt::container::inspect::inspect(inst, &store, key) {
                Ok(d) => {
                    docs.push(d);
                    continue;
                }
                Err(minirt::Error::Store(minirt::store::StoreError::NotFound(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if kind != "container" {
            if let Ok(d) = network::manage::find(store.conn(), key)
                .and_then(|n| network::manage::inspect_json(store.conn(), &n))
            {
                docs.push(d);
                continue;
            }
        }
        missing.push(key.clone());
    }
    print_docs(&docs, a.format.as_deref())?;
    match missing.first() {
        Some(m) if kind == "network" => Err(cli_err(1, format!("network {m} not found"))),
        Some(m) => Err(cli_err(1, format!("No such container: {m}"))),
        None => Ok(0),
    }
}

pub fn logs(inst: &Instance, a: LogsArgs) -> CliResult {
    use super::format::{parse_tail, tail_lines};
    for (given, flag) in [
        (a.timestamps, "--timestamps"),
        (a.since.is_some(), "--since"),
        (a.until.is_some(), "--until"),
    ] {
        if given {
            return Err(cli_err(
                125,
                format!("logs {flag}: not implemented (minirt does not record log times)"),
            ));
        }
    }
    let tail = parse_tail(&a.tail).map_err(|e| cli_err(125, e))?;
    // Docker: a missing container is the daemon's error, exit 1.
    let row = lifecycle::lookup(inst, &a.container).map_err(|e| match e {
        minirt::Error::Container(minirt::container::ContainerError::NotFound(_)) => {
            cli_err(1, e.to_string())
        }
        e => e.into(),
    })?;
    let paths = [
        minirt::container::runtime::log_path(inst, &row.id),
        minirt::container::runtime::stderr_log_path(inst, &row.id),
    ];
    let mut files: Vec<Option<std::fs::File>> = vec![];
    for p in &paths {
        files.push(std::fs::File::open(p).ok());
    }
    let mut outs: [Box<dyn Write>; 2] = [
        Box::new(std::io::stdout().lock()),
        Box::new(std::io::stderr().lock()),
    ];
    // The first read honours --tail; later ones (with -f) copy what came.
    for (f, out) in files.iter_mut().zip(outs.iter_mut()) {
        let Some(f) = f else { continue };
        let mut buf = vec![];
        std::io::Read::read_to_end(f, &mut buf).map_err(|e| cli_err(125, e.to_string()))?;
        let shown = match tail {
            Some(n) => tail_lines(&buf, n),
            None => &buf[..],
        };
        out.write_all(shown)
            .map_err(|e| cli_err(125, e.to_string()))?;
        let _ = out.flush();
    }
    if !a.follow {
        return Ok(0);
    }
    loop {
        let mut copied = 0;
        for ((f, out), p) in files.iter_mut().zip(outs.iter_mut()).zip(&paths) {
            if f.is_none() {
                *f = std::fs::File::open(p).ok();
            }
            if let Some(f) = f {
                copied += std::io::copy(f, out).map_err(|e| cli_err(125, e.to_string()))?;
                let _ = out.flush();
            }
        }
        if copied == 0 {
            // Still running? Check after the read, so the last bytes are never lost.
            let r = lifecycle::lookup(inst, &row.id)?;
            if !lifecycle::is_running(&r) && r.status != containers::CREATED {
                for (f, out) in files.iter_mut().zip(outs.iter_mut()) {
                    if let Some(f) = f {
                        std::io::copy(f, out).map_err(|e| cli_err(125, e.to_string()))?;
                        let _ = out.flush();
                    }
                }
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

pub fn stop(inst: &Instance, a: StopArgs) -> CliResult {
    let signal = a
        .signal
        .as_deref()
        .map(lifecycle::parse_signal)
        .transpose()
        .map_err(minirt::Error::from)?;
    each(&a.containers, |c| {
        lifecycle::stop_with(inst, c, a.time, signal)
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

/// A lookup miss as Docker's daemon reports it: exit 1.
fn lookup_1(inst: &Instance, key: &str) -> Result<containers::ContainerRow, CliError> {
    lifecycle::lookup(inst, key).map_err(|e| match e {
        minirt::Error::Container(minirt::container::ContainerError::NotFound(_)) => {
            cli_err(1, e.to_string())
        }
        e => e.into(),
    })
}

pub fn port(inst: &Instance, a: PortArgs) -> CliResult {
    lifecycle::reconcile(inst)?;
    let row = lookup_1(inst, &a.container)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    let bindings = minirt::store::networks::port_bindings_of_container(store.conn(), &row.id)
        .map_err(store_err)?;
    let want = match &a.port {
        None => None,
        Some(p) => {
            let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let num: u16 = num
                .parse()
                .map_err(|_| cli_err(125, format!("Error: invalid port {p:?}")))?;
            Some((num, proto.to_ascii_lowercase()))
        }
    };
    let mut lines = vec![];
    for b in &bindings {
        match &want {
            None => lines.push(format!(
                "{}/{} -> {}:{}",
                b.container_port, b.proto, b.host_ip, b.host_port
            )),
            Some((n, proto)) if *n == b.container_port && *proto == b.proto => {
                lines.push(format!("{}:{}", b.host_ip, b.host_port))
            }
            _ => {}
        }
    }
    if let (Some((n, proto)), true) = (&want, lines.is_empty()) {
        return Err(cli_err(
            1,
            format!(
                "Error: No public port '{n}/{proto}' published for {}",
                a.container
            ),
        ));
    }
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(0)
}

/// Blocks until each container has stopped and prints its exit code.
pub fn wait(inst: &Instance, a: WaitArgs) -> CliResult {
    let mut code = 0;
    for key in &a.containers {
        match wait_one(inst, key) {
            Ok(c) => println!("{c}"),
            Err(e) => {
                eprintln!("minirt: {}", e.message);
                code = 1;
            }
        }
    }
    Ok(code)
}

fn wait_one(inst: &Instance, key: &str) -> Result<i32, CliError> {
    let id = lookup_1(inst, key)?.id;
    let mut healed = false;
    loop {
        let row = lookup_1(inst, &id)?;
        if row.status == containers::EXITED {
            return Ok(row.exit_code);
        }
        let monitor_alive = util::process_alive(row.monitor_pid, row.monitor_start);
        if !lifecycle::is_running(&row) && !monitor_alive {
            // Nobody will record this exit: reconciliation does.
            if healed {
                return Ok(row.exit_code);
            }
            lifecycle::reconcile(inst)?;
            healed = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn rename(inst: &Instance, a: RenameArgs) -> CliResult {
    minirt::container::create::validate_name(&a.new_name).map_err(minirt::Error::from)?;
    let row = lookup_1(inst, &a.container)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    containers::rename(store.conn(), &row.id, &a.new_name)
        .map_err(|e| cli_err(1, e.to_string()))?;
    drop(store);
    // Names on user networks follow the change.
    if let Err(e) = network::dns::sync(inst) {
        tracing::warn!("{e}");
    }
    Ok(0)
}

/// The container's processes as the host's ps(1) shows them.
pub fn top(inst: &Instance, a: TopArgs) -> CliResult {
    lifecycle::reconcile(inst)?;
    let row = lookup_1(inst, &a.container)?;
    if !lifecycle::is_running(&row) {
        return Err(cli_err(1, format!("container {} is not running", row.id)));
    }
    let pids: std::collections::BTreeSet<i32> =
        minirt::container::runtime::cgroup_of(inst, &row.id)
            .procs()
            .into_iter()
            .collect();
    let opts = if a.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&opts)
        .output()
        .map_err(|e| cli_err(125, format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(cli_err(
            1,
            format!(
                "ps {}: {}",
                opts.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (header, lines) = text.split_once('\n').unwrap_or((&text, ""));
    let col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| cli_err(1, "Couldn't find PID field in ps output"))?;
    let mut shown = format!("{header}\n");
    for l in lines.lines() {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            shown.push_str(l);
            shown.push('\n');
        }
    }
    let _ = std::io::stdout().lock().write_all(shown.as_bytes());
    Ok(0)
}

pub fn restart(inst: &Instance, a: RestartArgs) -> CliResult {
    each(&a.containers, |c| {
        lifecycle::stop(inst, c, Duration::from_secs(a.time))?;
        lifecycle::start(inst, c, false).map(|_| ())
    })
}

/// `minirt container …`: Docker's management-group spellings of the
/// container commands.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers.
    #[command(alias = "ps", alias = "list")]
    Ls(PsArgs),
    /// Create and start a container from an image.
    Run(RunArgs),
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
    /// List port mappings of a container.
    Port(PortArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(WaitArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Display the running processes of a container.
    Top(TopArgs),
    /// Remove all stopped containers.
    Prune(super::PruneArgs),
}

pub fn dispatch_group(inst: &Instance, c: ContainerCommand) -> CliResult {
    match c {
        ContainerCommand::Ls(a) => ps(inst, a),
        ContainerCommand::Run(a) => run(inst, a),
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
        ContainerCommand::Port(a) => port(inst, a),
        ContainerCommand::Wait(a) => wait(inst, a),
        ContainerCommand::Rename(a) => rename(inst, a),
        ContainerCommand::Top(a) => top(inst, a),
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

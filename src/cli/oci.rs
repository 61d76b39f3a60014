//! The runc-compatible command line (what Podman's conmon, containerd's
//! runc shim and other engines call), and the rule that tells an OCI
//! invocation from a docker-style one. Parses, calls `minirt::runtime`,
//! prints; errors are one line (JSON with `--log-format json`) and exit 1.

use clap::{Args, Parser, Subcommand};
use minirt::runtime::container::{CreateOptions, ExecOptions, Runtime};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where OCI containers' state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/minirt-oci";

/// Program names that always mean the OCI command line.
const OCI_NAMES: &[&str] = &["runc", "minirt-runc", "minirt-oci"];
/// Global flags only runc's command line has.
const OCI_GLOBALS: &[&str] = &[
    "--log",
    "--log-format",
    "--systemd-cgroup",
    "--debug",
    "--rootless",
    "--criu",
];
/// Subcommands docker's command line does not have.
const OCI_ONLY: &[&str] = &["state", "delete", "features", "spec", "list", "resume"];
/// Subcommands both have: OCI when they name a container of the OCI root
/// or carry a flag only runc's form has.
const SHARED: &[&str] = &["create", "start", "kill", "exec", "ps", "pause", "update"];

/// Flags only the runc form of a shared subcommand has (docker's `-p` is
/// `--publish`: only `exec -p` is runc's `--process`).
fn oci_only_flag(sub: &str, flag: &str) -> bool {
    let create = [
        "--bundle",
        "-b",
        "--console-socket",
        "--pid-file",
        "--preserve-fds",
        "--no-pivot",
        "--no-new-keyring",
    ];
    let exec = [
        "--process",
        "-p",
        "--console-socket",
        "--pid-file",
        "--preserve-fds",
    ];
    match sub {
        "create" => create.contains(&flag),
        "exec" => exec.contains(&flag),
        "update" => flag == "--resources" || flag == "-r",
        _ => false,
    }
}

/// The dispatch rule (pure): Some(argv for the OCI parser) when `argv` is an
/// OCI runtime invocation. `exists(root, id)` says whether the OCI state
/// root has a container `id`.
pub fn oci_argv(argv: &[String], exists: impl Fn(&Path, &str) -> bool) -> Option<Vec<String>> {
    let prog = argv.first()?;
    let base = Path::new(prog).file_name()?.to_string_lossy().into_owned();
    if OCI_NAMES.contains(&base.as_str()) {
        return Some(argv.to_vec());
    }
    if argv.get(1).map(String::as_str) == Some("oci") {
        let mut v = vec![prog.clone()];
        v.extend_from_slice(&argv[2..]);
        return Some(v);
    }
    let mut root = PathBuf::from(DEFAULT_ROOT);
    let mut i = 1;
    let mut oci_global = false;
    while let Some(a) = argv.get(i) {
        if !a.starts_with('-') {
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        oci_global |= OCI_GLOBALS.contains(&name);
        let takes_value = matches!(
            name,
            "--root"
                | "--log"
                | "--log-format"
                | "--rootless"
                | "--criu"
                | "--run-root"
                | "--log-level"
        );
        let value = if takes_value && inline.is_none() {
            i += 1;
            argv.get(i).cloned()
        } else {
            inline
        };
        if name == "--root" {
            if let Some(v) = value {
                root = PathBuf::from(v);
            }
        }
        i += 1;
    }
    let sub = argv.get(i)?.as_str();
    let (flags, first) = leading(&argv[i + 1..]);
    let yes = oci_global
        || OCI_ONLY.contains(&sub)
        || (SHARED.contains(&sub)
            && (flags.iter().any(|f| oci_only_flag(sub, f))
                || first.is_some_and(|id| exists(&root, id))));
    yes.then(|| argv.to_vec())
}

/// Flags of either command line's shared subcommands that take a value
/// (the next argument, unless given as `--flag=value`).
const VALUE_FLAGS: &[&str] = &[
    "--bundle",
    "-b",
    "--console-socket",
    "--pid-file",
    "--preserve-fds",
    "--process",
    "-p",
    "--cwd",
    "--env",
    "-e",
    "--env-file",
    "--user",
    "-u",
    "--workdir",
    "-w",
    "--additional-gids",
    "-g",
    "--process-label",
    "--apparmor",
    "--cap",
    "-c",
    "--cgroup",
    "--detach-keys",
    "--signal",
    "-s",
    "--format",
    "-f",
    "--resources",
    "-r",
    "--name",
    "--volume",
    "-v",
    "--net",
    "--network",
    "--mount",
    "--label",
    "-l",
    "--restart",
    "--entrypoint",
    "--memory",
    "-m",
    "--cpus",
    "--ip",
    "--ip6",
    "--dns",
    "--hostname",
    "-h",
    "--add-host",
    "--tmpfs",
    "--ulimit",
    "--shm-size",
    "--pull",
    "--platform",
    "--publish",
    "--stop-signal",
    "--stop-timeout",
    "--health-cmd",
];

/// The flags before a subcommand's first positional argument, and that
/// argument (the container id in both forms). What follows it is the
/// container's command (`exec web mkdir -p /x`) and is never read as a flag.
fn leading(rest: &[String]) -> (Vec<&str>, Option<&str>) {
    let mut flags = vec![];
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            return (flags, it.next().map(String::as_str));
        }
        if a.len() > 1 && a.starts_with('-') {
            let name = a.split('=').next().unwrap_or("");
            flags.push(name);
            if !a.contains('=') && VALUE_FLAGS.contains(&name) {
                it.next();
            }
            continue;
        }
        return (flags, Some(a.as_str()));
    }
    (flags, None)
}

#[derive(Parser, Debug)]
#[command(
    name = "minirt-oci",
    version,
    about = "minirt as an OCI runtime (runc's command line)"
)]
pub struct OciCli {
    /// Directory of the containers' state.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also append errors to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Use systemd for cgroups (refused: minirt drives cgroupfs itself).
    #[arg(long)]
    pub systemd_cgroup: bool,
    #[arg(long)]
    pub debug: bool,
    /// Accepted for compatibility: minirt runs as root only.
    #[arg(long)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: OciCommand,
}

#[derive(Subcommand, Debug)]
pub enum OciCommand {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Let a created container's process run.
    Start { id: String },
    /// Print a container's state (runtime-spec JSON).
    State { id: String },
    /// Send a signal to a container's init (or all its processes).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a stopped container (--force: kill it first).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a container.
    Exec(ExecArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime implements (runtime-spec features JSON).
    Features,
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// Change a running container's resource limits.
    Update {
        /// JSON linux.resources, a file or "-" for stdin.
        #[arg(short, long)]
        resources: Option<String>,
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub no_pivot: bool,
    #[arg(long)]
    pub no_new_keyring: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// A JSON process (the spec's `process`), instead of args.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(long)]
    pub preserve_fds: Option<u32>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs an OCI invocation; returns the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let cli = match OciCli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let log = cli.log.clone();
    let json = cli.log_format == "json";
    // Warnings (a failed poststart hook) on stderr; --debug shows the steps.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(if cli.debug { "debug" } else { "warn" })
        .try_init();
    match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            report(&msg, log.as_deref(), json);
            1
        }
    }
}

/// One line on stderr; with --log also appended there (JSON with
/// --log-format json, which containerd's shim reads back).
fn report(msg: &str, log: Option<&Path>, json: bool) {
    let line = if json {
        serde_json::json!({
            "level": "error",
            "msg": msg,
            "time": minirt::util::rfc3339(minirt::util::now_nanos()),
        })
        .to_string()
    } else {
        format!("minirt: {msg}")
    };
    eprintln!("{line}");
    if let Some(p) = log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// "TERM", "SIGTERM", "15", "sigkill".
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}"))
}

fn print_json(v: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn run(cli: OciCli) -> Result<i32, String> {
    if cli.systemd_cgroup {
        return Err("--systemd-cgroup is not supported: minirt manages cgroupfs itself (use cgroup_manager = \"cgroupfs\")".into());
    }
    let rt = Runtime::new(&cli.root);
    let e = |e: minirt::runtime::container::OciError| e.to_string();
    match cli.command {
        OciCommand::Create(a) => {
            // --no-new-keyring: minirt never makes a session keyring anyway.
            let opts = CreateOptions {
                bundle: a.bundle,
                pid_file: a.pid_file,
                console_socket: a.console_socket,
                preserve_fds: a.preserve_fds,
                no_pivot: a.no_pivot,
            };
            rt.create(&a.id, &opts).map_err(e)?;
        }
        OciCommand::Start { id } => rt.start(&id).map_err(e)?,
        OciCommand::State { id } => print_json(&rt.state(&id).map_err(e)?)?,
        OciCommand::Kill { all, id, signal } => {
            let sig = parse_signal(&signal)?;
            rt.kill(&id, sig, all).map_err(e)?;
        }
        OciCommand::Delete { force, id } => rt.delete(&id, force).map_err(e)?,
        OciCommand::Exec(a) => return exec(&rt, a),
        OciCommand::Pause { id } => rt.pause(&id).map_err(e)?,
        OciCommand::Resume { id } => rt.resume(&id).map_err(e)?,
        OciCommand::Ps {
            format,
            id,
            ps_args,
        } => {
            if !ps_args.is_empty() {
                return Err("not implemented: ps arguments".into());
            }
            let pids = rt.ps(&id).map_err(e)?;
            match format.as_str() {
                "json" => print_json(&pids)?,
                "table" => {
                    println!("PID   CMD");
                    for p in pids {
                        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                        let cmd: Vec<String> = cmd
                            .split(|b| *b == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect();
                        println!("{p:<5} {}", cmd.join(" "));
                    }
                }
                other => return Err(format!("invalid format {other:?}: table or json")),
            }
        }
        OciCommand::List { format, quiet } => {
            let all = rt.list().map_err(e)?;
            match (format.as_str(), quiet) {
                ("json", _) => print_json(&all)?,
                ("table", true) => all.iter().for_each(|s| println!("{}", s.id)),
                ("table", false) => {
                    println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED");
                    for s in &all {
                        println!(
                            "{}\t{}\t{}\t{}\t{}",
                            s.id,
                            s.pid.unwrap_or(0),
                            s.status,
                            s.bundle.display(),
                            s.created
                        );
                    }
                }
                (other, _) => return Err(format!("invalid format {other:?}: table or json")),
            }
        }
        OciCommand::Features => print_json(&minirt::runtime::features::document())?,
        OciCommand::Spec { bundle, rootless } => {
            if rootless {
                return Err("not implemented: rootless specs".into());
            }
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(format!("{} already exists", path.display()));
            }
            let text = serde_json::to_string_pretty(&default_spec()?).map_err(|e| e.to_string())?;
            std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        OciCommand::Update { resources, id } => {
            let src = resources.ok_or("update needs --resources FILE (or - for stdin)")?;
            let text = if src == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| e.to_string())?;
                s
            } else {
                std::fs::read_to_string(&src).map_err(|e| format!("{src}: {e}"))?
            };
            let res: LinuxResources =
                serde_json::from_str(&text).map_err(|e| format!("invalid resources JSON: {e}"))?;
            rt.update(&id, &res).map_err(e)?;
        }
    }
    Ok(0)
}

/// runc's default spec: `sh` on a terminal in ./rootfs, read-only root.
fn default_spec() -> Result<Spec, String> {
    let mut spec = Spec::default();
    spec.set_version(minirt::runtime::state::OCI_VERSION.to_string());
    spec.set_hostname(Some("minirt".to_string()));
    Ok(spec)
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32, String> {
    let mut process: Process = match &a.process {
        Some(p) => {
            let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_slice(&text)
                .map_err(|e| format!("{}: invalid process JSON: {e}", p.display()))?
        }
        None => {
            if a.args.is_empty() {
                return Err("exec needs a command (or --process)".into());
            }
            let mut p = Process::default();
            p.set_args(Some(a.args.clone()));
            p.set_terminal(Some(a.tty));
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(a.env.iter().cloned());
            p.set_env(Some(env));
            if let Some(c) = &a.cwd {
                p.set_cwd(PathBuf::from(c));
            }
            p
        }
    };
    if a.process.is_some() {
        if a.tty {
            process.set_terminal(Some(true));
        }
        if let Some(c) = &a.cwd {
            process.set_cwd(PathBuf::from(c));
        }
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .map_err(|_| format!("--user {u:?}: numeric uid[:gid] expected"))?;
        let gid: u32 = match gid {
            Some(g) => g
                .parse()
                .map_err(|_| format!("--user {u:?}: numeric uid[:gid] expected"))?,
            None => 0,
        };
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket,
        detach: a.detach,
        pid_file: a.pid_file,
        preserve_fds: a.preserve_fds.unwrap_or(0),
    };
    rt.exec(&a.id, opts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn oci(s: &str) -> bool {
        oci_argv(&argv(s), |root, id| {
            root == Path::new(DEFAULT_ROOT) && id == "known"
        })
        .is_some()
    }

    #[test]
    fn conmons_calls_are_oci() {
        assert!(oci("/usr/bin/minirt create --bundle /b --pid-file /p abc"));
        assert!(oci("minirt start known"));
        assert!(oci("minirt kill known 15"));
        assert!(oci("minirt delete --force abc"));
        assert!(oci("minirt exec --pid-file /p --process /x --detach abc"));
        assert!(oci("minirt exec -p /x abc"));
        assert!(oci("minirt update --resources /f abc"));
        assert!(oci("minirt state abc"));
        assert!(oci("minirt features"));
        assert!(oci("minirt --log /l --log-format json create -b /b abc"));
        assert!(oci("minirt --systemd-cgroup list"));
    }

    #[test]
    fn docker_style_calls_stay_docker() {
        assert!(!oci("minirt start web"));
        assert!(!oci("minirt kill web"));
        assert!(!oci("minirt exec -it web sh"));
        assert!(!oci("minirt ps -a"));
        assert!(!oci("minirt run --rm busybox true"));
        assert!(!oci(
            "minirt --root /r --run-root /rr run -d -p 8080:80 busybox"
        ));
        assert!(!oci("minirt run -d -p 80 --name known busybox"));
        assert!(!oci("minirt create -p 80:80 busybox"));
        assert!(!oci("minirt create busybox"));
        assert!(!oci("minirt --root /var/lib/minirt rm web"));
        assert!(!oci("minirt"));
    }

    #[test]
    fn explicit_forms_are_oci() {
        assert!(oci("/usr/local/bin/runc start anything"));
        assert!(oci("minirt-oci ps x"));
        let v = oci_argv(&argv("minirt oci start x"), |_, _| false).unwrap();
        assert_eq!(v, argv("minirt start x"));
    }

    #[test]
    fn the_root_flag_chooses_where_ids_are_looked_up() {
        let f = |root: &Path, id: &str| root == Path::new("/r") && id == "c";
        assert!(oci_argv(&argv("minirt --root /r start c"), f).is_some());
        assert!(oci_argv(&argv("minirt --root=/r kill c 9"), f).is_some());
        assert!(oci_argv(&argv("minirt start c"), f).is_none());
        // The container's command is not read as flags or ids.
        let none = |_: &Path, _: &str| false;
        assert!(oci_argv(&argv("minirt exec web mkdir -p /x"), none).is_none());
        assert!(oci_argv(&argv("minirt exec -e A=1 web ls --pid-file"), none).is_none());
        assert!(oci_argv(&argv("minirt exec -p proc.json c"), none).is_some());
        assert!(oci_argv(&argv("minirt exec --cwd /x --preserve-fds 1 c ls"), none).is_some());
        let only_c = |_: &Path, id: &str| id == "c";
        assert!(oci_argv(&argv("minirt exec web cat c"), only_c).is_none());
        assert!(oci_argv(&argv("minirt exec -u 0 c true"), only_c).is_some());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("KILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("sigusr1"), Ok(Signal::SIGUSR1));
        assert!(parse_signal("NOPE").unwrap_err().contains("unknown signal"));
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn the_oci_parser_reads_runc_command_lines() {
        let c = OciCli::try_parse_from(argv(
            "minirt --root /r --log /l --log-format json exec --process /p --detach --pid-file /f id",
        ))
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        match c.command {
            OciCommand::Exec(a) => {
                assert!(a.detach && a.process.is_some() && a.id == "id");
            }
            other => panic!("{other:?}"),
        }
        let c = OciCli::try_parse_from(argv("minirt exec -t id sh -c ls")).unwrap();
        match c.command {
            OciCommand::Exec(a) => assert_eq!(a.args, argv("sh -c ls")),
            other => panic!("{other:?}"),
        }
    }
}

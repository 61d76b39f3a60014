//! Turning what the user typed into a ContainerConfig (pure), and inserting
//! the container with its network allocation in one store transaction.

use super::config::{BindMount, ContainerConfig};
use super::ContainerError;
use crate::cgroups::{self, Resources};
use crate::network::{self, NetworkRequest};
use crate::rootfs::{image, Image};
use crate::store::{containers, Store};
use crate::{util, validate, Instance, Result};
use std::path::Path;

/// `minirt run` options, as parsed by the CLI (strings not yet validated).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--label` KEY[=VALUE] words.
    pub labels: Vec<String>,
    /// `--tmpfs PATH[:OPTIONS]` words.
    pub tmpfs: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]` words.
    pub ulimits: Vec<String>,
    /// `--shm-size` as typed (e.g. 128m).
    pub shm_size: Option<String>,
    pub image: String,
    pub cmd: Vec<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    /// Contents of each --env-file, already read.
    pub env_files: Vec<String>,
    pub volumes: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// `--restart` as typed (None = "no").
    pub restart: Option<String>,
    /// `--health-*` and `--no-healthcheck`.
    pub health: super::health::HealthFlags,
    /// `--stop-signal`, `--stop-timeout`.
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub network: NetworkRequest,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub read_only: bool,
    /// `--entrypoint`: replaces the image's Entrypoint and drops its Cmd
    /// (Docker's rule); "" clears the entrypoint.
    pub entrypoint: Option<String>,
}

pub(crate) const MAX_NAME_LEN: usize = 128;

fn invalid(m: impl Into<String>) -> ContainerError {
    ContainerError::Invalid(m.into())
}

/// Docker's characters, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, plus a length limit.
/// (Docker wants two characters; one is allowed here, `--name w` is handy.)
pub fn validate_name(name: &str) -> std::result::Result<(), ContainerError> {
    match validate::object_name(name, MAX_NAME_LEN) {
        Ok(()) => Ok(()),
        Err(validate::NameProblem::TooLong) => Err(invalid(format!(
            "Invalid container name: longer than {MAX_NAME_LEN} characters"
        ))),
        Err(_) => Err(invalid(format!(
            "Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
            validate::escape_controls(name)
        ))),
    }
}

/// A Docker-like generated name ("brave_turing"), from random bits.
pub(crate) fn generate_name(seed: &str) -> String {
    const ADJ: &[&str] = &[
        "admiring", "brave", "calm", "clever", "eager", "focused", "gentle", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "tender", "vivid",
        "wizardly", "zealous",
    ];
    const NAMES: &[&str] = &[
        "babbage", "curie", "darwin", "euclid", "fermat", "galois", "hopper", "hypatia", "kepler",
        "lovelace", "maxwell", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds",
        "turing", "wozniak", "yonath",
    ];
    let b = hex::decode(&seed[..8.min(seed.len())]).unwrap_or_default();
    let a = b.first().copied().unwrap_or(0) as usize % ADJ.len();
    let n = b.get(1).copied().unwrap_or(0) as usize % NAMES.len();
    format!("{}_{}", ADJ[a], NAMES[n])
}

/// Parses one `-v HOSTDIR:CTRDIR[:ro|rw]`.
pub(crate) fn parse_volume(spec: &str) -> std::result::Result<BindMount, ContainerError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(invalid(format!("invalid volume specification: '{spec}'"))),
    };
    if !src.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': named volumes are not supported, the host path must be absolute"
        )));
    }
    if !dst.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{}': mount path must be absolute",
            validate::escape_controls(spec)
        )));
    }
    validate::mount_destination(dst).map_err(invalid)?;
    let readonly = match mode {
        "ro" => true,
        "rw" => false,
        m => return Err(invalid(format!("invalid mode: {m}"))),
    };
    Ok(BindMount {
        source: src.into(),
        destination: dst.into(),
        readonly,
    })
}

/// Lines of an --env-file: K=V, K (copied from the caller), comments.
pub(crate) fn parse_env_file(content: &str) -> Vec<String> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Docker's `-e` rule for `run` and `exec` alike: each entry (checked)
/// is set over `env`, replacing an existing entry of the same key in place;
/// a bare `K` takes the caller's value, or is dropped when the caller has
/// none (the value `env` had stays).
pub fn apply_env(
    env: &mut Vec<String>,
    entries: &[String],
) -> std::result::Result<(), ContainerError> {
    for e in entries {
        validate::env_entry(e).map_err(invalid)?;
    }
    for e in entries {
        set_env(env, e);
    }
    Ok(())
}

/// Sets `kv` in `env`, replacing an existing entry of the same key. A bare
/// `K` takes the caller's value (or is dropped when the caller has none).
fn set_env(env: &mut Vec<String>, kv: &str) {
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => match std::env::var(kv) {
            Ok(v) => (kv.to_string(), v),
            Err(_) => return,
        },
    };
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str()))
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// The config a container runs with: image defaults overridden by options.
pub(crate) fn assemble(
    img: &Image,
    opts: &RunOptions,
    id: &str,
) -> std::result::Result<ContainerConfig, ContainerError> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (vec![], None),
        Some(e) => (vec![e.clone()], None),
        None => (
            img.config.entrypoint.clone().unwrap_or_default(),
            img.config.cmd.clone(),
        ),
    };
    let cmd = if opts.cmd.is_empty() {
        image_cmd.unwrap_or_default()
    } else {
        opts.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(invalid("No command specified"));
    }
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    // It becomes a line of the container's /etc/hosts: a name, nothing else.
    validate::hostname(&hostname).map_err(invalid)?;
    for e in &opts.env {
        validate::env_entry(e).map_err(invalid)?;
    }
    for f in &opts.env_files {
        for e in parse_env_file(f) {
            validate::env_entry(&e).map_err(invalid)?;
        }
    }
    for a in &opts.network.aliases {
        validate::domain_name(a).map_err(invalid)?;
    }
    let mut env = vec![];
    if !img.config.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(crate::util::default_path_env());
    }
    set_env(&mut env, &format!("HOSTNAME={hostname}"));
    if opts.tty {
        set_env(&mut env, "TERM=xterm");
    }
    for e in &img.config.env {
        set_env(&mut env, e);
    }
    for f in &opts.env_files {
        for e in parse_env_file(f) {
            set_env(&mut env, &e);
        }
    }
    apply_env(&mut env, &opts.env)?;
    let mut mounts = vec![];
    for v in &opts.volumes {
        let m = parse_volume(v)?;
        if !Path::new(&m.source).exists() {
            return Err(invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                m.source
            )));
        }
        mounts.push(m);
    }
    let workdir = opts
        .workdir
        .clone()
        .or_else(|| Some(img.config.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !workdir.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{workdir}' is invalid, it needs to be an absolute path"
        )));
    }
    let parse = |e: cgroups::CgroupError| invalid(e.to_string());
    let resources = Resources {
        memory: opts
            .memory
            .as_deref()
            .map(cgroups::parse_memory)
            .transpose()
            .map_err(parse)?,
        nano_cpus: opts
            .cpus
            .as_deref()
            .map(cgroups::parse_cpus)
            .transpose()
            .map_err(parse)?,
        pids_limit: match opts.pids_limit {
            Some(n) if n > 0 => Some(n),
            _ => None,
        },
        all_devices: opts.privileged,
    };
    for c in opts.cap_add.iter().chain(&opts.cap_drop) {
        crate::runtime::caps::parse_capability(c).map_err(|e| invalid(e.to_string()))?;
    }
    let security =
        super::config::parse_security_opts(&opts.security_opt, |p| std::fs::read_to_string(p))
            .map_err(invalid)?;
    let restart = super::restart::RestartPolicy::parse(opts.restart.as_deref().unwrap_or("no"))
        .map_err(invalid)?;
    if opts.auto_remove && !restart.is_none() {
        return Err(invalid("Conflicting options: --restart and --rm"));
    }
    let healthcheck =
        super::health::resolve(img.config.healthcheck.as_ref(), &opts.health).map_err(invalid)?;
    let stop_signal = opts
        .stop_signal
        .clone()
        .or_else(|| img.config.stop_signal.clone());
    if let Some(sig) = &stop_signal {
        super::lifecycle::parse_signal(sig)?;
    }
    let tmpfs = opts
        .tmpfs
        .iter()
        .map(|t| super::tmpfs::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let ulimits = opts
        .ulimits
        .iter()
        .map(|u| super::ulimit::parse(u))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let shm_size = match opts.shm_size.as_deref() {
        None => None,
        Some(s) => match cgroups::parse_size(s) {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(invalid(format!("invalid size: '{s}'"))),
        },
    };
    let mut network = opts.network.clone();
    if network.mode.is_empty() {
        network.mode = crate::network::NetworkMode::Default.as_str().into();
    }
    Ok(ContainerConfig {
        image: opts.image.clone(),
        image_id: img.id.clone(),
        args,
        entrypoint: img.config.entrypoint.clone(),
        env,
        hostname,
        workdir,
        user: opts.user.clone().unwrap_or_else(|| img.config.user.clone()),
        tty: opts.tty,
        interactive: opts.interactive,
        auto_remove: opts.auto_remove,
        restart,
        healthcheck,
        stop_signal,
        stop_timeout: opts.stop_timeout,
        mounts,
        resources,
        network,
        cap_add: opts.cap_add.clone(),
        cap_drop: opts.cap_drop.clone(),
        privileged: opts.privileged,
        seccomp: security.seccomp,
        read_only: opts.read_only,
        tmpfs,
        ulimits,
        shm_size,
        labels: opts
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect(),
    })
}

/// Resolves the image, validates everything, and inserts the container and
/// its network allocation in one transaction. Returns the new id.
pub fn create(inst: &Instance, opts: &RunOptions) -> Result<String> {
    // Cheap (a read of two dirs): a crashed network or image command must
    // not keep this run from reusing its name, subnet or layer.
    super::lifecycle::heal_intents(inst);
    if let Some(n) = &opts.name {
        validate_name(n)?;
    }
    let span = tracing::info_span!("image").entered();
    let mut store = Store::open(&inst.db_path())?;
    let img = image::resolve(inst, &mut store, &opts.image)?;
    drop(span);
    let id = util::new_id();
    let cfg = assemble(&img, opts, &id)?;
    let config = serde_json::to_string(&cfg).map_err(crate::store::StoreError::from)?;
    let span = tracing::info_span!("net-prepare").entered();
    network::prepare(inst, &mut store, &cfg.network)?;
    drop(span);
    let _span = tracing::info_span!("create-tx").entered();
    let name = opts.name.clone();
    // Until a monitor takes over, this process owns the new container:
    // reconciliation leaves a row alone while its owner lives.
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    store.write(|tx| -> Result<()> {
        let name = match &name {
            Some(n) => n.clone(),
            None => unique_generated_name(tx, &id)?,
        };
        containers::insert(
            tx,
            &containers::ContainerRow {
                id: id.clone(),
                name,
                image: opts.image.clone(),
                image_id: img.id.clone(),
                command: cfg.args.clone(),
                config,
                status: containers::Status::Created,
                pid: 0,
                pid_start: 0,
                monitor_pid: me,
                monitor_start: me_start,
                exit_code: 0,
                oom_killed: false,
                created: util::now_nanos(),
                started_at: 0,
                finished_at: 0,
                paused: false,
            },
        )?;
        network::allocate(tx, inst, &id, &cfg.network)?;
        super::events::container(tx, &id, "create", &[]);
        Ok(())
    })?;
    util::fault_point("after-create");
    std::fs::create_dir_all(inst.container_dir(&id))?;
    Ok(id)
}

fn unique_generated_name(tx: &rusqlite::Connection, id: &str) -> Result<String> {
    let base = generate_name(id);
    let mut name = base.clone();
    let mut n = 1;
    while tx
        .query_row("SELECT 1 FROM containers WHERE name = ?1", [&name], |_| {
            Ok(())
        })
        .map(|_| true)
        .or_else(|e| {
            if e == rusqlite::Error::QueryReturnedNoRows {
                Ok(false)
            } else {
                Err(e)
            }
        })
        .map_err(crate::store::StoreError::from)?
    {
        n += 1;
        name = format!("{base}{n}");
    }
    Ok(name)
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "create_proptests.rs"]
mod proptests;

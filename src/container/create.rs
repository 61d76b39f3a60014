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
mod tests {
    use super::*;
    use crate::rootfs::ImageConfig;

    fn img() -> Image {
        Image {
            id: "img".into(),
            layers: vec![],
            config: ImageConfig {
                env: vec!["PATH=/bin".into(), "FOO=image".into()],
                cmd: Some(vec!["sh".into()]),
                working_dir: "/home".into(),
                ..Default::default()
            },
        }
    }
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn stop_signal_health_check_and_restart_come_from_image_and_flags() {
        use crate::container::health::{HealthConfig, HealthFlags};
        use crate::container::restart::RestartPolicy;
        let mut image = img();
        image.config.stop_signal = Some("SIGQUIT".into());
        image.config.healthcheck = Some(HealthConfig {
            test: vec!["CMD".into(), "/check".into()],
            retries: 4,
            ..Default::default()
        });
        let opts = RunOptions {
            image: "busybox".into(),
            ..Default::default()
        };
        let c = assemble(&image, &opts, ID).unwrap();
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.healthcheck.as_ref().unwrap().retries, 4);
        assert_eq!(c.restart, RestartPolicy::No);
        let opts = RunOptions {
            image: "busybox".into(),
            stop_signal: Some("USR1".into()),
            stop_timeout: Some(2),
            restart: Some("on-failure:2".into()),
            health: HealthFlags {
                none: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let c = assemble(&image, &opts, ID).unwrap();
        assert_eq!(c.stop_signal.as_deref(), Some("USR1"));
        assert_eq!(c.stop_timeout, Some(2));
        assert_eq!(c.restart, RestartPolicy::OnFailure(2));
        assert_eq!(c.healthcheck, None);
        let conflict = RunOptions {
            image: "busybox".into(),
            auto_remove: true,
            restart: Some("always".into()),
            ..Default::default()
        };
        let e = assemble(&image, &conflict, ID).unwrap_err().to_string();
        assert_eq!(e, "Conflicting options: --restart and --rm");
        let bad = RunOptions {
            image: "busybox".into(),
            stop_signal: Some("SIGNOPE".into()),
            ..Default::default()
        };
        assert!(assemble(&image, &bad, ID).is_err());
    }

    #[test]
    fn image_defaults_and_overrides() {
        let opts = RunOptions {
            image: "busybox".into(),
            cmd: vec!["echo".into(), "hi".into()],
            env: vec!["FOO=cli".into(), "BAR=1".into()],
            tty: true,
            ..Default::default()
        };
        let c = assemble(&img(), &opts, ID).unwrap();
        assert_eq!(c.args, vec!["echo", "hi"]);
        assert_eq!(c.hostname, "0123456789ab");
        assert_eq!(c.workdir, "/home");
        assert_eq!(c.network.mode, "bridge");
        assert_eq!(
            c.env,
            vec![
                "HOSTNAME=0123456789ab",
                "TERM=xterm",
                "PATH=/bin",
                "FOO=cli",
                "BAR=1"
            ]
        );
    }

    #[test]
    fn entrypoint_prefixes_cmd_and_no_command_is_an_error() {
        let mut i = img();
        i.config.entrypoint = Some(vec!["/bin/busybox".into()]);
        let c = assemble(&i, &RunOptions::default(), ID).unwrap();
        assert_eq!(c.args, vec!["/bin/busybox", "sh"]);
        i.config.entrypoint = None;
        i.config.cmd = None;
        let e = assemble(&i, &RunOptions::default(), ID).unwrap_err();
        assert_eq!(e.to_string(), "No command specified");
    }

    #[test]
    fn the_entrypoint_flag_replaces_entrypoint_and_image_cmd() {
        let mut i = img();
        i.config.entrypoint = Some(vec!["/bin/busybox".into()]);
        i.config.cmd = Some(vec!["sh".into()]);
        let o = RunOptions {
            entrypoint: Some("/bin/env".into()),
            ..Default::default()
        };
        assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["/bin/env"]);
        let o = RunOptions {
            entrypoint: Some("/bin/echo".into()),
            cmd: vec!["hi".into()],
            ..Default::default()
        };
        assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["/bin/echo", "hi"]);
        let o = RunOptions {
            entrypoint: Some(String::new()),
            cmd: vec!["ls".into()],
            ..Default::default()
        };
        assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["ls"]);
    }

    #[test]
    fn bad_values_are_refused() {
        let o = RunOptions {
            volumes: vec!["/definitely/missing:/x".into()],
            ..Default::default()
        };
        assert!(assemble(&img(), &o, ID)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let o = RunOptions {
            memory: Some("lots".into()),
            ..Default::default()
        };
        assert!(assemble(&img(), &o, ID).is_err());
        let o = RunOptions {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert!(assemble(&img(), &o, ID).is_err());
    }

    #[test]
    fn hostile_inputs_are_refused_with_one_line() {
        let refused = |o: RunOptions| assemble(&img(), &o, ID).unwrap_err().to_string();
        for env in ["=x", "="] {
            let e = refused(RunOptions {
                env: vec![env.into()],
                ..Default::default()
            });
            assert!(e.contains("the name is empty"), "{e}");
        }
        let e = refused(RunOptions {
            env_files: vec!["# fine\nA=1\n=oops\n".into()],
            ..Default::default()
        });
        assert!(e.contains("\"=oops\""), "{e}");
        for dst in ["/", "/proc", "/proc/x", "/sys/fs", "/a/../proc"] {
            let e = refused(RunOptions {
                volumes: vec![format!("/tmp:{dst}")],
                ..Default::default()
            });
            assert!(e.contains("cannot be mounted over"), "{dst}: {e}");
        }
        let e = refused(RunOptions {
            hostname: Some("x\n6.6.6.6 evil".into()),
            ..Default::default()
        });
        assert!(
            e.starts_with("invalid hostname \"x\\n6.6.6.6 evil\""),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let mut o = RunOptions::default();
        o.network.aliases = vec!["a b".into()];
        assert!(refused(o).contains("invalid domain name"));
        let e = validate_name("w\u{1b}[2J").unwrap_err().to_string();
        assert!(
            e.contains("w\\u{1b}[2J") && !e.chars().any(char::is_control),
            "{e}"
        );
    }

    #[test]
    fn volumes_parse() {
        let m = parse_volume("/a:/b:ro").unwrap();
        assert_eq!(
            (m.source.as_str(), m.destination.as_str(), m.readonly),
            ("/a", "/b", true)
        );
        assert!(!parse_volume("/a:/b").unwrap().readonly);
        assert!(parse_volume("vol:/b").is_err());
        assert!(parse_volume("/a:b").is_err());
        assert!(parse_volume("/a:/b:zz").is_err());
        assert!(parse_volume("/a").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("web").is_ok());
        assert!(validate_name("w").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        let g = generate_name(ID);
        assert!(validate_name(&g).is_ok(), "{g}");
    }

    #[test]
    fn a_bare_env_name_takes_the_callers_value_or_leaves_the_entry_alone() {
        let mut env = vec!["A=1".to_string(), "MINIRT_TEST_UNSET_VAR=image".into()];
        let caller_path = std::env::var("PATH").unwrap();
        apply_env(
            &mut env,
            &["A=2".into(), "MINIRT_TEST_UNSET_VAR".into(), "PATH".into()],
        )
        .unwrap();
        assert_eq!(
            env,
            vec![
                "A=2".to_string(),
                "MINIRT_TEST_UNSET_VAR=image".into(),
                format!("PATH={caller_path}"),
            ]
        );
        assert!(apply_env(&mut env, &["=x".into()]).is_err());
    }

    #[test]
    fn env_file_lines() {
        assert_eq!(parse_env_file("# c\nA=1\n\n B=2 \n"), vec!["A=1", "B=2"]);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn names_are_valid_exactly_by_the_rule(s in "\\PC{0,140}|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,140}") {
            let by_rule = s.len() <= MAX_NAME_LEN
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            let got = validate_name(&s);
            prop_assert_eq!(got.is_ok(), by_rule, "{:?}: {:?}", s, got);
            if let Err(e) = got {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn volumes_round_trip(
            src in "/[a-zA-Z0-9_./-]{0,30}", dst in "/[a-zA-Z0-9_./-]{0,30}", mode in 0usize..3
        ) {
            let (suffix, ro) = [("", false), (":rw", false), (":ro", true)][mode];
            let parsed = parse_volume(&format!("{src}:{dst}{suffix}"));
            if validate::mount_destination(&dst).is_err() {
                // `/`, `/proc`, `/sys` and below (however spelled) are refused.
                prop_assert!(parsed.is_err());
            } else {
                let b = parsed.unwrap();
                prop_assert_eq!(b, BindMount { source: src, destination: dst, readonly: ro });
            }
        }

        #[test]
        fn volume_parsing_never_panics_and_keeps_paths_absolute(s in "\\PC{0,40}|[/a-z:]{0,20}") {
            if let Ok(b) = parse_volume(&s) {
                prop_assert!(b.source.starts_with('/') && b.destination.starts_with('/'));
            }
        }
    }
}

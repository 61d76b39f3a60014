//! `minirt pull | push | login | logout | tag`, and `run --pull`: parse, call the
//! registry library, print Docker's lines.

use super::{CliError, CliResult};
use clap::Args;
use minirt::container::create::{self, RunOptions};
use minirt::rootfs::image::{self, ImageError};
use minirt::rootfs::registry::auth::{self, Credentials};
use minirt::rootfs::registry::client::Client;
use minirt::rootfs::registry::config::RegistriesConf;
use minirt::rootfs::registry::manifest::Platform;
use minirt::rootfs::registry::pull::{self, Event, PullOptions};
use minirt::rootfs::registry::push::{self, PushOptions};
use minirt::rootfs::registry::Reference;
use minirt::store::Store;
use minirt::Instance;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// OS/ARCH[/VARIANT] to pick from a multi-platform image (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the pulled reference.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull every tag of the repository.
    #[arg(short, long)]
    pub all_tags: bool,
    /// Use plain HTTP for this registry (false), as if it were marked insecure.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// NAME[:TAG|@DIGEST]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Print only the pushed reference.
    #[arg(short, long)]
    pub quiet: bool,
    /// Use plain HTTP for this registry (false), as if it were marked insecure.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// NAME[:TAG]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible in the process list: prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Use plain HTTP for this registry (false).
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Registry host[:port] (default docker.io).
    pub registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default docker.io).
    pub registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Existing image (name, id or name@digest).
    pub source: String,
    /// New NAME[:TAG].
    pub target: String,
}

fn err(message: impl Into<String>) -> CliError {
    CliError {
        code: 125,
        message: message.into(),
    }
}

fn image_err(e: ImageError) -> CliError {
    minirt::Error::from(e).into()
}

fn open_store(inst: &Instance) -> Result<Store, CliError> {
    Store::open(&inst.db_path()).map_err(|e| minirt::Error::from(e).into())
}

/// How a pull talks to the user: bars need a terminal, quiet needs nothing.
fn progress(quiet: bool) -> Option<pull::Progress> {
    progress_with_intro(quiet, None)
}

/// Progress that opens with `intro` once the pull has found its image, so a
/// pull that fails at once stays one error line.
fn progress_with_intro(quiet: bool, intro: Option<String>) -> Option<pull::Progress> {
    if quiet {
        return None;
    }
    let tty = std::io::stderr().is_terminal();
    let intro = std::sync::Mutex::new(intro);
    Some(Arc::new(move |e: Event| {
        if let Some(line) = intro.lock().ok().and_then(|mut i| i.take()) {
            eprintln!("{line}");
        }
        let short = |d: &str| {
            let h = d.strip_prefix("sha256:").unwrap_or(d);
            h[..h.len().min(12)].to_string()
        };
        let line = match e {
            Event::Resolved { reference, host } => format!("Pulling {reference} from {host}"),
            Event::LayerExists { digest } => format!("{}: Already exists", short(&digest)),
            Event::LayerStart { digest, size } => {
                format!("{}: Pulling fs layer ({} bytes)", short(&digest), size)
            }
            Event::LayerBytes { digest, read } if tty => {
                eprint!("\r{}: Downloading {read} bytes", short(&digest));
                return;
            }
            Event::LayerBytes { .. } => return,
            Event::LayerDone { digest } => format!("{}: Pull complete", short(&digest)),
        };
        if tty {
            eprintln!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }))
}

fn do_pull(inst: &Instance, reference: &str, opts: &PullOptions, quiet: bool) -> CliResult {
    let mut store = open_store(inst)?;
    let p = pull::pull(inst, &mut store, reference, opts).map_err(image_err)?;
    if quiet {
        println!("{}", p.reference);
        return Ok(0);
    }
    println!("Digest: {}", p.digest);
    let status = if p.up_to_date {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    println!("Status: {status} {}", p.reference);
    println!("{}", p.reference);
    Ok(0)
}

pub fn pull_cmd(inst: &Instance, a: PullArgs) -> CliResult {
    let platform = a
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()
        .map_err(err)?;
    let opts = PullOptions {
        platform,
        insecure: !a.tls_verify,
        progress: progress(a.quiet),
    };
    if !a.all_tags {
        return do_pull(inst, &a.reference, &opts, a.quiet);
    }
    let last = a.reference.rsplit('/').next().unwrap_or_default();
    if last.contains([':', '@']) {
        return Err(err("tag can't be used with --all-tags/-a"));
    }
    let r = Reference::parse(&a.reference).map_err(err)?;
    let tags = pull::list_tags(&a.reference, opts.insecure).map_err(image_err)?;
    if tags.is_empty() {
        return Err(err(format!("{}: the repository has no tags", a.reference)));
    }
    let repo = r.familiar_repository();
    for t in &tags {
        if !a.quiet {
            eprintln!("{t}: Pulling from {repo}");
        }
        do_pull(inst, &format!("{repo}:{t}"), &opts, a.quiet)?;
    }
    Ok(0)
}

/// Docker's push lines: progress on stderr, the digest line on stdout.
pub fn push_cmd(inst: &Instance, a: PushArgs) -> CliResult {
    let short = |d: &str| {
        let h = d.strip_prefix("sha256:").unwrap_or(d);
        h[..h.len().min(12)].to_string()
    };
    let progress: Option<push::Progress> = if a.quiet {
        None
    } else {
        Some(Arc::new(move |e: push::Event| {
            let line = match e {
                push::Event::Start { repository } => {
                    format!("The push refers to repository [{repository}]")
                }
                push::Event::Exists { digest } => {
                    format!("{}: Layer already exists", short(&digest))
                }
                push::Event::Mounted { digest, from } => {
                    format!("{}: Mounted from {from}", short(&digest))
                }
                push::Event::Pushed { digest, size } => {
                    format!("{}: Pushed ({size} bytes)", short(&digest))
                }
            };
            eprintln!("{line}");
        }))
    };
    let opts = PushOptions {
        insecure: !a.tls_verify,
        progress,
    };
    let mut store = open_store(inst)?;
    let p = push::push(inst, &mut store, &a.reference, &opts).map_err(image_err)?;
    if a.quiet {
        println!("{}", a.reference);
    } else {
        println!("{}: digest: {} size: {}", p.tag, p.digest, p.size);
    }
    Ok(0)
}

/// `run --pull`: "missing" pulls only when the image is not there, which is
/// learnt from the failed lookup, so a present image costs nothing extra.
pub fn create_pulling(
    inst: &Instance,
    opts: &RunOptions,
    policy: &str,
) -> Result<String, CliError> {
    // Built only when a pull happens: a present image costs nothing here.
    let pull_now = |name: &str, intro: Option<String>| -> Result<(), CliError> {
        let pull_opts = PullOptions {
            progress: progress_with_intro(false, intro.clone()),
            ..Default::default()
        };
        let mut store = open_store(inst)?;
        let p = pull::pull(inst, &mut store, name, &pull_opts).map_err(|e| {
            let mut e = image_err(e);
            if let Some(i) = intro {
                e.message = format!("{i}, and pulling it failed: {}", e.message);
            }
            e
        })?;
        eprintln!("Digest: {}", p.digest);
        eprintln!("Status: Downloaded newer image for {}", p.reference);
        Ok(())
    };
    match policy {
        "never" => Ok(create::create(inst, opts)?),
        "always" => {
            pull_now(&opts.image, None)?;
            Ok(create::create(inst, opts)?)
        }
        "missing" => match create::create(inst, opts) {
            Err(minirt::Error::Image(ImageError::NotFound(n))) => {
                pull_now(
                    &opts.image,
                    Some(format!("Unable to find image '{n}' locally")),
                )?;
                Ok(create::create(inst, opts)?)
            }
            other => Ok(other?),
        },
        p => Err(err(format!(
            "invalid --pull {p:?} (use missing, always or never)"
        ))),
    }
}

/// "https://host:port/v1/" or "host:port" -> "host:port"; none -> docker.io.
fn registry_host(arg: Option<&str>) -> Result<String, CliError> {
    let raw = arg.unwrap_or("docker.io");
    let h = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let h = h.split('/').next().unwrap_or(h);
    // The same host rules as a reference's registry part.
    let probe = format!("{h}/x");
    match Reference::parse(&probe) {
        Ok(r) if !h.is_empty() => Ok(r.registry),
        _ => Err(err(format!("invalid registry {raw:?}"))),
    }
}

fn prompt(text: &str) -> Result<String, CliError> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .map_err(|e| err(format!("cannot read standard input: {e}")))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a password from the terminal without echoing it.
fn prompt_password() -> Result<String, CliError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(|e| err(format!("cannot read a password: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| err(format!("cannot read a password: {e}")))?;
    let r = prompt("Password: ");
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    r
}

pub fn login(_inst: &Instance, a: LoginArgs) -> CliResult {
    let host = registry_host(a.registry.as_deref())?;
    if a.password.is_some() && a.password_stdin {
        return Err(err(
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    let tty = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if tty && !a.password_stdin => prompt("Username: ")?,
        None => return Err(err("a username is needed (-u USER)")),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| err(format!("cannot read standard input: {e}")))?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else if let Some(p) = a.password {
        p
    } else if tty {
        prompt_password()?
    } else {
        return Err(err("a password is needed (-p or --password-stdin)"));
    };
    if username.is_empty() || password.is_empty() {
        return Err(err("username and password must not be empty"));
    }
    let conf = RegistriesConf::load().map_err(err)?;
    let insecure = !a.tls_verify || conf.host_insecure(&host);
    let creds = Credentials { username, password };
    let api = minirt::rootfs::registry::config::api_host(&host).to_string();
    let client =
        Client::new(&api, insecure, Some(creds.clone())).map_err(|e| err(e.to_string()))?;
    client
        .check_login()
        .map_err(|e| err(format!("login to {host} failed: {e}")))?;
    let path = auth::docker_config_path();
    let mut doc = auth::read_docker_config(&path).map_err(err)?;
    auth::set_credentials(&mut doc, &host, Some(&creds));
    auth::write_docker_config(&path, &doc).map_err(err)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(_inst: &Instance, a: LogoutArgs) -> CliResult {
    let host = registry_host(a.registry.as_deref())?;
    let path = auth::docker_config_path();
    let mut doc = auth::read_docker_config(&path).map_err(err)?;
    if !auth::set_credentials(&mut doc, &host, None) {
        println!("Not logged in to {host}");
        return Ok(0);
    }
    auth::write_docker_config(&path, &doc).map_err(err)?;
    println!("Removing login credentials for {host}");
    Ok(0)
}

pub fn tag(inst: &Instance, a: TagArgs) -> CliResult {
    let mut store = open_store(inst)?;
    image::tag(inst, &mut store, &a.source, &a.target).map_err(image_err)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_from_login_arguments() {
        assert_eq!(registry_host(None).ok().unwrap(), "docker.io");
        assert_eq!(
            registry_host(Some("https://index.docker.io/v1/"))
                .ok()
                .unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_host(Some("127.0.0.1:5000")).ok().unwrap(),
            "127.0.0.1:5000"
        );
        assert!(registry_host(Some("bad host")).is_err());
        assert!(registry_host(Some("")).is_err());
    }
}

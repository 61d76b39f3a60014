//! `minirt version | info | completion`: Docker-shaped documents about minirt
//! and the host (printed as text, or through `--format`), and shell
//! completions generated from the clap definitions.

use super::container::print_docs;
use super::{CliError, CliResult};
use clap::Args;
use minirt::store::{containers, Store};
use minirt::Instance;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format the output using a Go template ({{.Client.Version}}) or json.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format the output using a Go template ({{.ContainersRunning}}) or json.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Go's name for the machine (Docker prints amd64, arm64).
pub fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i386" => "386",
        "armv7l" => "arm",
        m => m,
    }
}

fn uname() -> (String, String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
            u.nodename().to_string_lossy().into_owned(),
        ),
        Err(_) => Default::default(),
    }
}

fn version_doc() -> Value {
    let (kernel, machine, _) = uname();
    let v = env!("CARGO_PKG_VERSION");
    let arch = go_arch(&machine);
    json!({
        "Client": {"Platform": {"Name": "minirt"}, "Version": v, "Os": "linux", "Arch": arch},
        // Daemonless: the "server" is the same binary.
        "Server": {
            "Platform": {"Name": "minirt (daemonless)"},
            "Version": v, "Os": "linux", "Arch": arch, "KernelVersion": kernel,
        },
    })
}

/// The two-level text Docker prints when no format is given.
fn print_text(text: &str) -> CliResult {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(0)
}

pub fn version(a: VersionArgs) -> CliResult {
    let doc = version_doc();
    if a.format.is_some() {
        print_docs(&[doc], a.format.as_deref())?;
        return Ok(0);
    }
    let c = &doc["Client"];
    let s = &doc["Server"];
    print_text(&format!(
        "Client: minirt\n Version:     {}\n OS/Arch:     linux/{}\n\nServer: minirt (daemonless)\n Version:     {}\n OS/Arch:     linux/{}\n Kernel:      {}\n",
        str_of(&c["Version"]),
        str_of(&c["Arch"]),
        str_of(&s["Version"]),
        str_of(&s["Arch"]),
        str_of(&s["KernelVersion"]),
    ))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn info_doc(inst: &Instance) -> Result<Value, CliError> {
    minirt::container::lifecycle::reconcile(inst)?;
    let store = Store::open(&inst.db_path()).map_err(minirt::Error::from)?;
    let rows = containers::list(store.conn()).map_err(minirt::Error::from)?;
    let running = rows
        .iter()
        .filter(|r| minirt::container::lifecycle::is_running(r))
        .count();
    let images = minirt::rootfs::image::list(&store)
        .map_err(minirt::Error::from)?
        .len();
    let (kernel, machine, host) = uname();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(json!({
        "ID": inst.cgroup_parent(),
        "Containers": rows.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": rows.len() - running,
        "Images": images,
        "Driver": "overlay",
        "DockerRootDir": inst.root.to_string_lossy(),
        "KernelVersion": kernel,
        "OperatingSystem": os_name(),
        "OSType": "linux",
        "Architecture": machine,
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "Name": host,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "LoggingDriver": "minirt-file",
    }))
}

pub fn info(inst: &Instance, a: InfoArgs) -> CliResult {
    let d = info_doc(inst)?;
    if a.format.is_some() {
        print_docs(&[d], a.format.as_deref())?;
        return Ok(0);
    }
    let g = |k: &str| str_of(&d[k]);
    let mem_gib = d["MemTotal"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    print_text(&format!(
        "Client: minirt\n Version:    {}\n\nServer:\n Containers: {}\n  Running: {}\n  Paused: 0\n  Stopped: {}\n Images: {}\n Server Version: {}\n Storage Driver: overlay\n Logging Driver: {}\n Cgroup Driver: cgroupfs\n Cgroup Version: {}\n Kernel Version: {}\n Operating System: {}\n OSType: linux\n Architecture: {}\n CPUs: {}\n Total Memory: {mem_gib:.2}GiB\n Name: {}\n ID: {}\n Docker Root Dir: {}\n",
        g("ServerVersion"),
        g("Containers"),
        g("ContainersRunning"),
        g("ContainersStopped"),
        g("Images"),
        g("ServerVersion"),
        g("LoggingDriver"),
        g("CgroupVersion"),
        g("KernelVersion"),
        g("OperatingSystem"),
        g("Architecture"),
        g("NCPU"),
        g("Name"),
        g("ID"),
        g("DockerRootDir"),
    ))
}

pub fn completion(a: CompletionArgs) -> CliResult {
    use clap::CommandFactory;
    super::lazy::eager();
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "minirt", &mut std::io::stdout());
    Ok(0)
}

/// Writes one man page per command (minirt.1, minirt-run.1, ...) into `dir`.
pub fn man_pages(dir: &std::path::Path) -> CliResult {
    use clap::CommandFactory;
    let io = |e: std::io::Error| CliError {
        code: 125,
        message: format!("writing man pages to {}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    super::lazy::eager();
    let cmd = super::Cli::command();
    fn walk(
        cmd: &clap::Command,
        prefix: &str,
        dir: &std::path::Path,
        io: &dyn Fn(std::io::Error) -> CliError,
    ) -> Result<(), CliError> {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let mut buf = vec![];
        clap_mangen::Man::new(cmd.clone())
            .title(name.clone())
            .render(&mut buf)
            .map_err(io)?;
        std::fs::write(dir.join(format!("{name}.1")), buf).map_err(io)?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &name, dir, io)?;
        }
        Ok(())
    }
    walk(&cmd, "", dir, &io)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_use_gos_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }

    #[test]
    fn man_pages_cover_the_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(dir.path()).map_err(|e| e.message).unwrap();
        for page in [
            "minirt.1",
            "minirt-run.1",
            "minirt-network-create.1",
            "minirt-ps.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page}: {text}");
        }
        assert!(!dir.path().join("minirt-__dns.1").exists());
    }
}

//! `minirt volume create | ls | inspect | rm | prune`, and the `-v NAME:/path`
//! handling `run` and `create` share.

use super::container::{print_docs, template_err};
use super::{CliError, CliResult};
use clap::{Args, Subcommand};
use minirt::container::volume::{self, VolumeError, VolumeSpec};
use minirt::Instance;
use std::io::Write;

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on volumes.
    Inspect(InspectArgs),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused ones with -a).
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Volume driver (only "local").
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Metadata KEY=VALUE.
    #[arg(long)]
    pub label: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output: table, json, or a Go template.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove even when a container uses it.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// All unused volumes, not just anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt (minirt never prompts).
    #[arg(short, long)]
    pub force: bool,
}

fn verr(e: VolumeError) -> CliError {
    CliError {
        code: e.code,
        message: e.message,
    }
}

pub fn dispatch(inst: &Instance, c: VolumeCommand) -> CliResult {
    match c {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                return Err(CliError {
                    code: 125,
                    message: format!("volume driver {}: not implemented (only local)", a.driver),
                });
            }
            let mut labels = serde_json::Map::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                labels.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            let (row, _) = volume::create(inst, a.name.as_deref(), &labels, false).map_err(verr)?;
            println!("{}", row.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            use super::template::{self, Format};
            let format = template::parse(a.format.as_deref(), true).map_err(template_err)?;
            let rows = volume::list(inst).map_err(verr)?;
            let mut out = std::io::stdout().lock();
            if a.quiet {
                for r in &rows {
                    let _ = writeln!(out, "{}", r.name);
                }
                return Ok(0);
            }
            let docs: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let d = volume::inspect_json(inst, r);
                    serde_json::json!({
                        "Driver": d["Driver"],
                        "Labels": d["Labels"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                        "Links": "N/A",
                        "Mountpoint": d["Mountpoint"],
                        "Name": d["Name"],
                        "Scope": "local",
                        "Size": "N/A",
                    })
                })
                .collect();
            const HEADERS: &[(&str, &str)] = &[
                ("Driver", "DRIVER"),
                ("Name", "VOLUME NAME"),
                ("Mountpoint", "MOUNTPOINT"),
                ("Labels", "LABELS"),
                ("Scope", "SCOPE"),
                ("Size", "SIZE"),
                ("Links", "LINKS"),
            ];
            let text = match format {
                Format::Json => docs.iter().map(|d| format!("{d}\n")).collect::<String>(),
                Format::Template(t) => t.render_list(&docs, HEADERS).map_err(template_err)?,
                Format::Default => {
                    match template::parse(Some("table {{.Driver}}\\t{{.Name}}"), true)
                        .map_err(template_err)?
                    {
                        Format::Template(t) => {
                            t.render_list(&docs, HEADERS).map_err(template_err)?
                        }
                        _ => String::new(),
                    }
                }
            };
            let _ = out.write_all(text.as_bytes());
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            super::template::parse(a.format.as_deref(), false).map_err(template_err)?;
            let mut docs = vec![];
            let mut missing = None;
            for n in &a.volumes {
                match volume::get(inst, n) {
                    Ok(r) => docs.push(volume::inspect_json(inst, &r)),
                    Err(e) => missing = Some(e),
                }
            }
            print_docs(&docs, a.format.as_deref())?;
            match missing {
                Some(e) => Err(verr(e)),
                None => Ok(0),
            }
        }
        VolumeCommand::Rm(a) => {
            let mut code = 0;
            for n in &a.volumes {
                match volume::remove(inst, n, a.force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("minirt: {}", minirt::validate::escape_controls(&e.message));
                        code = e.code;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune(a) => {
            minirt::container::lifecycle::reconcile(inst)?;
            let gone = volume::prune(inst, a.all).map_err(verr)?;
            if !gone.is_empty() {
                println!("Deleted Volumes:");
                for n in &gone {
                    println!("{n}");
                }
            }
            println!("Total reclaimed space: 0B");
            Ok(0)
        }
    }
}

/// Volumes a `run`/`create` made for its `-v` values: (container path,
/// volume name, made anonymously).
pub struct NewVolumes(Vec<(String, String, bool)>);

/// Rewrites `-v NAME:/path` and `-v /path` into binds of the volumes' data
/// dirs, making the volumes that do not exist yet.
pub fn prepare(inst: &Instance, specs: &mut [String]) -> Result<NewVolumes, CliError> {
    let mut made = NewVolumes(vec![]);
    for spec in specs.iter_mut() {
        let c = volume::classify(spec).map_err(|m| CliError {
            code: 125,
            message: format!("invalid volume specification: {m}"),
        });
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                made.undo(inst);
                return Err(e);
            }
        };
        let (name, dest, mode, anonymous) = match c {
            VolumeSpec::Bind(_) => continue,
            VolumeSpec::Named { name, dest, mode } => (Some(name), dest, mode, false),
            VolumeSpec::Anonymous { dest } => (None, dest, None, true),
        };
        let (row, new) =
            match volume::create(inst, name.as_deref(), &serde_json::Map::new(), anonymous) {
                Ok(v) => v,
                Err(e) => {
                    made.undo(inst);
                    return Err(verr(e));
                }
            };
        let data = volume::data_dir(inst, &row.name);
        *spec = match mode {
            Some(m) => format!("{}:{dest}:{m}", data.display()),
            None => format!("{}:{dest}", data.display()),
        };
        if new {
            made.0.push((dest, row.name, anonymous));
        }
    }
    Ok(made)
}

impl NewVolumes {
    /// After the container exists: fill each new volume from the image.
    pub fn copy_up(&self, inst: &Instance, id: &str) -> Result<(), CliError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let row = minirt::container::lifecycle::lookup(inst, id)?;
        for (dest, name, _) in &self.0 {
            volume::copy_up(inst, &row, dest, name).map_err(verr)?;
        }
        Ok(())
    }

    /// The container was not made: the volumes made for it go.
    pub fn undo(&self, inst: &Instance) {
        for (_, name, _) in &self.0 {
            let _ = volume::remove(inst, name, true);
        }
    }
}

/// `rm -v`: the anonymous volumes container `key` uses (read before it goes).
pub fn anonymous_of(inst: &Instance, key: &str) -> Vec<String> {
    let Ok(row) = minirt::container::lifecycle::lookup(inst, key) else {
        return vec![];
    };
    volume::used_by(inst, &row)
        .into_iter()
        .filter(|n| volume::get(inst, n).is_ok_and(|v| v.anonymous))
        .collect()
}

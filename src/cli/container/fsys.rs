//! `minirt diff` and `export`: a container's filesystem as changes or as
//! one tar stream.

use super::{cli_err, lookup_1};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::{copy, diff, lifecycle};
use minirt::Instance;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

pub fn diff_cmd(inst: &Instance, a: DiffArgs) -> CliResult {
    lifecycle::reconcile(inst)?;
    let row = lookup_1(inst, &a.container)?;
    let mut text = String::new();
    for (k, p) in diff::diff(inst, &row)? {
        text.push_str(&format!("{k} {p}\n"));
    }
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(0)
}

pub fn export(inst: &Instance, a: ExportArgs) -> CliResult {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(cli_err(
            125,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    lifecycle::reconcile(inst)?;
    let row = lookup_1(inst, &a.container)?;
    let running = lifecycle::is_running(&row);
    let fs = copy::open_container(inst, &row, running).map_err(|e| cli_err(125, e.0))?;
    match &a.output {
        Some(p) => {
            // Written aside and renamed: a failed export leaves no partial file.
            let tmp = p.with_extension("minirt-partial");
            let f = std::fs::File::create(&tmp)
                .map_err(|e| cli_err(125, format!("{}: {e}", p.display())))?;
            let res = copy::export(&fs.root, std::io::BufWriter::new(f));
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(cli_err(125, e.0));
            }
            std::fs::rename(&tmp, p).map_err(|e| cli_err(125, format!("{}: {e}", p.display())))?;
        }
        None => copy::export(&fs.root, std::io::stdout().lock()).map_err(|e| cli_err(125, e.0))?,
    }
    Ok(0)
}

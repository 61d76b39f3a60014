//! `minirt inspect`, and the JSON/template printing other inspect commands share.

use super::{cli_err, store_err, template_err};
use crate::cli::{CliError, CliResult};
use clap::Args;
use minirt::container::lifecycle;
use minirt::network;
use minirt::store::Store;
use minirt::Instance;
use std::io::Write;

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
    use crate::cli::template::{self, Format};
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
    crate::cli::template::parse(a.format.as_deref(), false).map_err(template_err)?;
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

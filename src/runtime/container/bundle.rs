//! Reading a bundle: its config.json checked against what this runtime
//! can honour before anything is made.

use super::{err, Result};
use crate::runtime::{resources, spec as rspec};
use oci_spec::runtime::Spec;
use std::path::Path;

/// Reads and checks a bundle: config.json of a supported version, a rootfs
/// that exists (made absolute), and nothing this runtime cannot honour.
pub fn load_bundle(bundle: &Path) -> Result<Spec> {
    let bundle = std::fs::canonicalize(bundle)
        .map_err(|e| err(format!("bundle {}: {e}", bundle.display())))?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let raw: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| err(format!("{} is not valid JSON: {e}", path.display())))?;
    let version = raw.get("ociVersion").and_then(|v| v.as_str()).unwrap_or("");
    rspec::check_version(version).map_err(err)?;
    let mut spec: Spec = serde_json::from_value(raw).map_err(|e| {
        err(format!(
            "{} is not a valid runtime spec: {e}",
            path.display()
        ))
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| err("config.json has no root"))?
        .clone();
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(err(format!(
            "rootfs {} does not exist or is not a directory",
            rootfs.display()
        )));
    }
    let mut root = root;
    root.set_path(rootfs);
    spec.set_root(Some(root));
    rspec::check_unsupported(&spec).map_err(err)?;
    let plan = rspec::ns_plan(&spec).map_err(err)?;
    rspec::check_sysctls(&spec, &plan).map_err(err)?;
    rspec::check_hostname(&spec, &plan).map_err(err)?;
    let ps = rspec::process_spec(&spec).map_err(err)?;
    if ps.args.is_empty() {
        return Err(err("config.json: process.args must not be empty"));
    }
    if let Some(p) = &ps.seccomp {
        crate::runtime::seccomp::compile(p).map_err(|e| err(format!("seccomp: {e}")))?;
    }
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().clone()) {
        resources::plan(&r, false).map_err(err)?;
    }
    rspec::with_default_devices(&mut spec).map_err(err)?;
    Ok(spec)
}

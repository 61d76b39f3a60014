//! `minirt port` and `top`: what a running container publishes and runs.

use super::{cli_err, lookup_1, store_err};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::lifecycle;
use minirt::store::Store;
use minirt::Instance;
use std::io::Write;

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PORT[/PROTO]
    pub port: Option<String>,
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

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps(1) (default -ef).
    #[arg(allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
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

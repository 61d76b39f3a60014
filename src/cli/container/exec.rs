//! `minirt exec`: a command in a running container.

use super::cli_err;
use crate::cli::CliResult;
use clap::Args;
use minirt::container::{events, lifecycle};
use minirt::Instance;

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container, then command and arguments.
    #[arg(required = true, num_args = 2..)]
    pub container_and_cmd: Vec<String>,
}

pub fn exec(inst: &Instance, a: ExecArgs) -> CliResult {
    use minirt::container::exec::{exec_in, ExecRequest};
    use minirt::container::spec;
    use minirt::runtime::process::ProcessSpec;
    let mut it = a.container_and_cmd.into_iter();
    let key = it.next().unwrap_or_default();
    let args: Vec<String> = it.collect();
    // A running container needs no healing to take one more process: the
    // full reconciliation (intents, firewall, every live row) is left to the
    // other commands, and runs here only when the container does not look
    // running (its row may be stale).
    let row = match lifecycle::lookup(inst, &key) {
        Ok(row) if lifecycle::is_running(&row) => row,
        _ => {
            lifecycle::reconcile(inst)?;
            lifecycle::lookup(inst, &key)?
        }
    };
    if !lifecycle::is_running(&row) {
        return Err(cli_err(125, format!("Container {} is not running", row.id)));
    }
    if minirt::container::pause::is_paused(inst, &row.id) {
        return Err(cli_err(
            1,
            format!(
                "Container {} is paused, unpause the container before exec",
                row.id
            ),
        ));
    }
    let cfg = lifecycle::config_of(&row);
    let mut env = cfg.env.clone();
    minirt::container::create::apply_env(&mut env, &a.env).map_err(minirt::Error::from)?;
    // The container's own capabilities and seccomp filter, as its init got them.
    let caps = spec::capabilities(&cfg).map_err(|e| cli_err(125, e.to_string()))?;
    let seccomp = spec::seccomp_profile(&cfg, &caps);
    let process = ProcessSpec {
        args,
        env,
        cwd: a.workdir.unwrap_or(cfg.workdir),
        user: a.user.unwrap_or(cfg.user),
        capabilities: Some(caps),
        no_new_privs: true,
        seccomp,
        ..Default::default()
    };
    let mut req = ExecRequest::new(row.pid, process);
    req.join_cgroup(&minirt::container::runtime::cgroup_of(inst, &row.id));
    req.tty = a.tty;
    req.interactive = a.interactive;
    req.detach = a.detach;
    // Docker's exec events: the command line in the action, an exec id.
    let exec_id = minirt::util::new_id();
    let action = |what: &str| format!("{what}: {}", req.process.args.join(" "));
    let id_attr = [("execID", exec_id.as_str())];
    let (created, started) = (action("exec_create"), action("exec_start"));
    events::container_all_now(inst, &row.id, &[(&created, &id_attr), (&started, &id_attr)]);
    let res = exec_in(&req);
    if let (Ok(code), false) = (&res, a.detach) {
        let code = code.to_string();
        let attrs = [("execID", exec_id.as_str()), ("exitCode", code.as_str())];
        events::container_now(inst, &row.id, "exec_die", &attrs);
    }
    Ok(res.map_err(minirt::Error::from)?)
}

//! `minirt attach`: parses, then `container::attach` does the work.

use super::cli_err;
use crate::cli::CliResult;
use clap::Args;
use minirt::container::attach::{self, AttachOptions, Ended};
use minirt::Instance;

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long)]
    pub detach_keys: Option<String>,
    pub container: String,
}

pub fn attach(inst: &Instance, a: AttachArgs) -> CliResult {
    let keys = a
        .detach_keys
        .as_deref()
        .unwrap_or(attach::DEFAULT_DETACH_KEYS);
    let detach_keys = attach::parse_detach_keys(keys).map_err(|e| cli_err(125, e))?;
    let opts = AttachOptions {
        stdin: !a.no_stdin,
        sig_proxy: a.sig_proxy,
        detach_keys,
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    // Docker: a missing or stopped container is the daemon's error, exit 1.
    let ended =
        attach::attach(inst, &a.container, opts, &mut out, &mut err).map_err(|e| match e {
            minirt::Error::Container(
                minirt::container::ContainerError::NotFound(_)
                | minirt::container::ContainerError::Conflict(_),
            ) => cli_err(1, e.to_string()),
            e => e.into(),
        })?;
    Ok(match ended {
        Ended::Exited(code) => code,
        Ended::Detached => 0,
    })
}

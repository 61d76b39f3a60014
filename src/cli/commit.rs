//! `minirt commit`: a new image from a container's changes.

use super::{CliError, CliResult};
use clap::Args;
use minirt::container::commit::{self, CommitOptions};
use minirt::container::ContainerError;
use minirt::Instance;

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instructions to the created image (CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, WORKDIR, USER, VOLUME, STOPSIGNAL, ONBUILD).
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause the container during commit.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG] of the new image.
    pub reference: Option<String>,
}

pub fn commit(inst: &Instance, a: CommitArgs) -> CliResult {
    let opts = CommitOptions {
        author: a.author,
        message: a.message,
        changes: a.change,
        pause: a.pause,
        reference: a.reference,
    };
    match commit::commit(inst, &a.container, &opts) {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        // Docker's daemon answers an unknown container with exit 1.
        Err(minirt::Error::Container(ContainerError::NotFound(c))) => Err(CliError {
            code: 1,
            message: format!("No such container: {c}"),
        }),
        Err(e) => Err(e.into()),
    }
}

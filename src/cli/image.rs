//! `minirt load | import | images | rmi`.

use super::{not_implemented, CliResult};
use clap::Args;
use minirt::Instance;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to read (`docker save` or OCI image layout, optionally gzipped).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Print only the loaded image names.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Flat root filesystem tarball.
    pub file: PathBuf,
    /// NAME[:TAG] for the new image.
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Accepted for compatibility; an image in use is still refused.
    #[arg(short, long)]
    pub force: bool,
}

pub fn load(_inst: &Instance, _a: LoadArgs) -> CliResult {
    not_implemented("load")
}
pub fn import(_inst: &Instance, _a: ImportArgs) -> CliResult {
    not_implemented("import")
}
pub fn images(_inst: &Instance, _a: ImagesArgs) -> CliResult {
    not_implemented("images")
}
pub fn rmi(_inst: &Instance, _a: RmiArgs) -> CliResult {
    not_implemented("rmi")
}

//! `minirt cp`: Docker's argument rules around `container::copy`.

use super::{cli_err, lookup_1};
use crate::cli::{CliError, CliResult};
use clap::Args;
use minirt::container::copy::{self, Kind, Owners};
use minirt::container::lifecycle;
use minirt::rootfs::inroot::Root;
use minirt::Instance;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode: keep the source's uid/gid.
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow a symlink in SRC_PATH.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output (minirt prints none).
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or a local path, `-` for a tar stream on stdin.
    pub src: String,
    /// CONTAINER:DEST_PATH or a local path, `-` for a tar stream on stdout.
    pub dest: String,
}

/// One side of a copy: a container's path or a local one.
#[derive(Debug, PartialEq, Eq)]
pub enum Side {
    Container(String, String),
    Local(String),
}

/// Docker's reading of a `cp` argument: an absolute path, a path whose part
/// before the first `:` starts with `.`, or one without `:` is local;
/// otherwise `CONTAINER:PATH`.
pub fn side(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Local(arg.into());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') && !c.is_empty() => Side::Container(c.into(), p.into()),
        _ => Side::Local(arg.into()),
    }
}

/// A container path as Docker takes it: relative to `/`.
fn in_container(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// A local path made absolute against the working directory, keeping a
/// trailing `/` or `/.` (they mean something to the copy rules).
fn local_abs(p: &str) -> Result<String, CliError> {
    let abs = std::path::absolute(p).map_err(|e| cli_err(125, format!("{p}: {e}")))?;
    let mut s = abs.to_string_lossy().into_owned();
    if p.ends_with("/.") && !s.ends_with("/.") {
        s.push_str("/.");
    } else if p.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

fn copy_err(e: copy::CopyError) -> CliError {
    cli_err(125, e.0)
}

fn top_for(src: &str) -> String {
    if src.ends_with("/.") {
        return ".".into();
    }
    minirt::rootfs::inroot::clean(Path::new(src))
        .last()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

/// Streams `src` in `from` as an archive into the directory `into` of `to`,
/// through a pipe (no file is held in memory whole).
fn pipe_copy(
    from: &Root,
    src: &Path,
    follow: bool,
    top: &str,
    to: &Root,
    owners: Owners,
) -> Result<(), CliError> {
    let (reader, writer) = std::io::pipe().map_err(|e| cli_err(125, format!("pipe: {e}")))?;
    std::thread::scope(|s| {
        let w = s.spawn(move || copy::archive(from, src, follow, top, writer));
        let extracted = copy::extract(to, reader, owners);
        let archived = w
            .join()
            .unwrap_or_else(|_| Err(copy::CopyError("archiving panicked".into())));
        // The writer's error explains a short read on this side.
        archived.map_err(copy_err)?;
        extracted.map_err(copy_err)
    })
}

pub fn cp(inst: &Instance, a: CpArgs) -> CliResult {
    let (ctr, path, local, to_container) = match (side(&a.src), side(&a.dest)) {
        (Side::Container(c, p), Side::Local(l)) => (c, p, l, false),
        (Side::Local(l), Side::Container(c, p)) => (c, p, l, true),
        (Side::Container(..), Side::Container(..)) => {
            return Err(cli_err(125, "copying between containers is not supported"))
        }
        (Side::Local(_), Side::Local(_)) => {
            return Err(cli_err(125, "must specify at least one container source"))
        }
    };
    if path.is_empty() {
        return Err(cli_err(125, "path cannot be empty"));
    }
    lifecycle::reconcile(inst)?;
    let row = lookup_1(inst, &ctr)?;
    let running = lifecycle::is_running(&row);
    let cpath = in_container(&path);
    let fs = copy::open_container(inst, &row, running).map_err(copy_err)?;
    let host = Root::open(Path::new("/")).map_err(|e| cli_err(125, e.to_string()))?;
    if !to_container {
        let src = Path::new(&cpath);
        let Some(kind) = copy::kind_in(&fs.root, src, a.follow_link).map_err(copy_err)? else {
            return Err(cli_err(
                1,
                format!("Could not find the file {cpath} in container {ctr}"),
            ));
        };
        if local == "-" {
            let top = top_for(&cpath);
            let out = std::io::stdout().lock();
            copy::archive(&fs.root, src, a.follow_link, &top, out).map_err(copy_err)?;
            return Ok(0);
        }
        let dest = local_abs(&local)?;
        let dest_kind = match std::fs::metadata(&dest) {
            Ok(m) if m.is_dir() => Some(Kind::Dir),
            Ok(_) => Some(Kind::File),
            Err(_) => None,
        };
        let plan = copy::plan(&cpath, kind, &dest, dest_kind).map_err(copy_err)?;
        let into = copy::dir_root(&host, &plan.into).map_err(copy_err)?;
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        pipe_copy(
            &fs.root,
            src,
            a.follow_link,
            &plan.top,
            &into,
            Owners::Set(me.0, me.1),
        )?;
        return Ok(0);
    }
    let owners = if a.archive {
        Owners::Keep
    } else {
        Owners::Set(0, 0)
    };
    if local == "-" {
        let into = copy::dir_root(&fs.root, Path::new(&cpath)).map_err(copy_err)?;
        copy::extract(&into, std::io::stdin().lock(), owners).map_err(copy_err)?;
        return Ok(0);
    }
    let src = local_abs(&local)?;
    let src_path = PathBuf::from(&src);
    let Some(kind) = copy::kind_in(&host, &src_path, a.follow_link).map_err(copy_err)? else {
        return Err(cli_err(
            1,
            format!("lstat {src}: no such file or directory"),
        ));
    };
    let dest_kind = copy::kind_in(&fs.root, Path::new(&cpath), true).map_err(copy_err)?;
    let plan = copy::plan(&src, kind, &cpath, dest_kind).map_err(copy_err)?;
    let into = copy::dir_root(&fs.root, &plan.into).map_err(copy_err)?;
    pipe_copy(&host, &src_path, a.follow_link, &plan.top, &into, owners)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_dockers() {
        assert_eq!(
            side("web:/etc/hostname"),
            Side::Container("web".into(), "/etc/hostname".into())
        );
        assert_eq!(side("/tmp/a:b"), Side::Local("/tmp/a:b".into()));
        assert_eq!(side("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(side("file"), Side::Local("file".into()));
        assert_eq!(side("-"), Side::Local("-".into()));
        assert_eq!(side("web:tmp"), Side::Container("web".into(), "tmp".into()));
    }

    #[test]
    fn the_stream_top_is_the_last_name_or_the_contents() {
        assert_eq!(top_for("/etc/hostname"), "hostname");
        assert_eq!(top_for("/etc/"), "etc");
        assert_eq!(top_for("/etc/."), ".");
        assert_eq!(top_for("/"), ".");
    }
}

//! `minirt load | import | images | rmi | image inspect | history`.

use super::output::table;
use super::{CliError, CliResult};
use clap::Args;
use minirt::rootfs::image::{self, ImageSummary};
use minirt::store::Store;
use minirt::{util, Instance};
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
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (default) or oci-archive.
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Images to save (names or ids).
    #[arg(required = true)]
    pub images: Vec<String>,
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
    /// Output format: table, json, or a Go template (`table` prefix for columns).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show the manifest digests images were pulled by.
    #[arg(long)]
    pub digests: bool,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Accepted for compatibility; an image in use is still refused.
    #[arg(short, long)]
    pub force: bool,
}

fn open_store(inst: &Instance) -> Result<Store, CliError> {
    Store::open(&inst.db_path()).map_err(|e| minirt::Error::from(e).into())
}

fn image_err(e: image::ImageError) -> CliError {
    minirt::Error::from(e).into()
}

pub fn load(inst: &Instance, a: LoadArgs) -> CliResult {
    minirt::container::lifecycle::heal_intents(inst);
    let mut store = open_store(inst)?;
    let names = image::load_archive(inst, &mut store, &a.input).map_err(image_err)?;
    for n in names {
        match (a.quiet, n.starts_with("sha256:")) {
            (true, _) => println!("{n}"),
            (false, true) => println!("Loaded image ID: {n}"),
            (false, false) => println!("Loaded image: {n}"),
        }
    }
    Ok(0)
}

/// `save`: to `-o FILE` (written beside it and renamed into place, so a
/// failed save leaves no partial file) or to a standard output that is not
/// a terminal.
pub fn save(inst: &Instance, a: SaveArgs) -> CliResult {
    use std::io::IsTerminal;
    let format = image::SaveFormat::parse(&a.format).map_err(image_err)?;
    let mut store = open_store(inst)?;
    let Some(path) = a.output else {
        if std::io::stdout().is_terminal() {
            return Err(CliError {
                code: 125,
                message: "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                    .into(),
            });
        }
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        image::save(inst, &mut store, &a.images, format, out).map_err(image_err)?;
        return Ok(0);
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let file = std::fs::File::create(&tmp).map_err(|e| CliError {
        code: 125,
        message: format!("cannot create {}: {e}", path.display()),
    })?;
    let r = image::save(
        inst,
        &mut store,
        &a.images,
        format,
        std::io::BufWriter::new(file),
    )
    .map_err(image_err)
    .and_then(|()| {
        std::fs::rename(&tmp, &path).map_err(|e| CliError {
            code: 125,
            message: format!("cannot write {}: {e}", path.display()),
        })
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|()| 0)
}

pub fn import(inst: &Instance, a: ImportArgs) -> CliResult {
    minirt::container::lifecycle::heal_intents(inst);
    let mut store = open_store(inst)?;
    let id = image::import_rootfs(inst, &mut store, &a.file, &a.reference).map_err(image_err)?;
    println!("{id}");
    Ok(0)
}

pub fn images(inst: &Instance, a: ImagesArgs) -> CliResult {
    minirt::container::lifecycle::heal_intents(inst);
    let store = open_store(inst)?;
    let list = image::list(&store).map_err(image_err)?;
    let now = util::now_nanos();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for s in &list {
            if seen.insert(&s.id) {
                println!("{}", short_id(&s.id));
            }
        }
        return Ok(0);
    }
    use super::template::{self, Format};
    let format = template::parse(Some(&a.format), true).map_err(|e| CliError {
        code: 125,
        message: e,
    })?;
    match format {
        Format::Default => {
            let mut rows: Vec<Vec<String>> = list.iter().map(|s| table_row(s, now)).collect();
            let mut head = vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
            if a.digests {
                head.insert(2, "DIGEST");
                for (r, s) in rows.iter_mut().zip(&list) {
                    r.insert(2, s.digest.clone());
                }
            }
            print!("{}", table(&head, &rows));
        }
        Format::Json => {
            for s in &list {
                println!("{}", json_row(s, now));
            }
        }
        Format::Template(t) => {
            let docs: Vec<serde_json::Value> = list.iter().map(|s| json_row(s, now)).collect();
            let headers = [
                ("ID", "IMAGE ID"),
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG"),
                ("Digest", "DIGEST"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("Size", "SIZE"),
            ];
            let out = t.render_list(&docs, &headers).map_err(|e| CliError {
                code: 125,
                message: e,
            })?;
            print!("{out}");
        }
    }
    Ok(0)
}

pub fn rmi(inst: &Instance, a: RmiArgs) -> CliResult {
    minirt::container::lifecycle::heal_intents(inst);
    let mut store = open_store(inst)?;
    let mut last_err = None;
    for name in &a.images {
        match image::remove(inst, &mut store, name) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                if let Some(prev) = last_err.replace(image_err(e)) {
                    eprintln!("minirt: {}", prev.message);
                }
            }
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub image: String,
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `image inspect`: a JSON array like Docker's; a missing image fails the
/// command after the others are printed.
pub fn inspect(inst: &Instance, a: ImageInspectArgs) -> CliResult {
    use minirt::rootfs::inspect;
    let mut store = open_store(inst)?;
    let mut docs = vec![];
    let mut last_err = None;
    for name in &a.images {
        match inspect::inspect(inst, &mut store, name) {
            Ok(d) => docs.push(d),
            Err(e) => {
                if let Some(prev) = last_err.replace(image_err(e)) {
                    eprintln!("minirt: {}", prev.message);
                }
            }
        }
    }
    let text = serde_json::to_string_pretty(&docs).map_err(|e| CliError {
        code: 125,
        message: e.to_string(),
    })?;
    println!("{text}");
    match last_err {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

pub fn history(inst: &Instance, a: HistoryArgs) -> CliResult {
    use minirt::rootfs::inspect;
    let mut store = open_store(inst)?;
    let row = inspect::stored(inst, &mut store, &a.image).map_err(image_err)?;
    let now = util::now_nanos();
    let lines = inspect::history(&row.id, &row.config);
    if a.quiet {
        for l in &lines {
            println!(
                "{}",
                if l.id.starts_with("sha256:") {
                    short_id(&l.id[7..])
                } else {
                    &l.id
                }
            );
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let mut by = l.created_by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                if l.id.starts_with("sha256:") {
                    short_id(&l.id[7..]).to_string()
                } else {
                    l.id.clone()
                },
                l.created
                    .map_or("N/A".to_string(), |c| created_since(c, now)),
                by,
                if l.empty_layer {
                    "0B".into()
                } else {
                    "-".into()
                },
                l.comment.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &rows
        )
    );
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// minirt never prompts; accepted for compatibility.
    #[arg(short, long)]
    pub force: bool,
}

pub fn prune(inst: &Instance, a: ImagePruneArgs) -> CliResult {
    let mut store = open_store(inst)?;
    let (lines, bytes) = image::prune(inst, &mut store, a.all).map_err(image_err)?;
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in lines {
            println!(
                "{}",
                l.replacen("Untagged:", "untagged:", 1)
                    .replacen("Deleted:", "deleted:", 1)
            );
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn created_since(created: i64, now: i64) -> String {
    format!(
        "{} ago",
        util::human_duration((now - created) / 1_000_000_000)
    )
}

fn table_row(s: &ImageSummary, now: i64) -> Vec<String> {
    vec![
        s.repository.clone(),
        s.tag.clone(),
        short_id(&s.id).to_string(),
        created_since(s.created, now),
        human_size(s.size),
    ]
}

fn json_row(s: &ImageSummary, now: i64) -> serde_json::Value {
    serde_json::json!({
        "ID": short_id(&s.id),
        "Digest": s.digest,
        "Repository": s.repository,
        "Tag": s.tag,
        "CreatedAt": util::rfc3339(s.created),
        "CreatedSince": created_since(s.created, now),
        "Size": human_size(s.size),
    })
}

/// Docker's size wording: decimal units, four significant digits ("2.14MB").
pub(super) fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes.max(0) as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_140_160), "2.14MB");
        assert_eq!(human_size(1_982_256), "1.982MB");
        assert_eq!(human_size(15_000), "15kB");
    }

    #[test]
    fn rows_show_short_ids_and_age() {
        let s = ImageSummary {
            id: "0123456789abcdef".repeat(4),
            repository: "busybox".into(),
            tag: "latest".into(),
            digest: "<none>".into(),
            created: 0,
            size: 1000,
        };
        let row = table_row(&s, 120 * 1_000_000_000);
        assert_eq!(row[2], "0123456789ab");
        assert_eq!(row[3], "2 minutes ago");
        assert_eq!(row[4], "1kB");
        let j: serde_json::Value = json_row(&s, 0);
        assert_eq!(j["Repository"], "busybox");
    }
}

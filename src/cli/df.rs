//! `minirt system df [-v] [--format]`: Docker's disk usage summary. Images
//! count each stored layer once (shared layers are not counted twice);
//! containers are the sizes of their upper dirs; volumes of their data
//! dirs; minirt has no build cache (always 0).

use super::output::table;
use super::template::{self, Format};
use super::{CliError, CliResult};
use clap::Args;
use minirt::container::{lifecycle, volume};
use minirt::rootfs::extract::tree_size;
use minirt::rootfs::image;
use minirt::store::{containers, images as rows, Store};
use minirt::{util, Instance};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short, long)]
    pub verbose: bool,
    /// Format the output using a Go template ({{.Type}} {{.Size}}) or json.
    #[arg(long)]
    pub format: Option<String>,
}

/// What the summary is computed from (gathered from the store and disk).
#[derive(Debug, Default)]
pub struct Facts {
    /// Image id -> its layer digests.
    pub images: BTreeMap<String, Vec<String>>,
    /// Layer digest -> bytes.
    pub layer_sizes: BTreeMap<String, u64>,
    /// Image ids some container uses.
    pub used_images: BTreeSet<String>,
    /// (running or paused, upper dir bytes) per container.
    pub containers: Vec<(bool, u64)>,
    /// (in use, bytes) per volume.
    pub volumes: Vec<(bool, u64)>,
}

/// One row of the summary table.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub kind: &'static str,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

impl Row {
    /// Docker's "1.2MB (50%)" (no percentage when the size is 0).
    fn reclaimable_text(&self) -> String {
        let r = super::image::human_size(self.reclaimable as i64);
        match (self.reclaimable * 100).checked_div(self.size) {
            Some(pct) => format!("{r} ({pct}%)"),
            None => r,
        }
    }

    fn doc(&self) -> serde_json::Value {
        json!({
            "Type": self.kind,
            "TotalCount": self.total.to_string(),
            "Active": self.active.to_string(),
            "Size": super::image::human_size(self.size as i64),
            "Reclaimable": self.reclaimable_text(),
        })
    }
}

fn layers_size<'a>(f: &Facts, ids: impl Iterator<Item = &'a String>) -> u64 {
    let mut seen = BTreeSet::new();
    for id in ids {
        for l in f.images.get(id).into_iter().flatten() {
            seen.insert(l);
        }
    }
    seen.iter()
        .map(|l| f.layer_sizes.get(*l).copied().unwrap_or(0))
        .sum()
}

/// The four rows of `system df` (pure).
pub fn summary(f: &Facts) -> Vec<Row> {
    let size = layers_size(f, f.images.keys());
    let active_ids: Vec<&String> = f
        .images
        .keys()
        .filter(|i| f.used_images.contains(*i))
        .collect();
    let active_size = layers_size(f, active_ids.iter().copied());
    let sum = |v: &[(bool, u64)], pick: bool| -> u64 {
        v.iter().filter(|(a, _)| *a == pick).map(|(_, s)| s).sum()
    };
    vec![
        Row {
            kind: "Images",
            total: f.images.len(),
            active: active_ids.len(),
            size,
            reclaimable: size - active_size.min(size),
        },
        Row {
            kind: "Containers",
            total: f.containers.len(),
            active: f.containers.iter().filter(|(a, _)| *a).count(),
            size: f.containers.iter().map(|(_, s)| s).sum(),
            reclaimable: sum(&f.containers, false),
        },
        Row {
            kind: "Local Volumes",
            total: f.volumes.len(),
            active: f.volumes.iter().filter(|(a, _)| *a).count(),
            size: f.volumes.iter().map(|(_, s)| s).sum(),
            reclaimable: sum(&f.volumes, false),
        },
        Row {
            kind: "Build Cache",
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        },
    ]
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError {
        code: 125,
        message: e.to_string(),
    }
}

pub fn df(inst: &Instance, a: DfArgs) -> CliResult {
    let fmt = template::parse(a.format.as_deref(), true).map_err(err)?;
    lifecycle::reconcile(inst)?;
    let store = Store::open(&inst.db_path()).map_err(err)?;
    let mut f = Facts::default();
    for img in rows::all_images(store.conn()).map_err(err)? {
        for l in &img.layers {
            if !f.layer_sizes.contains_key(l) {
                let s = rows::layer_size(store.conn(), l).map_err(err)?.unwrap_or(0);
                f.layer_sizes.insert(l.clone(), s.max(0) as u64);
            }
        }
        f.images.insert(img.id, img.layers);
    }
    let ctrs = containers::list(store.conn()).map_err(err)?;
    let mut ctr_sizes = vec![];
    let mut links: BTreeMap<String, usize> = BTreeMap::new();
    for c in &ctrs {
        f.used_images.insert(c.image_id.clone());
        let size = tree_size(&inst.container_dir(&c.id).join("upper"));
        ctr_sizes.push(size);
        f.containers.push((lifecycle::is_running(c), size));
        for v in volume::used_by(inst, c) {
            *links.entry(v).or_default() += 1;
        }
    }
    let vols = volume::list(inst).map_err(err)?;
    let mut vol_sizes = vec![];
    for v in &vols {
        let size = tree_size(&volume::data_dir(inst, &v.name));
        vol_sizes.push(size);
        f.volumes.push((links.contains_key(&v.name), size));
    }
    let rows = summary(&f);
    let mut out = String::new();
    match fmt {
        Format::Template(t) => {
            let docs: Vec<_> = rows.iter().map(Row::doc).collect();
            let headers = [
                ("Type", "TYPE"),
                ("TotalCount", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE"),
            ];
            out = t.render_list(&docs, &headers).map_err(err)?;
        }
        Format::Json => {
            for r in &rows {
                out.push_str(&format!("{}\n", r.doc()));
            }
        }
        Format::Default if !a.verbose => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let d = r.doc();
                    ["Type", "TotalCount", "Active", "Size", "Reclaimable"]
                        .iter()
                        .map(|k| d[*k].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            out = table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &cells);
        }
        Format::Default => {
            let now = util::now_nanos();
            let hs = |b: u64| super::image::human_size(b as i64);
            // Images: a layer shared with another image is SHARED SIZE.
            let mut users: BTreeMap<&String, usize> = BTreeMap::new();
            for layers in f.images.values() {
                for l in layers.iter().collect::<BTreeSet<_>>() {
                    *users.entry(l).or_default() += 1;
                }
            }
            let mut img_rows = vec![];
            for s in image::list(&store).map_err(err)? {
                let layers = f.images.get(&s.id).cloned().unwrap_or_default();
                let size: u64 = layers
                    .iter()
                    .map(|l| f.layer_sizes.get(l).copied().unwrap_or(0))
                    .sum();
                let shared: u64 = layers
                    .iter()
                    .filter(|l| users.get(l).copied().unwrap_or(0) > 1)
                    .map(|l| f.layer_sizes.get(l).copied().unwrap_or(0))
                    .sum();
                let n = ctrs.iter().filter(|c| c.image_id == s.id).count();
                img_rows.push(vec![
                    s.repository.clone(),
                    s.tag.clone(),
                    s.id[..12.min(s.id.len())].to_string(),
                    format!(
                        "{} ago",
                        util::human_duration((now - s.created) / 1_000_000_000)
                    ),
                    hs(size),
                    hs(shared),
                    hs(size - shared),
                    n.to_string(),
                ]);
            }
            out.push_str("Images space usage:\n\n");
            out.push_str(&table(
                &[
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "SHARED SIZE",
                    "UNIQUE SIZE",
                    "CONTAINERS",
                ],
                &img_rows,
            ));
            let ctr_rows: Vec<Vec<String>> = ctrs
                .iter()
                .zip(&ctr_sizes)
                .map(|(c, size)| {
                    vec![
                        c.id[..12.min(c.id.len())].to_string(),
                        c.image.clone(),
                        lifecycle::command_text(&c.command),
                        volume::used_by(inst, c).len().to_string(),
                        hs(*size),
                        format!(
                            "{} ago",
                            util::human_duration((now - c.created) / 1_000_000_000)
                        ),
                        lifecycle::status_line(inst, c, lifecycle::status(inst, c), now),
                        c.name.clone(),
                    ]
                })
                .collect();
            out.push_str("\nContainers space usage:\n\n");
            out.push_str(&table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "LOCAL VOLUMES",
                    "SIZE",
                    "CREATED",
                    "STATUS",
                    "NAMES",
                ],
                &ctr_rows,
            ));
            let vol_rows: Vec<Vec<String>> = vols
                .iter()
                .zip(&vol_sizes)
                .map(|(v, size)| {
                    vec![
                        v.name.clone(),
                        links.get(&v.name).copied().unwrap_or(0).to_string(),
                        hs(*size),
                    ]
                })
                .collect();
            out.push_str("\nLocal Volumes space usage:\n\n");
            out.push_str(&table(&["VOLUME NAME", "LINKS", "SIZE"], &vol_rows));
            out.push_str("\nBuild cache usage: 0B\n\n");
            out.push_str(&table(
                &[
                    "CACHE ID",
                    "CACHE TYPE",
                    "SIZE",
                    "CREATED",
                    "LAST USED",
                    "USAGE",
                    "SHARED",
                ],
                &[],
            ));
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_layers_count_once_and_unused_images_are_reclaimable() {
        let mut f = Facts::default();
        f.images.insert("a".into(), vec!["l1".into(), "l2".into()]);
        f.images.insert("b".into(), vec!["l1".into(), "l3".into()]);
        f.images.insert("c".into(), vec!["l4".into()]);
        for (l, s) in [("l1", 1000), ("l2", 200), ("l3", 30), ("l4", 4)] {
            f.layer_sizes.insert(l.into(), s);
        }
        f.used_images.insert("a".into());
        f.containers = vec![(true, 10), (false, 5), (false, 0)];
        f.volumes = vec![(true, 100), (false, 50)];
        let rows = summary(&f);
        assert_eq!(
            rows[0],
            Row {
                kind: "Images",
                total: 3,
                active: 1,
                size: 1234,
                reclaimable: 34
            }
        );
        assert_eq!(rows[0].reclaimable_text(), "34B (2%)");
        assert_eq!(
            rows[1],
            Row {
                kind: "Containers",
                total: 3,
                active: 1,
                size: 15,
                reclaimable: 5
            }
        );
        assert_eq!(rows[2].reclaimable, 50);
        assert_eq!(rows[2].active, 1);
        assert_eq!(rows[3].doc()["Reclaimable"], "0B");
        assert_eq!(rows[3].doc()["Size"], "0B");
        assert_eq!(rows[1].doc()["TotalCount"], "3");
    }
}

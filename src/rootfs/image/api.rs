//! The image API the CLI and the run path call: resolve, list, tag, remove,
//! prune, and the commit of a registry pull.

use super::*;
use crate::rootfs::extract::{self};
use crate::store::images as rows;
use crate::store::Store;
use crate::util;
use crate::Instance;
use std::fs::{self};

// ---------------------------------------------------------------- registry pulls

/// Writes a pulled image's rows in one transaction: its layers (checked to
/// be still in place, as `commit_images` does), the image, its tag and the
/// manifest digest it was pulled by.
pub(crate) fn commit_pulled(
    inst: &Instance,
    store: &mut Store,
    layers: &[StoredLayer],
    row: &rows::ImageRow,
    tag: Option<&str>,
    repo_digest: Option<(&str, &str)>,
) -> Result<()> {
    let now = util::now_nanos();
    store.write(|tx| {
        insert_layers(tx, inst, layers, now)?;
        if rows::image(tx, &row.id)?.is_none() {
            rows::insert_image(tx, row)?;
        }
        if let Some(t) = tag {
            rows::set_tag(tx, t, &row.id)?;
        }
        crate::container::events::record(
            tx,
            "image",
            "pull",
            tag.unwrap_or(&row.id),
            &[("name", strip_tag(tag.unwrap_or(&row.id)))],
        );
        if let Some((repo, digest)) = repo_digest {
            rows::set_repo_digest(tx, repo, digest, &row.id)?;
        }
        Ok(())
    })
}

/// Points the tag `target` at the image `source` names (`minirt tag`).
pub fn tag(inst: &Instance, store: &mut Store, source: &str, target: &str) -> Result<()> {
    let name = normalize_reference(target)?;
    let img =
        find(inst, store, source)?.ok_or_else(|| ImageError::NoSuchImage(source.to_string()))?;
    store.write(|tx| {
        if rows::image(tx, &img.id)?.is_none() {
            return Err(ImageError::NoSuchImage(source.to_string()));
        }
        rows::set_tag(tx, &name, &img.id)?;
        crate::container::events::record(
            tx,
            "image",
            "tag",
            &format!("sha256:{}", img.id),
            &[("name", &name)],
        );
        Ok(())
    })
}

/// `image prune`: removes dangling images (no tag, no repo digest), or with
/// `all` every image no container uses. Returns the removal lines and the
/// bytes of the image rows removed.
pub fn prune(inst: &Instance, store: &mut Store, all: bool) -> Result<(Vec<String>, i64)> {
    let c = store.conn();
    let tags = rows::all_tags(c)?;
    let digests = rows::all_repo_digests(c)?;
    let mut doomed = vec![];
    for img in rows::all_images(c)? {
        let named = tags.iter().any(|(_, id)| *id == img.id)
            || digests.iter().any(|(_, _, id)| *id == img.id);
        if (all || !named) && rows::containers_using(c, &img.id)?.is_empty() {
            doomed.push((img.id, img.size));
        }
    }
    let mut lines = vec![];
    let mut reclaimed = 0;
    for (id, size) in doomed {
        match remove(inst, store, &id) {
            Ok(l) => {
                reclaimed += size;
                lines.extend(l);
            }
            // Taken by a container created meanwhile: not ours to prune.
            Err(ImageError::InUse { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((lines, reclaimed))
}

/// The size of a layer already in the store, or None when it must be fetched.
pub(crate) fn present_layer(inst: &Instance, store: &Store, diff_id: &str) -> Result<Option<i64>> {
    let dir = layer_dir(inst, diff_id);
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(match rows::layer_size(store.conn(), diff_id)? {
        Some(s) => s,
        None => extract::tree_size(&dir) as i64,
    }))
}

// ---------------------------------------------------------------- queries

pub(super) fn to_image(row: rows::ImageRow) -> Result<Image> {
    let parsed = parse_config(row.config.as_bytes()).map_err(ImageError::Other)?;
    Ok(Image {
        id: row.id,
        layers: row.layers,
        config: parsed.config,
    })
}

/// The image id `name` refers to: a tag first, then an id or id prefix.
pub(super) fn lookup_id(
    c: &rusqlite::Connection,
    name: &str,
) -> Result<Option<(String, Option<String>)>> {
    if name.contains('@') {
        let r = crate::rootfs::registry::Reference::parse(name).map_err(ImageError::Other)?;
        let digest = r.digest.as_deref().unwrap_or_default();
        let id = rows::image_id_by_digest(c, &r.familiar_repository(), digest)?;
        return Ok(id.map(|id| (id, None)));
    }
    if let Ok(tag) = normalize_reference(name) {
        if let Some(id) = rows::image_id_by_tag(c, &tag)? {
            return Ok(Some((id, Some(tag))));
        }
    }
    if let Some(prefix) = id_prefix(name) {
        let ids = rows::image_ids_with_prefix(c, prefix)?;
        match ids.len() {
            0 => {}
            1 => return Ok(ids.into_iter().next().map(|id| (id, None))),
            _ => return Err(ImageError::Ambiguous(name.to_string())),
        }
    }
    Ok(None)
}

pub(super) fn find(inst: &Instance, store: &Store, name: &str) -> Result<Option<Image>> {
    let Some((id, _)) = lookup_id(store.conn(), name)? else {
        return Ok(None);
    };
    let Some(row) = rows::image(store.conn(), &id)? else {
        return Ok(None);
    };
    for l in &row.layers {
        if !layer_dir(inst, l).is_dir() {
            return Err(ImageError::Damaged {
                image: name.to_string(),
                layer: format!("sha256:{l}"),
            });
        }
    }
    Ok(Some(to_image(row)?))
}

/// The image `name` refers to: "busybox", "busybox:latest",
/// "docker.io/library/busybox:latest", an image id or a unique id prefix
/// (with or without "sha256:"). busybox:latest is loaded from the bundled
/// archive on first use.
pub fn resolve(inst: &Instance, store: &mut Store, name: &str) -> Result<Image> {
    let reference = normalize_reference(name).ok();
    let bundled = reference.as_deref() == Some(BUNDLED_NAME);
    match find(inst, store, name) {
        Ok(Some(img)) => return Ok(img),
        Ok(None) => {}
        // The bundled image heals itself: loading again re-extracts the layer.
        Err(ImageError::Damaged { .. }) if bundled => {}
        Err(e) => return Err(e),
    }
    if bundled {
        load_bundled(inst, store)?;
        if let Some(img) = find(inst, store, name)? {
            return Ok(img);
        }
    }
    Err(ImageError::NotFound(
        reference.unwrap_or_else(|| name.to_string()),
    ))
}

/// Every tag with its image, then untagged images; newest first.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let c = store.conn();
    let images = rows::all_images(c)?;
    let tags = rows::all_tags(c)?;
    let digests = rows::all_repo_digests(c)?;
    let mut out = vec![];
    for img in &images {
        let mine: Vec<&String> = tags
            .iter()
            .filter(|(_, id)| *id == img.id)
            .map(|(t, _)| t)
            .collect();
        let summary = |repository: &str, tag: &str| ImageSummary {
            id: img.id.clone(),
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: digests
                .iter()
                .find(|(r, _, id)| *id == img.id && r == repository)
                .map_or_else(|| "<none>".to_string(), |(_, d, _)| d.clone()),
            created: img.created,
            size: img.size,
        };
        if mine.is_empty() {
            match digests.iter().find(|(_, _, id)| *id == img.id) {
                Some((repo, _, _)) => out.push(summary(repo, "<none>")),
                None => out.push(summary("<none>", "<none>")),
            }
        }
        for t in mine {
            let (repo, tag) = split_tag(t);
            out.push(summary(repo, tag));
        }
    }
    Ok(out)
}

/// Removes a tag (by name) or an image with all its tags (by id), then the
/// image once no tag is left, then each of its layers no other image uses.
/// Refused while a container uses the image. Returns Docker's
/// "Untagged: ..." / "Deleted: sha256:..." lines.
pub fn remove(inst: &Instance, store: &mut Store, name: &str) -> Result<Vec<String>> {
    let layers_dir = inst.layers_dir();
    let (lines, doomed) = store.write(|tx| {
        let (id, tag) =
            lookup_id(tx, name)?.ok_or_else(|| ImageError::NoSuchImage(name.to_string()))?;
        let users = rows::containers_using(tx, &id)?;
        if !users.is_empty() {
            return Err(ImageError::InUse {
                image: name.to_string(),
                containers: users.join(", "),
            });
        }
        let mut lines = vec![];
        let untag = match tag {
            Some(t) => vec![t],
            None => rows::tags_of(tx, &id)?,
        };
        for t in untag {
            rows::delete_tag(tx, &t)?;
            crate::container::events::record(
                tx,
                "image",
                "untag",
                &format!("sha256:{id}"),
                &[("name", &format!("sha256:{id}"))],
            );
            lines.push(format!("Untagged: {t}"));
        }
        let mut doomed = vec![];
        if rows::tags_of(tx, &id)?.is_empty() {
            let row = rows::image(tx, &id)?;
            rows::delete_image(tx, &id)?;
            crate::container::events::record(
                tx,
                "image",
                "delete",
                &format!("sha256:{id}"),
                &[("name", &format!("sha256:{id}"))],
            );
            lines.push(format!("Deleted: sha256:{id}"));
            for l in row.map(|r| r.layers).unwrap_or_default() {
                if rows::layer_in_use(tx, &l)? {
                    continue;
                }
                rows::delete_layer(tx, &l)?;
                // Renamed under the write lock so a concurrent load either
                // sees the layer gone or commits before we decide.
                let dir = layer_dir(inst, &l);
                if dir.is_dir() {
                    let gone = layers_dir.join(temp_name("del"));
                    fs::rename(&dir, &gone).map_err(io_other("cannot remove layer", &dir))?;
                    doomed.push(gone);
                }
                lines.push(format!("Deleted: sha256:{l}"));
            }
        }
        Ok((lines, doomed))
    })?;
    for d in doomed {
        if let Err(e) = fs::remove_dir_all(&d) {
            tracing::warn!("cannot delete {}: {e}", d.display());
        }
    }
    Ok(lines)
}

/// "busybox:latest" -> "busybox" (an event's `name`); a registry's port stays.
fn strip_tag(r: &str) -> &str {
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

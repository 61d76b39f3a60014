//! Image, tag and layer rows (owned by the images work): plain SQL over a
//! connection or an open transaction; the image store decides the boundaries.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    /// sha256 hex of the image config blob.
    pub id: String,
    /// The image config JSON as loaded (its digest is the id).
    pub config: String,
    /// Layer digests (hex), bottom first.
    pub layers: Vec<String>,
    pub size: i64,
    /// Nanoseconds since the epoch.
    pub created: i64,
}

fn row_to_image(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn decode(raw: (String, String, String, i64, i64)) -> Result<ImageRow> {
    let (id, config, layers, size, created) = raw;
    Ok(ImageRow {
        id,
        config,
        layers: serde_json::from_str(&layers)?,
        size,
        created,
    })
}

/// Records a layer; a layer already known keeps its row.
pub(crate) fn insert_layer(c: &Connection, digest: &str, size: i64, created: i64) -> Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO layers (digest, size, created) VALUES (?1, ?2, ?3)",
        params![digest, size, created],
    )?;
    Ok(())
}

pub fn layer_size(c: &Connection, digest: &str) -> Result<Option<i64>> {
    Ok(
        c.query_row("SELECT size FROM layers WHERE digest = ?1", [digest], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

/// True when some image lists the layer.
pub(crate) fn layer_in_use(c: &Connection, digest: &str) -> Result<bool> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM images, json_each(images.layers) WHERE json_each.value = ?1",
        [digest],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

pub(crate) fn delete_layer(c: &Connection, digest: &str) -> Result<()> {
    c.execute("DELETE FROM layers WHERE digest = ?1", [digest])?;
    Ok(())
}

/// Records an image; an image already known (same config digest) is kept.
pub(crate) fn insert_image(c: &Connection, row: &ImageRow) -> Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO images (id, config, layers, size, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![row.id, row.config, serde_json::to_string(&row.layers)?, row.size, row.created],
    )?;
    Ok(())
}

pub fn image(c: &Connection, id: &str) -> Result<Option<ImageRow>> {
    c.query_row(
        "SELECT id, config, layers, size, created FROM images WHERE id = ?1",
        [id],
        row_to_image,
    )
    .optional()?
    .map(decode)
    .transpose()
}

pub fn all_images(c: &Connection) -> Result<Vec<ImageRow>> {
    let mut st = c.prepare(
        "SELECT id, config, layers, size, created FROM images ORDER BY created DESC, id",
    )?;
    let rows = st
        .query_map([], row_to_image)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode).collect()
}

/// Ids starting with `prefix` (a lowercase hex string).
pub(crate) fn image_ids_with_prefix(c: &Connection, prefix: &str) -> Result<Vec<String>> {
    let mut st =
        c.prepare("SELECT id FROM images WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id")?;
    let ids = st
        .query_map([prefix], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

pub(crate) fn delete_image(c: &Connection, id: &str) -> Result<()> {
    c.execute("DELETE FROM images WHERE id = ?1", [id])?;
    Ok(())
}

/// Points `name` at `image_id`, moving the tag if it named another image.
pub(crate) fn set_tag(c: &Connection, name: &str, image_id: &str) -> Result<()> {
    c.execute(
        "INSERT INTO image_tags (name, image_id) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        params![name, image_id],
    )?;
    Ok(())
}

pub(crate) fn image_id_by_tag(c: &Connection, name: &str) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT image_id FROM image_tags WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()?)
}

pub(crate) fn tags_of(c: &Connection, image_id: &str) -> Result<Vec<String>> {
    let mut st = c.prepare("SELECT name FROM image_tags WHERE image_id = ?1 ORDER BY name")?;
    let tags = st
        .query_map([image_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(tags)
}

/// Every (tag, image id), sorted by tag.
pub fn all_tags(c: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = c.prepare("SELECT name, image_id FROM image_tags ORDER BY name")?;
    let tags = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
    Ok(tags)
}

pub(crate) fn delete_tag(c: &Connection, name: &str) -> Result<()> {
    c.execute("DELETE FROM image_tags WHERE name = ?1", [name])?;
    Ok(())
}

/// Records that `repository` (familiar form) at manifest `digest` is `image_id`.
pub(crate) fn set_repo_digest(
    c: &Connection,
    repository: &str,
    digest: &str,
    image_id: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO image_digests (repository, digest, image_id) VALUES (?1, ?2, ?3)
         ON CONFLICT(repository, digest) DO UPDATE SET image_id = excluded.image_id",
        params![repository, digest, image_id],
    )?;
    Ok(())
}

pub(crate) fn image_id_by_digest(
    c: &Connection,
    repository: &str,
    digest: &str,
) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT image_id FROM image_digests WHERE repository = ?1 AND digest = ?2",
        params![repository, digest],
        |r| r.get(0),
    )
    .optional()?)
}

/// "repo@sha256:..." names of an image, sorted.
pub(crate) fn repo_digests_of(c: &Connection, image_id: &str) -> Result<Vec<String>> {
    let mut st = c.prepare(
        "SELECT repository || '@' || digest FROM image_digests WHERE image_id = ?1 ORDER BY 1",
    )?;
    let v = st
        .query_map([image_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(v)
}

/// Every (repository, digest, image id).
pub(crate) fn all_repo_digests(c: &Connection) -> Result<Vec<(String, String, String)>> {
    let mut st = c.prepare(
        "SELECT repository, digest, image_id FROM image_digests ORDER BY repository, digest",
    )?;
    let v = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(v)
}

/// Names of the containers (any state) created from the image.
pub(crate) fn containers_using(c: &Connection, image_id: &str) -> Result<Vec<String>> {
    let mut st = c.prepare("SELECT name FROM containers WHERE image_id = ?1 ORDER BY name")?;
    let names = st
        .query_map([image_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn img(id: &str, layers: &[&str]) -> ImageRow {
        ImageRow {
            id: id.into(),
            config: "{}".into(),
            layers: layers.iter().map(|s| s.to_string()).collect(),
            size: 10,
            created: 5,
        }
    }

    #[test]
    fn repo_digests_follow_their_image() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        insert_image(c, &img("abc1", &["l1"])).unwrap();
        insert_image(c, &img("abd2", &["l1"])).unwrap();
        set_repo_digest(c, "busybox", "sha256:11", "abc1").unwrap();
        set_repo_digest(c, "localhost:5000/b", "sha256:22", "abc1").unwrap();
        assert_eq!(
            image_id_by_digest(c, "busybox", "sha256:11")
                .unwrap()
                .as_deref(),
            Some("abc1")
        );
        assert_eq!(image_id_by_digest(c, "other", "sha256:11").unwrap(), None);
        assert_eq!(
            repo_digests_of(c, "abc1").unwrap(),
            vec!["busybox@sha256:11", "localhost:5000/b@sha256:22"]
        );
        set_repo_digest(c, "busybox", "sha256:11", "abd2").unwrap();
        assert_eq!(all_repo_digests(c).unwrap().len(), 2);
        // Deleting an image drops its digests with it.
        delete_image(c, "abd2").unwrap();
        assert_eq!(image_id_by_digest(c, "busybox", "sha256:11").unwrap(), None);
        assert_eq!(all_repo_digests(c).unwrap().len(), 1);
    }

    #[test]
    fn images_tags_and_layer_use_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        insert_layer(c, "l1", 3, 1).unwrap();
        insert_layer(c, "l1", 99, 1).unwrap();
        assert_eq!(layer_size(c, "l1").unwrap(), Some(3));
        insert_image(c, &img("abc1", &["l1", "l2"])).unwrap();
        insert_image(c, &img("abd2", &["l2"])).unwrap();
        set_tag(c, "busybox:latest", "abc1").unwrap();
        set_tag(c, "busybox:latest", "abd2").unwrap();
        assert_eq!(
            image_id_by_tag(c, "busybox:latest").unwrap().as_deref(),
            Some("abd2")
        );
        assert_eq!(tags_of(c, "abc1").unwrap(), Vec::<String>::new());
        assert_eq!(
            image_ids_with_prefix(c, "ab").unwrap(),
            vec!["abc1", "abd2"]
        );
        assert_eq!(image_ids_with_prefix(c, "abc").unwrap(), vec!["abc1"]);
        assert_eq!(image(c, "abc1").unwrap().unwrap().layers, vec!["l1", "l2"]);
        assert!(layer_in_use(c, "l1").unwrap());
        delete_image(c, "abc1").unwrap();
        assert!(!layer_in_use(c, "l1").unwrap());
        assert!(layer_in_use(c, "l2").unwrap());
        assert_eq!(all_images(c).unwrap().len(), 1);
        assert_eq!(
            all_tags(c).unwrap(),
            vec![("busybox:latest".to_string(), "abd2".to_string())]
        );
    }

    #[test]
    fn containers_using_names_the_users() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        insert_image(c, &img("i1", &[])).unwrap();
        c.execute(
            "INSERT INTO containers (id, name, image, image_id, command, config, status, created)
             VALUES ('c1', 'web', 'busybox', 'i1', '[]', '{}', 'exited', 0)",
            [],
        )
        .unwrap();
        assert_eq!(containers_using(c, "i1").unwrap(), vec!["web"]);
        assert!(containers_using(c, "i2").unwrap().is_empty());
    }
}

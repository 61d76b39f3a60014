//! `image inspect` and `history`: Docker's documents for a stored image,
//! built by pure functions from its row, tags, repo digests and config.

use super::image::{self, ImageError};
use crate::store::images as rows;
use crate::store::Store;
use crate::{util, Instance};
use serde_json::{json, Value};

/// Docker's `image inspect` shape for one image.
pub fn document(row: &rows::ImageRow, tags: &[String], digests: &[String]) -> Value {
    let cfg: Value = serde_json::from_str(&row.config).unwrap_or(Value::Null);
    let get = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "Id": format!("sha256:{}", row.id),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": cfg.get("comment").cloned().unwrap_or(json!("")),
        "Created": cfg.get("created").cloned().unwrap_or_else(|| json!(util::rfc3339(row.created))),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": get("config"),
        "Architecture": get("architecture"),
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Os": get("os"),
        "Size": row.size,
        "RootFS": {
            "Type": "layers",
            "Layers": row.layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>(),
        },
    })
}

/// One line of `history`, newest first as Docker prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// "sha256:<id>" for the top line, "<missing>" below it.
    pub id: String,
    /// Nanoseconds since the epoch, when the config says.
    pub created: Option<i64>,
    pub created_by: String,
    pub comment: String,
    pub empty_layer: bool,
}

pub fn history(id: &str, config: &str) -> Vec<HistoryRow> {
    let cfg: Value = serde_json::from_str(config).unwrap_or(Value::Null);
    let mut out: Vec<HistoryRow> = cfg
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .map(|e| HistoryRow {
                    id: "<missing>".into(),
                    created: e
                        .get("created")
                        .and_then(Value::as_str)
                        .and_then(image::parse_rfc3339),
                    created_by: e
                        .get("created_by")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    comment: e
                        .get("comment")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    empty_layer: e
                        .get("empty_layer")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    out.reverse();
    match out.first_mut() {
        Some(top) => top.id = format!("sha256:{id}"),
        None => out.push(HistoryRow {
            id: format!("sha256:{id}"),
            created: None,
            created_by: String::new(),
            comment: String::new(),
            empty_layer: false,
        }),
    }
    out
}

/// The stored row of the image `name` refers to.
pub fn stored(
    inst: &Instance,
    store: &mut Store,
    name: &str,
) -> Result<rows::ImageRow, ImageError> {
    let img = image::resolve(inst, store, name).map_err(|e| match e {
        ImageError::NotFound(_) => ImageError::NoSuchImage(name.to_string()),
        e => e,
    })?;
    rows::image(store.conn(), &img.id)?.ok_or_else(|| ImageError::NoSuchImage(name.to_string()))
}

pub fn inspect(inst: &Instance, store: &mut Store, name: &str) -> Result<Value, ImageError> {
    let row = stored(inst, store, name)?;
    let tags = rows::tags_of(store.conn(), &row.id)?;
    let digests = rows::repo_digests_of(store.conn(), &row.id)?;
    Ok(document(&row, &tags, &digests))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> rows::ImageRow {
        rows::ImageRow {
            id: "ab".repeat(32),
            config: r#"{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z",
                "config":{"Env":["PATH=/bin"],"WorkingDir":"/data","User":"1000",
                  "ExposedPorts":{"80/tcp":{}},"Labels":{"a":"b"},"StopSignal":"SIGQUIT",
                  "Healthcheck":{"Test":["CMD","true"]}},
                "rootfs":{"type":"layers","diff_ids":["sha256:11"]},
                "history":[{"created":"2026-01-01T00:00:00Z","created_by":"ADD rootfs"},
                           {"created":"2026-01-02T03:04:05Z","created_by":"ENV x","empty_layer":true}]}"#
                .into(),
            layers: vec!["11".into()],
            size: 42,
            created: 7,
        }
    }

    #[test]
    fn inspect_has_dockers_shape() {
        let d = document(&row(), &["app:v1".into()], &["app@sha256:cd".into()]);
        assert_eq!(d["Id"], format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(d["RepoTags"], json!(["app:v1"]));
        assert_eq!(d["RepoDigests"], json!(["app@sha256:cd"]));
        assert_eq!(d["Architecture"], "amd64");
        assert_eq!(d["Os"], "linux");
        assert_eq!(d["Size"], 42);
        assert_eq!(d["RootFS"]["Layers"], json!(["sha256:11"]));
        // The config is kept whole: the parts `run` does not use yet too.
        assert_eq!(d["Config"]["StopSignal"], "SIGQUIT");
        assert_eq!(d["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(d["Config"]["Healthcheck"]["Test"], json!(["CMD", "true"]));
        assert_eq!(d["Created"], "2026-01-02T03:04:05Z");
    }

    #[test]
    fn history_is_newest_first_with_the_id_on_top() {
        let r = row();
        let h = history(&r.id, &r.config);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].id, format!("sha256:{}", r.id));
        assert_eq!(h[0].created_by, "ENV x");
        assert!(h[0].empty_layer);
        assert_eq!(h[1].id, "<missing>");
        assert_eq!(h[1].created_by, "ADD rootfs");
        assert!(h[1].created.is_some());
        let bare = history("cd", "{}");
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].id, "sha256:cd");
    }
}

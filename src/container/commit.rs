//! `commit`: a container's overlay upper directory becomes one more layer on
//! top of its image's. The upper dir is written as an OCI layer tar by the
//! same writer `save`/`push` use for stored layers (overlay whiteouts become
//! `.wh.NAME` entries, opaque directories `.wh..wh..opq`), with the
//! container frozen meanwhile (`--pause`, the default); the tar is extracted
//! into the layer store like a loaded layer, and the new config (the
//! container's Cmd/Entrypoint/Env/WorkingDir/User/Labels, the `--change`
//! instructions, the parent's history plus one entry) is committed with the
//! layer row in one transaction. Failures undo the layer (`with_undo`).

use super::{lifecycle, ContainerError};
use crate::rootfs::image::{self, NewImage, TempGuard};
use crate::store::images as rows;
use crate::store::Store;
use crate::{util, Instance};
use serde_json::{json, Map, Value};
use std::io::{Seek, SeekFrom};

#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    pub author: Option<String>,
    pub message: Option<String>,
    /// Dockerfile instructions (`-c 'CMD ["sh"]'`).
    pub changes: Vec<String>,
    /// Freeze the container while its files are read.
    pub pause: bool,
    /// REPO[:TAG] of the new image.
    pub reference: Option<String>,
}

fn invalid(msg: String) -> crate::Error {
    ContainerError::Invalid(msg).into()
}

// ---------------------------------------------------------------- --change

/// A Dockerfile argument list: a JSON array, else the shell form.
fn exec_or_shell(arg: &str) -> Vec<String> {
    if arg.trim_start().starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(arg) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), arg.to_string()]
}

/// `K=V K2="V 2"` pairs (or the legacy `K V` for ENV).
fn pairs(arg: &str, legacy_space: bool) -> Result<Vec<(String, String)>, String> {
    if legacy_space && !arg.split_whitespace().next().unwrap_or("").contains('=') {
        let (k, v) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = vec![];
    let mut rest = arg.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("{arg}: expected KEY=VALUE"))?;
        let (v, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| format!("{arg}: unterminated quote"))?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(format!("{arg}: expected KEY=VALUE"));
        }
        out.push((k.to_string(), v));
        rest = after.trim_start();
    }
    Ok(out)
}

/// Applies one `--change` instruction to an image's `config` object.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<(), String> {
    let change = change.trim();
    let (instr, arg) = change
        .split_once(char::is_whitespace)
        .map(|(i, a)| (i, a.trim()))
        .unwrap_or((change, ""));
    let instr = instr.to_ascii_uppercase();
    let need_arg = || {
        if arg.is_empty() {
            Err(format!("{instr} requires at least one argument"))
        } else {
            Ok(())
        }
    };
    match instr.as_str() {
        "CMD" => {
            need_arg()?;
            config.insert("Cmd".into(), json!(exec_or_shell(arg)));
        }
        "ENTRYPOINT" => {
            need_arg()?;
            config.insert("Entrypoint".into(), json!(exec_or_shell(arg)));
            // As Docker: a new entrypoint drops the inherited command.
            config.insert("Cmd".into(), Value::Null);
        }
        "ENV" => {
            need_arg()?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            let list = env.as_array_mut().ok_or("Env is not a list")?;
            for (k, v) in pairs(arg, true)? {
                let prefix = format!("{k}=");
                list.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            need_arg()?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in pairs(arg, false)? {
                labels[k] = json!(v);
            }
        }
        "EXPOSE" => {
            need_arg()?;
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !ports.is_object() {
                *ports = json!({});
            }
            for p in arg.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                if port.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto.as_str())
                {
                    return Err(format!("invalid containerPort: {p}"));
                }
                ports[format!("{port}/{proto}")] = json!({});
            }
        }
        "VOLUME" => {
            need_arg()?;
            let vols = config.entry("Volumes").or_insert_with(|| json!({}));
            if !vols.is_object() {
                *vols = json!({});
            }
            let list = if arg.starts_with('[') {
                serde_json::from_str::<Vec<String>>(arg).map_err(|e| format!("VOLUME: {e}"))?
            } else {
                arg.split_whitespace().map(String::from).collect()
            };
            for v in list {
                vols[v] = json!({});
            }
        }
        "WORKDIR" => {
            need_arg()?;
            config.insert("WorkingDir".into(), json!(arg));
        }
        "USER" => {
            need_arg()?;
            config.insert("User".into(), json!(arg));
        }
        "STOPSIGNAL" => {
            need_arg()?;
            config.insert("StopSignal".into(), json!(arg));
        }
        "ONBUILD" => {
            need_arg()?;
            let list = config.entry("OnBuild").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(l) = list.as_array_mut() {
                l.push(json!(arg));
            }
        }
        "" => return Err("empty change".into()),
        other => return Err(format!("{other} is not a valid change command")),
    }
    Ok(())
}

// ---------------------------------------------------------------- the config

/// The new image's config: the parent's with the container's run settings,
/// the changes, one more layer and one more history entry (pure).
pub fn new_config(
    parent: &Value,
    run: &super::ContainerConfig,
    container_id: &str,
    opts: &CommitOptions,
    diff_id: &str,
    now: i64,
) -> Result<Value, String> {
    let mut doc = parent.as_object().cloned().unwrap_or_default();
    let mut config = doc
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // What the container ran with (HOSTNAME is the container's own, not
    // the image's).
    let env: Vec<&String> = run
        .env
        .iter()
        .filter(|e| !e.starts_with("HOSTNAME="))
        .collect();
    config.insert("Env".into(), json!(env));
    let ep_len = run.entrypoint.as_ref().map_or(0, Vec::len);
    config.insert(
        "Entrypoint".into(),
        run.entrypoint.as_ref().map_or(Value::Null, |e| json!(e)),
    );
    let cmd = run.args.get(ep_len..).unwrap_or_default();
    config.insert(
        "Cmd".into(),
        if cmd.is_empty() {
            Value::Null
        } else {
            json!(cmd)
        },
    );
    config.insert("WorkingDir".into(), json!(run.workdir));
    config.insert("User".into(), json!(run.user));
    if !run.labels.is_empty() {
        let labels = config.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in &run.labels {
            labels[k] = json!(v);
        }
    }
    for c in &opts.changes {
        apply_change(&mut config, c)?;
    }
    doc.insert("config".into(), Value::Object(config));
    let created = util::rfc3339(now);
    doc.insert("created".into(), json!(created));
    doc.insert("container".into(), json!(container_id));
    match &opts.author {
        Some(a) => doc.insert("author".into(), json!(a)),
        None => doc.remove("author"),
    };
    let mut diff_ids: Vec<Value> = doc
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(diff_id));
    doc.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    let mut history: Vec<Value> = doc
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut entry = Map::new();
    entry.insert("created".into(), json!(created));
    entry.insert("created_by".into(), json!(run.args.join(" ")));
    if let Some(a) = &opts.author {
        entry.insert("author".into(), json!(a));
    }
    if let Some(m) = &opts.message {
        entry.insert("comment".into(), json!(m));
    }
    history.push(Value::Object(entry));
    doc.insert("history".into(), Value::Array(history));
    Ok(Value::Object(doc))
}

// ---------------------------------------------------------------- the commit

/// Thaws the container it froze when dropped.
struct Frozen<'a> {
    inst: &'a Instance,
    id: Option<String>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = super::pause::set_paused(self.inst, &id, false) {
                tracing::warn!("unpausing {id} after the commit: {e}");
            }
        }
    }
}

/// Commits container `key`; returns the new image id ("sha256:<hex>").
pub fn commit(inst: &Instance, key: &str, opts: &CommitOptions) -> crate::Result<String> {
    lifecycle::reconcile(inst)?;
    let row = lifecycle::lookup(inst, key)?;
    let reference = opts
        .reference
        .as_deref()
        .map(image::normalize_reference)
        .transpose()?;
    // Bad changes fail before anything is made.
    let mut probe = Map::new();
    for c in &opts.changes {
        apply_change(&mut probe, c).map_err(invalid)?;
    }
    let run = lifecycle::config_of(&row);
    let mut store = Store::open(&inst.db_path())?;
    let parent = rows::image(store.conn(), &row.image_id)?
        .ok_or_else(|| image::ImageError::NoSuchImage(row.image_id.clone()))?;
    let parent_doc: Value = serde_json::from_str(&parent.config).map_err(|e| {
        invalid(format!(
            "the image config of {} is not JSON: {e}",
            row.image
        ))
    })?;

    // The upper dir as a layer tar, the container frozen meanwhile.
    image::prepare_layers_dir(inst)?;
    let tar_path = inst.layers_dir().join(image::temp_name("tmp"));
    let tmp = TempGuard::new(tar_path.clone());
    {
        let freeze =
            opts.pause && lifecycle::is_running(&row) && !super::pause::is_paused(inst, &row.id);
        let _frozen = Frozen {
            inst,
            id: if freeze {
                super::pause::set_paused(inst, &row.id, true)?;
                Some(row.id.clone())
            } else {
                None
            },
        };
        let f = std::fs::File::create(&tar_path)
            .map_err(|e| invalid(format!("cannot create {}: {e}", tar_path.display())))?;
        let upper = inst.container_dir(&row.id).join("upper");
        // A container that never started has no upper dir yet (its start
        // makes the same directory): an empty layer, as Docker commits it.
        std::fs::create_dir_all(&upper)
            .map_err(|e| invalid(format!("cannot create {}: {e}", upper.display())))?;
        image::write_layer_tar(&upper, std::io::BufWriter::new(f)).map_err(|e| {
            ContainerError::Runtime(format!("reading the changes of {}: {e}", row.id))
        })?;
    }

    let now = util::now_nanos();
    let new_id = image::with_undo(inst, &mut store, |store, layers| {
        let mut f = std::fs::File::open(tmp.path())
            .map_err(|e| image::ImageError::Io(format!("cannot read the layer: {e}")))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| image::ImageError::Io(e.to_string()))?;
        let l = image::ensure_layer(inst, store, std::io::BufReader::new(f), None, None)?;
        let doc = new_config(
            &parent_doc,
            &run,
            &row.id,
            opts,
            &format!("sha256:{}", l.digest),
            now,
        )
        .map_err(image::ImageError::Other)?;
        let config = doc.to_string();
        let mut layer_ids = parent.layers.clone();
        layer_ids.push(l.digest.clone());
        let img = NewImage {
            row: rows::ImageRow {
                id: image::sha256_hex(config.as_bytes()),
                config,
                layers: layer_ids,
                size: parent.size + l.size,
                created: now,
            },
            names: reference.iter().cloned().collect(),
        };
        layers.push(l);
        image::commit_images(inst, store, layers, std::slice::from_ref(&img), "")?;
        Ok(img.row.id)
    })?;
    drop(tmp);
    let id = format!("sha256:{new_id}");
    let mut attrs = vec![("imageID", id.as_str())];
    if let Some(m) = &opts.message {
        attrs.push(("comment", m));
    }
    super::events::container(store.conn(), &row.id, "commit", &attrs);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_cfg() -> super::super::ContainerConfig {
        super::super::ContainerConfig {
            args: vec![
                "/entry".into(),
                "sh".into(),
                "-c".into(),
                "echo hi > /x".into(),
            ],
            entrypoint: Some(vec!["/entry".into()]),
            env: vec!["PATH=/bin".into(), "HOSTNAME=abc".into(), "A=1".into()],
            workdir: "/w".into(),
            labels: [("tier".to_string(), "front".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn changes_parse_as_dockerfile_instructions() {
        let mut c = Map::new();
        apply_change(&mut c, r#"CMD ["cat","/x"]"#).unwrap();
        assert_eq!(c["Cmd"], json!(["cat", "/x"]));
        apply_change(&mut c, "CMD echo hi").unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        apply_change(&mut c, "ENV A=1 B=\"two words\"").unwrap();
        apply_change(&mut c, "env A 3").unwrap();
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        apply_change(&mut c, "LABEL a=b c=d").unwrap();
        assert_eq!(c["Labels"], json!({"a": "b", "c": "d"}));
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        apply_change(&mut c, "USER 1000:1000").unwrap();
        apply_change(&mut c, "VOLUME /data").unwrap();
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        apply_change(&mut c, r#"ENTRYPOINT ["/bin/app"]"#).unwrap();
        assert_eq!(c["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(c["Cmd"], Value::Null);
        assert_eq!(
            apply_change(&mut c, "RUN true").unwrap_err(),
            "RUN is not a valid change command"
        );
        assert!(apply_change(&mut c, "EXPOSE http").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
        assert!(apply_change(&mut c, "LABEL novalue").is_err());
    }

    #[test]
    fn the_new_config_has_the_containers_settings_one_more_layer_and_history() {
        let parent = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"], "Labels": {"base": "1"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "ADD rootfs"}],
        });
        let opts = CommitOptions {
            author: Some("me".into()),
            message: Some("snap".into()),
            changes: vec![r#"CMD ["cat","/x"]"#.into()],
            ..Default::default()
        };
        let doc = new_config(
            &parent,
            &run_cfg(),
            "cid",
            &opts,
            "sha256:bb",
            1_000_000_000,
        )
        .unwrap();
        assert_eq!(doc["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(doc["config"]["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(doc["config"]["Entrypoint"], json!(["/entry"]));
        assert_eq!(doc["config"]["Cmd"], json!(["cat", "/x"]));
        assert_eq!(
            doc["config"]["Labels"],
            json!({"base": "1", "tier": "front"})
        );
        assert_eq!(doc["config"]["WorkingDir"], "/w");
        assert_eq!(doc["author"], "me");
        assert_eq!(doc["container"], "cid");
        assert_eq!(doc["architecture"], "amd64");
        let h = doc["history"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1]["comment"], "snap");
        assert_eq!(h[1]["author"], "me");
        assert_eq!(h[1]["created_by"], "/entry sh -c echo hi > /x");
        assert_eq!(h[1]["created"], "1970-01-01T00:00:01.000000000Z");
        // Without changes the container's own command stays.
        let doc = new_config(
            &parent,
            &run_cfg(),
            "cid",
            &CommitOptions::default(),
            "sha256:bb",
            1,
        )
        .unwrap();
        assert_eq!(doc["config"]["Cmd"], json!(["sh", "-c", "echo hi > /x"]));
        assert!(doc.get("author").is_none());
    }
}

//! `push`: a stored image up to a registry over the v2 upload protocol.
//! Each layer is written out as a gzipped tar (`image::export_layer`, a
//! few at once); a blob the repository already has (HEAD) is skipped, a
//! blob minirt pushed before to another repository of the same registry is
//! mounted from there (`POST ?mount=&from=`), anything else is uploaded in
//! one PUT; then the config (its diff ids replaced by the new tars') and
//! the manifest. The credentials are checked before any layer is written;
//! nothing in the local store changes, pushed or not.

use super::client::{self, Client};
use super::config::{self, RegistriesConf};
use super::manifest::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST};
use super::{Reference, RegistryError};
use crate::rootfs::image::{self, ExportedLayer, ImageError};
use crate::store::images as rows;
use crate::store::Store;
use crate::Instance;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Layers written out and sent at once.
const PARALLEL_LAYERS: usize = 3;

type Result<T> = std::result::Result<T, ImageError>;

/// What a push reports as it goes (the CLI prints it).
#[derive(Debug, Clone)]
pub enum Event {
    /// The repository the push goes to ("host/repo").
    Start { repository: String },
    /// A blob the repository had already.
    Exists { digest: String },
    /// A blob mounted from another repository of the registry.
    Mounted { digest: String, from: String },
    /// A blob uploaded.
    Pushed { digest: String, size: u64 },
}

pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

#[derive(Clone, Default)]
pub struct PushOptions {
    /// `--tls-verify=false`: plain HTTP for this registry.
    pub insecure: bool,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The tag pushed.
    pub tag: String,
    /// "sha256:..." of the manifest.
    pub digest: String,
    /// Bytes of the manifest.
    pub size: usize,
}

fn reg(e: RegistryError) -> ImageError {
    ImageError::Registry(e)
}

fn other(s: impl Into<String>) -> ImageError {
    ImageError::Registry(RegistryError::Other(s.into()))
}

fn emit(opts: &PushOptions, e: Event) {
    if let Some(p) = &opts.progress {
        p(e);
    }
}

/// Pushes the local image `name` (NAME[:TAG]) to the registry it names.
pub fn push(inst: &Instance, store: &mut Store, name: &str, opts: &PushOptions) -> Result<Pushed> {
    let r = Reference::parse(name).map_err(other)?;
    if r.digest.is_some() {
        return Err(other(format!(
            "cannot push {name}: a digest reference names content, push a tag"
        )));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let img = match image::resolve(inst, store, name) {
        Ok(i) => i,
        Err(ImageError::NotFound(_)) => {
            return Err(ImageError::Other(format!(
                "An image does not exist locally with the tag: {name}"
            )))
        }
        Err(e) => return Err(e),
    };
    let raw_config = rows::image(store.conn(), &img.id)?
        .map(|row| row.config.into_bytes())
        .ok_or_else(|| ImageError::NoSuchImage(name.to_string()))?;
    let conf = RegistriesConf::load().map_err(other)?;
    let host = config::api_host(&r.registry).to_string();
    let insecure = opts.insecure || conf.host_insecure(&r.registry);
    let client = Client::new(&host, insecure, None).map_err(reg)?;
    let s = Session {
        scope: format!("repository:{}:pull,push", r.repository),
        repository: r.repository.clone(),
        client,
        cache: PushCache::path(inst),
    };
    // Reachability and credentials first, before any layer is written.
    s.head(&format!("/v2/{}/manifests/{tag}", r.repository), "manifest")?;
    emit(
        opts,
        Event::Start {
            repository: format!("{}/{}", r.registry, r.repository),
        },
    );
    let layers = s.push_layers(inst, &img.layers, opts)?;
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = image::config_with_diff_ids(&raw_config, &diff_ids)?;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    if !s.exists(&config_digest)? {
        s.upload(&config_digest, Body::Bytes(&config))?;
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": DOCKER_LAYER_GZIP, "size": l.size, "digest": l.digest,
        })).collect::<Vec<_>>(),
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| other(e.to_string()))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    s.put_manifest(&tag, &body)?;
    crate::container::events::record(store.conn(), "image", "push", name, &[("name", name)]);
    Ok(Pushed {
        tag,
        digest,
        size: body.len(),
    })
}

/// What a layer became on the registry.
struct Sent {
    diff_id: String,
    digest: String,
    size: u64,
}

enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a ExportedLayer),
}

struct Session {
    client: Client,
    repository: String,
    scope: String,
    cache: PathBuf,
}

impl Session {
    fn head(&self, path: &str, what: &str) -> Result<bool> {
        let url = self.client.url(path);
        let resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent.head(&url);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            })
            .map_err(reg)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(reg(client::status_error(&self.client.host, resp, what))),
        }
    }

    fn exists(&self, digest: &str) -> Result<bool> {
        self.head(&format!("/v2/{}/blobs/{digest}", self.repository), "blob")
    }

    /// Writes out and sends every layer, a few at once, in order.
    fn push_layers(
        &self,
        inst: &Instance,
        layers: &[String],
        opts: &PushOptions,
    ) -> Result<Vec<Sent>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<BTreeMap<usize, Result<Sent>>> = Mutex::new(BTreeMap::new());
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            for _ in 0..PARALLEL_LAYERS.min(layers.len()) {
                sc.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= layers.len() || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let r = self.push_layer(inst, &layers[i], opts);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut m) = results.lock() {
                        m.insert(i, r);
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .map_err(|_| other("a push thread panicked"))?;
        let mut out = vec![];
        for (_, r) in results {
            out.push(r?);
        }
        if out.len() != layers.len() {
            return Err(other("a layer was not pushed"));
        }
        Ok(out)
    }

    fn push_layer(&self, inst: &Instance, diff_id: &str, opts: &PushOptions) -> Result<Sent> {
        let blob = image::export_layer(inst, diff_id, true)?;
        let sent = Sent {
            diff_id: blob.diff_id.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
        };
        if self.exists(&blob.digest)? {
            emit(
                opts,
                Event::Exists {
                    digest: blob.digest.clone(),
                },
            );
            self.remember(&blob.digest);
            return Ok(sent);
        }
        for from in PushCache::repos_with(&self.cache, &self.client.host, &blob.digest) {
            if from == self.repository {
                continue;
            }
            if let Some(location) = self.mount(&blob.digest, &from)? {
                // The registry would not mount: it opened an upload instead.
                self.put_blob(&location, &blob.digest, Body::File(&blob))?;
                emit(
                    opts,
                    Event::Pushed {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    },
                );
            } else {
                emit(
                    opts,
                    Event::Mounted {
                        digest: blob.digest.clone(),
                        from,
                    },
                );
            }
            self.remember(&blob.digest);
            return Ok(sent);
        }
        self.upload(&blob.digest, Body::File(&blob))?;
        emit(
            opts,
            Event::Pushed {
                digest: blob.digest.clone(),
                size: blob.size,
            },
        );
        self.remember(&blob.digest);
        Ok(sent)
    }

    fn remember(&self, digest: &str) {
        PushCache::remember(&self.cache, &self.client.host, &self.repository, digest);
    }

    /// POST to the uploads endpoint (with `query`); 201 = done (a mount),
    /// 202 = an upload session at the returned location.
    fn start_upload(&self, query: &str) -> Result<Option<String>> {
        let url = self
            .client
            .url(&format!("/v2/{}/blobs/uploads/{query}", self.repository));
        let resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent.post(&url);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            })
            .map_err(reg)?;
        match resp.status().as_u16() {
            201 => Ok(None),
            202 => {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        other(format!(
                            "{}: the registry opened an upload without a Location",
                            self.client.host
                        ))
                    })?;
                Ok(Some(loc.to_string()))
            }
            _ => Err(reg(client::status_error(
                &self.client.host,
                resp,
                "blob upload",
            ))),
        }
    }

    fn mount(&self, digest: &str, from: &str) -> Result<Option<String>> {
        self.start_upload(&format!("?mount={digest}&from={from}"))
    }

    fn upload(&self, digest: &str, body: Body<'_>) -> Result<()> {
        let location = self.start_upload("")?.ok_or_else(|| {
            other(format!(
                "{}: the registry answered an upload with 201",
                self.client.host
            ))
        })?;
        self.put_blob(&location, digest, body)
    }

    /// The monolithic upload: one PUT of the whole blob to the session.
    fn put_blob(&self, location: &str, digest: &str, body: Body<'_>) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = self.client.url(&format!("{location}{sep}digest={digest}"));
        let resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent
                    .put(&url)
                    .header("Content-Type", "application/octet-stream");
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                match &body {
                    Body::Bytes(b) => r.send(*b),
                    Body::File(l) => r.send(std::fs::File::open(l.path())?),
                }
            })
            .map_err(reg)?;
        if resp.status().as_u16() != 201 {
            return Err(reg(client::status_error(
                &self.client.host,
                resp,
                &format!("upload of {digest}"),
            )));
        }
        Ok(())
    }

    fn put_manifest(&self, tag: &str, body: &[u8]) -> Result<()> {
        let url = self
            .client
            .url(&format!("/v2/{}/manifests/{tag}", self.repository));
        let resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent.put(&url).header("Content-Type", DOCKER_MANIFEST);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.send(body)
            })
            .map_err(reg)?;
        if !resp.status().is_success() {
            return Err(reg(client::status_error(
                &self.client.host,
                resp,
                "manifest upload",
            )));
        }
        Ok(())
    }
}

/// Which repositories of which registry minirt pushed a blob to, so a later
/// push to another repository mounts it instead of uploading it again. A
/// cache: a lost write (two pushes at once) only costs an upload.
struct PushCache;

type CacheDoc = BTreeMap<String, BTreeMap<String, Vec<String>>>;

impl PushCache {
    fn path(inst: &Instance) -> PathBuf {
        inst.root.join("pushed-blobs.json")
    }

    fn read(path: &PathBuf) -> CacheDoc {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn repos_with(path: &PathBuf, host: &str, digest: &str) -> Vec<String> {
        Self::read(path)
            .get(host)
            .and_then(|m| m.get(digest))
            .cloned()
            .unwrap_or_default()
    }

    fn remember(path: &PathBuf, host: &str, repo: &str, digest: &str) {
        static LOCK: Mutex<()> = Mutex::new(());
        let Ok(_g) = LOCK.lock() else { return };
        let mut doc = Self::read(path);
        let repos = doc
            .entry(host.to_string())
            .or_default()
            .entry(digest.to_string())
            .or_default();
        if repos.iter().any(|r| r == repo) {
            return;
        }
        repos.push(repo.to_string());
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let ok = serde_json::to_vec(&doc)
            .ok()
            .is_some_and(|b| std::fs::write(&tmp, b).is_ok());
        if ok && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_record_lists_repositories_per_registry_and_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("pushed-blobs.json");
        assert!(PushCache::repos_with(&p, "h:5000", "sha256:aa").is_empty());
        PushCache::remember(&p, "h:5000", "team/a", "sha256:aa");
        PushCache::remember(&p, "h:5000", "team/a", "sha256:aa");
        PushCache::remember(&p, "h:5000", "team/b", "sha256:aa");
        PushCache::remember(&p, "other:443", "x/y", "sha256:bb");
        assert_eq!(
            PushCache::repos_with(&p, "h:5000", "sha256:aa"),
            ["team/a", "team/b"]
        );
        assert!(PushCache::repos_with(&p, "h:5000", "sha256:bb").is_empty());
        // A damaged record is an empty one, not an error.
        std::fs::write(&p, b"not json").unwrap();
        assert!(PushCache::repos_with(&p, "h:5000", "sha256:aa").is_empty());
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }
}

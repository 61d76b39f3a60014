//! `pull`: resolve a reference through the mirrors to a manifest (picking
//! the platform from an index), fetch and verify the config, then stream
//! the missing layers (a few at once) through digest verification and
//! decompression into the existing safe extractor, which renames each
//! complete layer into the content-addressed store. No compressed blob is
//! kept; a failed or killed pull leaves no layer, row or temp dir behind
//! (temp dirs of a killed pull are swept by the next command that stores
//! layers).

use super::blob::{Verify, Zstd};
use super::client::{self, Client};
use super::config::{Endpoint, RegistriesConf};
use super::manifest::{self, Compression, Descriptor, Fetched, Platform};
use super::{Reference, RegistryError};
use crate::rootfs::extract::ArchiveError;
use crate::rootfs::image::{self, ImageError, StoredLayer};
use crate::store::images as rows;
use crate::store::Store;
use crate::{util, Instance};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Layers fetched at once: enough to fill a link while one layer is being
/// extracted, few enough not to thrash a small disk.
const PARALLEL_LAYERS: usize = 3;

type Result<T> = std::result::Result<T, ImageError>;

/// What a pull reports as it goes (the CLI draws it).
#[derive(Debug, Clone)]
pub enum Event {
    /// The manifest was found at `host`.
    Resolved {
        reference: String,
        host: String,
    },
    /// A layer already in the store (by its diff id).
    LayerExists {
        digest: String,
    },
    LayerStart {
        digest: String,
        size: u64,
    },
    LayerBytes {
        digest: String,
        read: u64,
    },
    LayerDone {
        digest: String,
    },
}

pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

#[derive(Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; the host's when None.
    pub platform: Option<Platform>,
    /// `--tls-verify=false`: plain HTTP for this registry.
    pub insecure: bool,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// sha256 hex of the image config.
    pub id: String,
    /// The reference as pulled, fully qualified.
    pub reference: String,
    /// The manifest digest ("sha256:...") the registry served for it.
    pub digest: String,
    /// True when nothing new was stored.
    pub up_to_date: bool,
}

fn reg(e: RegistryError) -> ImageError {
    ImageError::Registry(e)
}

fn other(s: impl Into<String>) -> ImageError {
    ImageError::Registry(RegistryError::Other(s.into()))
}

/// Pulls `reference` into the store and tags it.
pub fn pull(
    inst: &Instance,
    store: &mut Store,
    reference: &str,
    opts: &PullOptions,
) -> Result<Pulled> {
    let r = Reference::parse(reference).map_err(other)?;
    let conf = RegistriesConf::load().map_err(other)?;
    let endpoints = conf.endpoints(&r).map_err(other)?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut last = None;
    for ep in &endpoints {
        let session = match Session::open(ep, opts.insecure) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match session.resolve(&r, &platform) {
            Ok(resolved) => {
                emit(
                    opts,
                    Event::Resolved {
                        reference: r.to_string(),
                        host: ep.host.clone(),
                    },
                );
                return session.store(inst, store, &r, resolved, opts);
            }
            // A mirror that fails hands over to the next place.
            Err(e) if ep.mirror => {
                tracing::info!("mirror {} failed: {e}", ep.host);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| other(format!("no registry to pull {r} from"))))
}

/// Every tag of the repository `reference` names (the tags list API, page
/// by page), from the first of its endpoints that answers; sorted.
pub fn list_tags(reference: &str, insecure: bool) -> Result<Vec<String>> {
    let r = Reference::parse(reference).map_err(other)?;
    let conf = RegistriesConf::load().map_err(other)?;
    let endpoints = conf.endpoints(&r).map_err(other)?;
    let mut last = None;
    for ep in &endpoints {
        let session = match Session::open(ep, insecure) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match session.tags() {
            Ok(mut tags) => {
                tags.sort();
                return Ok(tags);
            }
            Err(e) if ep.mirror => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| other(format!("no registry to list {r} from"))))
}

impl Session {
    fn tags(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut all: Vec<String> = vec![];
        loop {
            let mut path = format!("/v2/{}/tags/list?n=1000", self.repository);
            if let Some(l) = all.last() {
                path += &format!("&last={l}");
            }
            let (_, body) = self.get_small(&path, None, manifest::MAX_MANIFEST, "tags list")?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| other(format!("{}: bad tags list: {e}", self.client.host)))?;
            let tags = page.tags.unwrap_or_default();
            let n = tags.len();
            // A registry that ignores `last` would repeat itself: stop.
            if tags.iter().all(|t| all.contains(t)) {
                break;
            }
            all.extend(tags);
            if n < 1000 {
                break;
            }
        }
        Ok(all)
    }
}

fn emit(opts: &PullOptions, e: Event) {
    if let Some(p) = &opts.progress {
        p(e);
    }
}

/// A manifest found, with its config, checked against every digest.
struct Resolved {
    /// The digest of the document the reference named (index or manifest).
    digest: String,
    manifest: manifest::Manifest,
    config: Vec<u8>,
    diff_ids: Vec<String>,
    compressions: Vec<Compression>,
}

struct Session {
    client: Client,
    repository: String,
    scope: String,
}

impl Session {
    fn open(ep: &Endpoint, insecure: bool) -> Result<Session> {
        let client = Client::new(&ep.host, ep.insecure || insecure, None).map_err(reg)?;
        Ok(Session {
            client,
            scope: format!("repository:{}:pull", ep.repository),
            repository: ep.repository.clone(),
        })
    }

    /// GETs a manifest or blob path, capped at `limit` bytes.
    fn get_small(
        &self,
        path: &str,
        accept: Option<&str>,
        limit: u64,
        what: &str,
    ) -> Result<(String, Vec<u8>)> {
        let url = self.client.url(path);
        let mut resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent.get(&url);
                if let Some(a) = accept {
                    r = r.header("Accept", a);
                }
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            })
            .map_err(reg)?;
        if !resp.status().is_success() {
            return Err(reg(client::status_error(&self.client.host, resp, what)));
        }
        let too_big = || {
            other(format!(
                "{}: {what} is larger than {} MiB: refused",
                self.client.host,
                limit >> 20
            ))
        };
        if resp.body().content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_big(),
                e => other(format!("{}: reading {what}: {e}", self.client.host)),
            })?;
        Ok((ct, body))
    }

    fn fetch_manifest(&self, reference: &str, digest: Option<&str>) -> Result<(String, Fetched)> {
        let what = format!("manifest {}:{reference}", self.repository);
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let (ct, body) = self
            .get_small(&path, Some(manifest::ACCEPT), manifest::MAX_MANIFEST, &what)
            .map_err(|e| match e {
                ImageError::Registry(RegistryError::NotFound(_)) => {
                    reg(RegistryError::NotFound(format!(
                        "manifest unknown: {}/{}:{reference} not found on {}",
                        self.client.host, self.repository, self.client.host
                    )))
                }
                e => e,
            })?;
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(want) = digest {
            if got != want {
                return Err(other(format!(
                    "{}: the manifest {want} does not match its digest (got {got})",
                    self.client.host
                )));
            }
        }
        let parsed =
            manifest::parse(&ct, &body).map_err(|e| other(format!("{}: {e}", self.client.host)))?;
        Ok((got, parsed))
    }

    fn resolve(&self, r: &Reference, platform: &Platform) -> Result<Resolved> {
        let (digest, fetched) = self.fetch_manifest(r.manifest_ref(), r.digest.as_deref())?;
        let manifest = match fetched {
            Fetched::Image(m) => m,
            Fetched::Index(idx) => {
                let d = manifest::select_platform(&idx, platform).map_err(other)?;
                super::reference::check_digest(&d.digest).map_err(other)?;
                match self.fetch_manifest(&d.digest, Some(&d.digest))?.1 {
                    Fetched::Image(m) => m,
                    Fetched::Index(_) => {
                        return Err(other("nested image indexes are not supported"))
                    }
                }
            }
        };
        let compressions = manifest
            .layers
            .iter()
            .map(|l| {
                super::reference::check_digest(&l.digest)?;
                manifest::layer_compression(l)
            })
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(other)?;
        super::reference::check_digest(&manifest.config.digest).map_err(other)?;
        let path = format!("/v2/{}/blobs/{}", self.repository, manifest.config.digest);
        let (_, config) = self.get_small(&path, None, manifest::MAX_CONFIG, "image config")?;
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        if got != manifest.config.digest {
            return Err(other(format!(
                "{}: the image config {} does not match its digest (got {got})",
                self.client.host, manifest.config.digest
            )));
        }
        let parsed = image::parse_config(&config).map_err(other)?;
        if parsed.diff_ids.len() != manifest.layers.len() {
            return Err(other(format!(
                "the image config lists {} layers but the manifest {}",
                parsed.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        Ok(Resolved {
            digest,
            manifest,
            config,
            diff_ids: parsed.diff_ids,
            compressions,
        })
    }

    fn store(
        &self,
        inst: &Instance,
        store: &mut Store,
        r: &Reference,
        res: Resolved,
        opts: &PullOptions,
    ) -> Result<Pulled> {
        let id = hex::encode(Sha256::digest(&res.config));
        let tag = r.familiar_tagged();
        let repo = r.familiar_repository();
        let config = String::from_utf8(res.config.clone())
            .map_err(|_| other("the image config is not UTF-8"))?;
        let created = image::parse_config(&res.config)
            .ok()
            .and_then(|p| p.created)
            .unwrap_or_else(util::now_nanos);
        let mut up_to_date = rows::image(store.conn(), &id)?.is_some()
            && tag.as_deref().is_none_or(|t| {
                rows::image_id_by_tag(store.conn(), t)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(id.as_str())
            });
        image::with_undo(inst, store, |store, layers| {
            let mut todo = vec![];
            let mut size = 0;
            for (i, diff) in res.diff_ids.iter().enumerate() {
                match image::present_layer(inst, store, diff)? {
                    Some(s) => {
                        emit(
                            opts,
                            Event::LayerExists {
                                digest: diff.clone(),
                            },
                        );
                        size += s;
                        layers.push(StoredLayer {
                            digest: diff.clone(),
                            size: s,
                            created: false,
                            _intent: None,
                        });
                    }
                    None => todo.push(i),
                }
            }
            if !todo.is_empty() {
                up_to_date = false;
            }
            let fetched = self.fetch_layers(inst, &res, &todo, opts);
            let mut first_err = None;
            for f in fetched {
                match f {
                    Ok(l) => {
                        size += l.size;
                        layers.push(l);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            let row = rows::ImageRow {
                id: id.clone(),
                config: config.clone(),
                layers: res.diff_ids.clone(),
                size,
                created,
            };
            image::commit_pulled(
                inst,
                store,
                layers,
                &row,
                tag.as_deref(),
                Some((&repo, &res.digest)),
            )
        })?;
        Ok(Pulled {
            id,
            reference: r.to_string(),
            digest: res.digest,
            up_to_date,
        })
    }

    /// Fetches the layers at `todo` (indexes into the manifest), at most
    /// PARALLEL_LAYERS at once; after a failure no new layer is started.
    fn fetch_layers(
        &self,
        inst: &Instance,
        res: &Resolved,
        todo: &[usize],
        opts: &PullOptions,
    ) -> Vec<Result<StoredLayer>> {
        let queue = Mutex::new(todo.iter().copied());
        let failed = AtomicBool::new(false);
        let out = Mutex::new(vec![]);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_LAYERS.min(todo.len()) {
                s.spawn(|| loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(i) = next else { return };
                    let r = self.fetch_layer(
                        inst,
                        &res.manifest.layers[i],
                        &res.diff_ids[i],
                        res.compressions[i],
                        opts,
                    );
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut o) = out.lock() {
                        o.push(r);
                    }
                });
            }
        });
        out.into_inner().unwrap_or_default()
    }

    fn fetch_layer(
        &self,
        inst: &Instance,
        d: &Descriptor,
        diff_id: &str,
        c: Compression,
        opts: &PullOptions,
    ) -> Result<StoredLayer> {
        let url = self
            .client
            .url(&format!("/v2/{}/blobs/{}", self.repository, d.digest));
        let resp = self
            .client
            .send(&self.scope, &|agent, auth| {
                let mut r = agent.get(&url);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            })
            .map_err(reg)?;
        if !resp.status().is_success() {
            return Err(reg(client::status_error(
                &self.client.host,
                resp,
                &format!("layer {}", d.digest),
            )));
        }
        emit(
            opts,
            Event::LayerStart {
                digest: d.digest.clone(),
                size: d.size,
            },
        );
        let (verify, verdict) = Verify::new(
            resp.into_body().into_reader(),
            d.size,
            d.digest.clone(),
            opts.progress.clone(),
        );
        let result = match c {
            Compression::TarOrGzip => image::extract_new(inst, verify, Some(diff_id), None),
            Compression::Zstd => match Zstd::new(verify) {
                Ok(z) => image::extract_new(inst, z, Some(diff_id), None),
                Err(e) => Err(ImageError::Layer(ArchiveError::Corrupt(e.to_string()))),
            },
        };
        let found = verdict.lock().ok().and_then(|mut v| v.take());
        match (result, found) {
            (Ok(l), None) => {
                emit(
                    opts,
                    Event::LayerDone {
                        digest: d.digest.clone(),
                    },
                );
                Ok(l)
            }
            (Ok(_), Some(v)) => Err(other(v)),
            // The stream's own verdict says more than the extractor's echo of it.
            (Err(_), Some(v)) => Err(other(v)),
            (Err(ImageError::Layer(ArchiveError::Io { source, .. })), None) => {
                Err(ImageError::Io(format!(
                    "cannot store image layers in {}: {source}",
                    inst.layers_dir().display()
                )))
            }
            (Err(ImageError::Layer(e)), None) => Err(other(format!("layer {}: {e}", d.digest))),
            (Err(e), None) => Err(e),
        }
    }
}

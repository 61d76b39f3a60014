//! Manifests of the distribution API, as plain data: OCI image index and
//! Docker manifest list (with platform selection), OCI and Docker schema-2
//! image manifests, and what each layer's media type means for us. Pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Everything a manifest GET may answer with, most specific first.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest or index we read (the distribution spec's advice).
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config we read.
pub(crate) const MAX_CONFIG: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// "linux/amd64", "linux/arm64/v8", "arm64" (linux implied).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [a] => ("linux", *a, None),
            [o, a] => (*o, *a, None),
            [o, a, v] => (*o, *a, Some(*v)),
            _ => return Err(format!("invalid platform {s:?} (want OS/ARCH[/VARIANT])")),
        };
        if [os, arch].iter().any(|p| p.is_empty()) || variant == Some("") {
            return Err(format!("invalid platform {s:?} (want OS/ARCH[/VARIANT])"));
        }
        Ok(Platform {
            os: os.to_string(),
            architecture: normalize_arch(arch).to_string(),
            variant: variant.map(str::to_string),
        })
    }

    /// The platform this binary was built for.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            a => a,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && normalize_arch(&self.architecture) == normalize_arch(&other.architecture)
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A parsed manifest GET answer.
#[derive(Debug, Clone)]
pub enum Fetched {
    Index(Index),
    Image(Manifest),
}

/// Parses a manifest body by the media type the registry sent (or the
/// document's own `mediaType` when the header is vague).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Fetched, String> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let mt = match ct {
        OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST => ct.to_string(),
        _ => match (&probe.media_type, &probe.manifests) {
            (Some(m), _) => m.clone(),
            (None, Some(_)) => OCI_INDEX.to_string(),
            (None, None) if probe.schema_version == Some(2) => OCI_MANIFEST.to_string(),
            _ => ct.to_string(),
        },
    };
    match mt.as_str() {
        OCI_INDEX | DOCKER_LIST => serde_json::from_slice(body)
            .map(Fetched::Index)
            .map_err(|e| format!("bad image index: {e}")),
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest =
                serde_json::from_slice(body).map_err(|e| format!("bad image manifest: {e}"))?;
            if m.schema_version.is_some_and(|v| v != 2) {
                return Err("unsupported manifest schema version".into());
            }
            Ok(Fetched::Image(m))
        }
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => {
            Err("unsupported manifest: Docker schema 1 (deprecated) is not supported".into())
        }
        other => Err(format!("unsupported manifest media type {other:?}")),
    }
}

/// The manifest of `want` in an index; the error names the platforms there are.
pub(crate) fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
) -> Result<&'a Descriptor, String> {
    let images = index
        .manifests
        .iter()
        .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST);
    // Attestations and other unknown entries carry "unknown/unknown".
    let found = images
        .clone()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)));
    if let Some(d) = found {
        return Ok(d);
    }
    let have: Vec<String> = images
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(Platform::to_string)
        .collect();
    Err(format!(
        "no image for platform {want} in the manifest list (it has: {})",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    ))
}

/// How a layer blob is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar, or gzip (told apart by the extractor from the magic).
    TarOrGzip,
    Zstd,
}

/// What a layer's media type means for a pull.
pub(crate) fn layer_compression(d: &Descriptor) -> Result<Compression, String> {
    let mt = d.media_type.as_str();
    if mt.contains("foreign") || mt.contains("nondistributable") || d.urls.is_some() {
        return Err(format!(
            "layer {} is foreign (non-distributable, {mt}): refusing to fetch it from elsewhere",
            d.digest
        ));
    }
    match mt {
        OCI_LAYER_TAR | OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | "" => Ok(Compression::TarOrGzip),
        OCI_LAYER_ZSTD => Ok(Compression::Zstd),
        other => Err(format!("unsupported layer media type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(mt: &str, platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: mt.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: platform.map(|(o, a, v)| Platform {
                os: o.into(),
                architecture: a.into(),
                variant: v.map(Into::into),
            }),
            urls: None,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("linux/").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(Platform::parse("linux/arm64").unwrap().matches(&p));
        assert!(!Platform::parse("linux/arm/v7")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn the_host_platform_is_picked_from_an_index() {
        let idx = Index {
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                desc(OCI_MANIFEST, Some(("unknown", "unknown", None))),
                desc(OCI_MANIFEST, Some(("linux", "arm64", Some("v8")))),
                desc(OCI_MANIFEST, Some(("linux", "amd64", None))),
            ],
        };
        let amd = select_platform(&idx, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(amd.platform.as_ref().unwrap().architecture, "amd64");
        let arm = select_platform(&idx, &Platform::parse("linux/arm64").unwrap()).unwrap();
        assert_eq!(
            arm.platform.as_ref().unwrap().variant.as_deref(),
            Some("v8")
        );
        let e = select_platform(&idx, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            e,
            "no image for platform linux/s390x in the manifest list (it has: linux/arm64/v8, linux/amd64)"
        );
    }

    #[test]
    fn manifests_parse_by_media_type() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"sha256:{z}","size":3}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"sha256:{z}","size":9}}]}}"#,
            z = "0".repeat(64)
        );
        match parse(
            "application/vnd.docker.distribution.manifest.v2+json",
            m.as_bytes(),
        )
        .unwrap()
        {
            Fetched::Image(m) => assert_eq!(m.layers[0].size, 9),
            other => panic!("{other:?}"),
        }
        // A vague Content-Type: the document says what it is.
        assert!(matches!(
            parse("application/octet-stream", m.as_bytes()).unwrap(),
            Fetched::Image(_)
        ));
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse("", i.as_bytes()).unwrap(),
            Fetched::Index(_)
        ));
        let e = parse(
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            b"{}",
        )
        .unwrap_err();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse("text/html", b"{\"mediaType\":\"text/html\"}").unwrap_err();
        assert!(e.contains("unsupported manifest media type"), "{e}");
        assert!(parse(OCI_MANIFEST, b"<html>")
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_compression(&desc(DOCKER_LAYER_GZIP, None)).unwrap(),
            Compression::TarOrGzip
        );
        assert_eq!(
            layer_compression(&desc(OCI_LAYER_ZSTD, None)).unwrap(),
            Compression::Zstd
        );
        let e = layer_compression(&desc(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            None,
        ))
        .unwrap_err();
        assert!(e.contains("foreign"), "{e}");
        let e = layer_compression(&desc(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            None,
        ))
        .unwrap_err();
        assert!(e.contains("foreign"), "{e}");
        let e = layer_compression(&desc("application/x-bogus", None)).unwrap_err();
        assert!(e.contains("unsupported layer media type"), "{e}");
    }
}

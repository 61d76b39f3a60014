//! Registry credentials and challenges: Docker's `config.json` (`auths`,
//! shared with Docker so a Docker user's login works unchanged) and the
//! `WWW-Authenticate` challenge of the distribution API (Basic, or Bearer
//! with a token realm). Parsing is pure; the file effects are small.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A user name and password (or identity token as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// What a 401 answer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="https://auth",service="reg",scope="repository:a:pull"`.
pub(crate) fn parse_challenge(header: &str) -> Result<Challenge, String> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = params
                .get("realm")
                .cloned()
                .ok_or_else(|| "the registry's Bearer challenge has no realm".to_string())?;
            Ok(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        other => Err(format!("unsupported registry auth scheme {other:?}")),
    }
}

/// `k="v",k2=v2` with quoted values that may hold commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.insert(key, value);
    }
    out
}

/// Where Docker keeps its client config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker").join("config.json")
}

/// The `auths` key Docker uses for a registry host.
pub(crate) fn auth_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

/// Reduces an `auths` key ("https://host/v1/", "host") to its host.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

/// The credentials stored for `registry` in a config.json document.
pub(crate) fn find_credentials(
    doc: &serde_json::Value,
    registry: &str,
) -> Result<Option<Credentials>, String> {
    let want = key_host(registry);
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (k, v) in auths {
        if key_host(k) != want {
            continue;
        }
        if let (Some(u), Some(p)) = (
            v.get("username").and_then(|x| x.as_str()),
            v.get("password").and_then(|x| x.as_str()),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        let Some(auth) = v.get("auth").and_then(|x| x.as_str()) else {
            continue;
        };
        let raw = B64
            .decode(auth.trim())
            .map_err(|_| format!("the stored credentials for {k} are not valid base64"))?;
        let s = String::from_utf8(raw)
            .map_err(|_| format!("the stored credentials for {k} are not UTF-8"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| format!("the stored credentials for {k} have no ':'"))?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

/// Sets (or with `None` removes) the entry for `registry`, keeping every
/// other part of the document. Returns whether an entry was removed.
pub fn set_credentials(
    doc: &mut serde_json::Value,
    registry: &str,
    creds: Option<&Credentials>,
) -> bool {
    if !doc.is_object() {
        *doc = serde_json::json!({});
    }
    let Some(obj) = doc.as_object_mut() else {
        return false;
    };
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let Some(auths) = auths.as_object_mut() else {
        return false;
    };
    let want = key_host(registry).to_string();
    let before = auths.len();
    auths.retain(|k, _| key_host(k) != want);
    let removed = auths.len() != before;
    if let Some(c) = creds {
        let token = B64.encode(format!("{}:{}", c.username, c.password));
        auths.insert(auth_key(registry), serde_json::json!({ "auth": token }));
    }
    removed
}

/// Reads config.json; a missing file is an empty document.
pub fn read_docker_config(path: &Path) -> Result<serde_json::Value, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes config.json 0600 through a temp file and a rename, so a crash
/// never leaves a torn file and no other user ever reads the secret.
pub fn write_docker_config(path: &Path, doc: &serde_json::Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let text = serde_json::to_string_pretty(doc).map_err(std::io::Error::other)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// The credentials for `registry` from Docker's config file, if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, String> {
    let doc = read_docker_config(&docker_config_path())?;
    find_credentials(&doc, registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }
        );
        let c = parse_challenge("bearer realm=http://127.0.0.1:9/t, service=x").unwrap();
        assert!(
            matches!(c, Challenge::Bearer { ref realm, .. } if realm == "http://127.0.0.1:9/t")
        );
        assert!(parse_challenge("Bearer service=\"x\"").is_err());
        assert!(parse_challenge("Digest realm=\"x\"").is_err());
    }

    #[test]
    fn docker_config_round_trips_and_keeps_other_fields() {
        let mut doc = serde_json::json!({
            "auths": { "https://index.docker.io/v1/": { "auth": B64.encode("hub:pw") } },
            "credHelpers": { "gcr.io": "gcloud" }
        });
        let hub = find_credentials(&doc, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "pw")
        );
        assert_eq!(find_credentials(&doc, "quay.io").unwrap(), None);
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        assert!(!set_credentials(&mut doc, "127.0.0.1:5000", Some(&c)));
        assert_eq!(
            find_credentials(&doc, "127.0.0.1:5000").unwrap(),
            Some(c.clone())
        );
        assert_eq!(doc["credHelpers"]["gcr.io"], "gcloud");
        assert!(set_credentials(&mut doc, "127.0.0.1:5000", None));
        assert_eq!(find_credentials(&doc, "127.0.0.1:5000").unwrap(), None);
        assert!(!set_credentials(&mut doc, "127.0.0.1:5000", None));
        // A key written as a URL still matches the bare host.
        let doc = serde_json::json!({"auths": {"https://h:1/v2/": {"auth": B64.encode("a:b")}}});
        assert!(find_credentials(&doc, "h:1").unwrap().is_some());
        let bad = serde_json::json!({"auths": {"h": {"auth": "!!"}}});
        assert!(find_credentials(&bad, "h").is_err());
    }

    #[test]
    fn written_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/config.json");
        write_docker_config(&p, &serde_json::json!({"auths": {}})).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_docker_config(&p).unwrap()["auths"],
            serde_json::json!({})
        );
        assert_eq!(
            read_docker_config(&d.path().join("none")).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn basic_header_is_base64() {
        let c = Credentials {
            username: "a".into(),
            password: "b".into(),
        };
        assert_eq!(c.basic_header(), "Basic YTpi");
        let secret = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}

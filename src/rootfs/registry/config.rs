//! The registries configuration: which hosts serve a reference (mirrors
//! first, then the registry itself) and which are reached over plain HTTP.
//! Podman's `registries.conf` v2 (TOML) is the model:
//!
//! ```toml
//! [[registry]]
//! prefix = "docker.io"            # optional, defaults to location
//! location = "docker.io"
//! insecure = false                # plain HTTP
//! blocked = false
//! [[registry.mirror]]
//! location = "127.0.0.1:5000/hub"
//! insecure = true
//! ```
//!
//! Read from `/etc/minirt/registries.conf` (env `MINIRT_REGISTRIES_CONF`);
//! a missing file means no mirrors and every registry over HTTPS.

use super::reference::{Reference, DOCKER_HUB, DOCKER_HUB_API};
use serde::Deserialize;
use std::path::PathBuf;

pub const DEFAULT_PATH: &str = "/etc/minirt/registries.conf";

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConf {
    #[serde(default, rename = "unqualified-search-registries")]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// One place to ask for a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// "host[:port]" to connect to.
    pub host: String,
    /// The repository path on that host.
    pub repository: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    pub mirror: bool,
}

impl RegistriesConf {
    pub fn parse(text: &str) -> Result<RegistriesConf, String> {
        let c: RegistriesConf = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(s) => {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })?;
        for r in &c.registry {
            let key = r.prefix.as_deref().or(r.location.as_deref());
            if key.is_none_or(str::is_empty) {
                return Err("a [[registry]] needs a prefix or a location".into());
            }
            for m in &r.mirror {
                if m.location.is_empty() {
                    return Err("a [[registry.mirror]] needs a location".into());
                }
            }
        }
        Ok(c)
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load() -> Result<RegistriesConf, String> {
        let path = config_path();
        match std::fs::read_to_string(&path) {
            Ok(t) => RegistriesConf::parse(&t).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConf::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The entry whose prefix matches `name` ("host/repo") best: the longest
    /// prefix that ends at a path boundary.
    fn entry_for(&self, name: &str) -> Option<(&RegistryEntry, &str)> {
        self.registry
            .iter()
            .filter_map(|r| {
                let prefix = r.prefix.as_deref().or(r.location.as_deref())?;
                let matches = name == prefix
                    || (name.starts_with(prefix) && name[prefix.len()..].starts_with('/'));
                matches.then_some((r, prefix))
            })
            .max_by_key(|(_, p)| p.len())
    }

    /// Whether a registry host is marked insecure (for `login`).
    pub fn host_insecure(&self, host: &str) -> bool {
        self.entry_for(host).is_some_and(|(r, _)| r.insecure)
    }

    /// Where to fetch `r` from, in order: the mirrors of its entry, then its
    /// location. A blocked registry is an error.
    pub fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>, String> {
        let name = format!("{}/{}", r.registry, r.repository);
        let Some((entry, prefix)) = self.entry_for(&name) else {
            return Ok(vec![primary(&r.registry, &r.repository, false)]);
        };
        if entry.blocked {
            return Err(format!(
                "registry {} is blocked in {}",
                r.registry,
                config_path().display()
            ));
        }
        let rest = &name[prefix.len()..];
        let mut out = vec![];
        for m in &entry.mirror {
            out.push(Endpoint {
                mirror: true,
                ..split_location(&format!("{}{rest}", m.location), m.insecure)
            });
        }
        let location = entry.location.as_deref().unwrap_or(prefix);
        let main = split_location(&format!("{location}{rest}"), entry.insecure);
        out.push(primary(&main.host, &main.repository, main.insecure));
        Ok(out)
    }
}

fn primary(host: &str, repository: &str, insecure: bool) -> Endpoint {
    Endpoint {
        host: api_host(host).to_string(),
        repository: repository.to_string(),
        insecure,
        mirror: false,
    }
}

/// Docker Hub's API is not served from its name.
pub fn api_host(host: &str) -> &str {
    if host == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        host
    }
}

fn split_location(loc: &str, insecure: bool) -> Endpoint {
    let (host, repo) = loc.split_once('/').unwrap_or((loc, ""));
    Endpoint {
        host: host.to_string(),
        repository: repo.trim_matches('/').to_string(),
        insecure,
        mirror: false,
    }
}

pub(crate) fn config_path() -> PathBuf {
    std::env::var_os("MINIRT_REGISTRIES_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn no_config_means_the_registry_itself_over_https() {
        let c = RegistriesConf::default();
        let e = c.endpoints(&r("busybox")).unwrap();
        assert_eq!(
            e,
            vec![Endpoint {
                host: "registry-1.docker.io".into(),
                repository: "library/busybox".into(),
                insecure: false,
                mirror: false
            }]
        );
    }

    #[test]
    fn mirrors_come_first_with_their_own_flags() {
        let c = RegistriesConf::parse(
            r#"
            unqualified-search-registries = ["docker.io"]
            [[registry]]
            location = "docker.io"
            [[registry.mirror]]
            location = "127.0.0.1:5000/hub"
            insecure = true
            [[registry]]
            location = "localhost:5000"
            insecure = true
            "#,
        )
        .unwrap();
        let e = c.endpoints(&r("busybox:1")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert_eq!(e[0].repository, "hub/library/busybox");
        assert!(e[0].insecure && e[0].mirror);
        assert_eq!(e[1].host, "registry-1.docker.io");
        assert!(!e[1].insecure);
        let e = c.endpoints(&r("localhost:5000/app")).unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].insecure);
        assert!(c.host_insecure("localhost:5000"));
        assert!(!c.host_insecure("localhost:5001"));
        // "localhost:50001" does not match the prefix "localhost:5000".
        assert!(!c.endpoints(&r("localhost:50001/app")).unwrap()[0].insecure);
    }

    #[test]
    fn prefixes_rewrite_to_locations_and_the_longest_wins() {
        let c = RegistriesConf::parse(
            r#"
            [[registry]]
            prefix = "example.com/team"
            location = "mirror.test:443/t"
            [[registry]]
            prefix = "example.com"
            blocked = true
            "#,
        )
        .unwrap();
        let e = c.endpoints(&r("example.com/team/app")).unwrap();
        assert_eq!(e[0].host, "mirror.test:443");
        assert_eq!(e[0].repository, "t/app");
        let err = c.endpoints(&r("example.com/other/app")).unwrap_err();
        assert!(err.contains("blocked"), "{err}");
    }

    #[test]
    fn bad_files_say_where() {
        let e = RegistriesConf::parse("[[registry]]\nlocation = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("bogus"), "{e}");
        let e = RegistriesConf::parse("[[registry]]\ninsecure = true\n").unwrap_err();
        assert!(e.contains("prefix or a location"), "{e}");
        assert!(RegistriesConf::parse("registry = 3").is_err());
    }
}

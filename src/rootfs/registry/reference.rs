//! Image references by Docker's rules: `nginx` is
//! `docker.io/library/nginx:latest`, `user/app` is `docker.io/user/app`,
//! `host:port/repo:tag`, and `name@sha256:<hex>` pins a manifest digest.
//! Pure parsing; no I/O.

use std::fmt;

/// The registry a name without a host part comes from.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's v2 API is served from.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A fully qualified reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// "docker.io", "localhost:5000", "quay.io".
    pub registry: String,
    /// "library/nginx", "user/app".
    pub repository: String,
    /// Absent only when a digest pins the reference without a tag.
    pub tag: Option<String>,
    /// "sha256:<64 hex>".
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference; `latest` is the default tag when neither a tag nor
    /// a digest is given.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("invalid reference format: {why} ({s:?})");
        if s.is_empty() {
            return Err(bad("empty image name"));
        }
        if s.len() > 512 {
            return Err(bad("reference too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|w| bad(&w))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("invalid tag"));
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let mut registry = DOCKER_HUB.to_string();
        if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
            let host = parts.remove(0);
            if !valid_host(host) {
                return Err(bad("invalid registry name"));
            }
            registry = match host {
                "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
                h => h.to_string(),
            };
        }
        for p in &parts {
            if p.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(bad("repository name must be lowercase"));
            }
            if !valid_component(p) {
                return Err(bad("invalid repository name"));
            }
        }
        if registry == DOCKER_HUB && parts.len() == 1 {
            parts.insert(0, "library");
        }
        let repository = parts.join("/");
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad("repository name must not be more than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The repository as the local store names it: Docker Hub's
    /// `library/` and host are left out ("nginx", "user/app",
    /// "localhost:5000/app").
    pub fn familiar_repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(r) if !r.contains('/') => r.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The local tag name ("nginx:latest"), when the reference has a tag.
    pub(crate) fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_repository()))
    }

    /// The tag or digest to ask the registry for.
    pub(crate) fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// "sha256:<64 lowercase hex>"; other algorithms are refused.
pub(crate) fn check_digest(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err("invalid digest".into());
    };
    if alg != "sha256" {
        return Err(format!("unsupported digest algorithm {alg:?}"));
    }
    let ok = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err("invalid digest".into());
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A path component: lowercase alphanumerics joined by single separators
/// (".", "_", "__" or any run of "-").
fn valid_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_len = match c {
            b'.' => 1,
            b'_' if b.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => b[i..].iter().take_while(|&&x| x == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        if !b.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
            return false;
        }
    }
    true
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn short_names_are_docker_hub_library() {
        let r = p("nginx");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.familiar_tagged().unwrap(), "nginx:latest");
    }

    #[test]
    fn user_repositories_and_hosts() {
        let r = p("user/app:1.2");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "user/app")
        );
        assert_eq!(r.familiar_tagged().unwrap(), "user/app:1.2");
        let r = p("localhost:5000/team/app:v1");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.familiar_tagged().unwrap(), "localhost:5000/team/app:v1");
        let r = p("127.0.0.1:5000/app");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.manifest_ref(), "latest");
        let r = p("localhost/app");
        assert_eq!(r.registry, "localhost");
        // A first component without "." or ":" is a namespace, not a host.
        assert_eq!(p("myhost/app").registry, "docker.io");
        assert_eq!(
            p("index.docker.io/library/busybox").familiar_repository(),
            "busybox"
        );
        assert_eq!(
            p("docker.io/library/busybox:1").familiar_tagged().unwrap(),
            "busybox:1"
        );
    }

    #[test]
    fn digests_pin_the_manifest() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.familiar_tagged(), None);
        let r = p(&format!("localhost:5000/a:v1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.to_string(), format!("localhost:5000/a:v1@{d}"));
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        for (s, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "invalid tag"),
            ("nginx:-x", "invalid tag"),
            ("a//b", "invalid repository"),
            ("a_-b", "invalid repository"),
            ("-a", "invalid repository"),
            ("a/b-", "invalid repository"),
            ("nginx@sha256:abc", "invalid digest"),
            ("nginx@md5:abcd", "unsupported digest"),
            ("exa mple.com/a", "invalid registry"),
            ("host:99999999/a", "invalid"),
        ] {
            let e = Reference::parse(s).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
            assert!(!e.contains('\n'));
        }
        assert!(Reference::parse(&format!("a/{}", "b".repeat(300))).is_err());
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a1", "0"] {
            assert!(valid_component(ok), "{ok}");
        }
        for bad in ["a...b", "a___b", "a.-b", "_a", "a_", "a:b"] {
            assert!(!valid_component(bad), "{bad}");
        }
    }
}

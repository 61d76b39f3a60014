//! Image references as the local store names them: Docker's normalisation,
//! tags, and id prefixes.

use super::*;

/// Docker's normalisation: "busybox" -> "busybox:latest",
/// "docker.io/library/busybox:1" -> "busybox:1", "localhost:5000/x" -> "localhost:5000/x:latest".
pub(crate) fn normalize_reference(reference: &str) -> Result<String> {
    let bad = |why: &str| ImageError::InvalidReference(format!("{why} ({reference:?})"));
    if reference.is_empty() {
        return Err(bad("empty image name"));
    }
    if reference.contains('@') {
        return Err(bad("digest references are not supported; use the image id"));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !tag.starts_with(['.', '-']);
    if !tag_ok {
        return Err(bad("invalid tag"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let mut domain = None;
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        domain = Some(parts.remove(0));
    }
    if matches!(
        domain,
        Some("docker.io" | "index.docker.io" | "registry-1.docker.io")
    ) {
        domain = None;
    }
    if domain.is_none() && parts.len() == 2 && parts[0] == "library" {
        parts.remove(0);
    }
    if let Some(d) = domain {
        if !d
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c))
        {
            return Err(bad("invalid registry name"));
        }
    }
    for p in &parts {
        if p.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        let ok = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad("invalid repository name"));
        }
    }
    let path = parts.join("/");
    Ok(match domain {
        Some(d) => format!("{d}/{path}:{tag}"),
        None => format!("{path}:{tag}"),
    })
}

/// Splits a normalised "repo:tag" at the tag's colon.
pub(crate) fn split_tag(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "latest"),
    }
}

/// An image id or id prefix, with or without "sha256:": lowercase hex.
pub(super) fn id_prefix(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let ok = !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(hex)
}

pub(super) fn strip_sha(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

pub(super) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

//! Pure pieces of Docker's list output: `ps --filter` parsing and matching,
//! Docker's time and size words, `logs --tail` cutting.

use minirt::store::containers::Status;
use std::collections::BTreeMap;

/// One container as `ps --filter` sees it.
pub struct PsFacts<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// As the user named it, and the image id (hex).
    pub image: &'a str,
    pub image_id: &'a str,
    /// Docker's State word.
    pub state: Status,
    pub exit_code: i32,
    /// (name, id) of each network.
    pub networks: Vec<(String, String)>,
    pub labels: &'a BTreeMap<String, String>,
    /// State.Health.Status: starting, healthy, unhealthy, or none (no check).
    pub health: &'a str,
}

/// `--filter KEY=VALUE` values: the same key ORs, different keys AND.
#[derive(Debug, Default)]
pub struct PsFilter {
    by: BTreeMap<String, Vec<String>>,
}

const KEYS: &[&str] = &[
    "name", "id", "label", "status", "network", "ancestor", "exited", "health",
];

/// Why a filter was refused, with the exit code Docker gives: 125 for a
/// malformed flag (the CLI's check), 1 for an unknown key or value (the
/// daemon's).
#[derive(Debug, PartialEq)]
pub struct FilterError {
    pub code: i32,
    pub message: String,
}

impl PsFilter {
    pub fn parse(specs: &[String]) -> Result<PsFilter, FilterError> {
        let mut f = PsFilter::default();
        for s in specs {
            let Some((k, v)) = s.split_once('=') else {
                return Err(FilterError {
                    code: 125,
                    message: format!("bad format of filter (expected name=value): {s}"),
                });
            };
            let k = k.trim().to_ascii_lowercase();
            if !KEYS.contains(&k.as_str()) {
                return Err(FilterError {
                    code: 1,
                    message: format!("invalid filter '{k}'"),
                });
            }
            let daemon_err = |m: String| FilterError {
                code: 1,
                message: m,
            };
            if k == "status" && v.parse::<Status>().is_err() {
                return Err(daemon_err(format!("invalid filter 'status={v}'")));
            }
            if k == "health" && !["starting", "healthy", "unhealthy", "none"].contains(&v) {
                return Err(daemon_err(format!(
                    "Unrecognised filter value for health: {v}"
                )));
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                return Err(daemon_err(format!("invalid filter 'exited={v}'")));
            }
            f.by.entry(k).or_default().push(v.to_string());
        }
        Ok(f)
    }

    /// True when a status filter names a state `ps` hides without `-a`.
    pub fn wants_stopped(&self) -> bool {
        self.by
            .get("status")
            .is_some_and(|v| v.iter().any(|s| s != Status::Running.as_str()))
            || self.by.contains_key("exited")
    }

    /// True when a filter on `key` was given (`ps` reads what only some
    /// filters need only then).
    pub fn uses(&self, key: &str) -> bool {
        self.by.contains_key(key)
    }

    pub fn matches(&self, c: &PsFacts) -> bool {
        self.by.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                // Docker matches names as a regular expression; a substring
                // is what nearly every use of it amounts to.
                "name" => c.name.contains(v.trim_start_matches('/')),
                "id" => c.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => c.labels.get(lk).is_some_and(|x| x == lv),
                    None => c.labels.contains_key(v.as_str()),
                },
                "status" => c.state.as_str() == v,
                "network" => c
                    .networks
                    .iter()
                    .any(|(name, id)| name == v || id.starts_with(v.as_str())),
                "ancestor" => ancestor_matches(v, c.image, c.image_id),
                "exited" => c.state == Status::Exited && v.parse::<i32>() == Ok(c.exit_code),
                "health" => c.health == v,
                _ => false,
            })
        })
    }
}

/// `ancestor=busybox`, `busybox:latest`, or an image id (prefix, with or
/// without `sha256:`).
fn ancestor_matches(v: &str, image: &str, image_id: &str) -> bool {
    let with_tag = |s: &str| {
        if s.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    let id = v.strip_prefix("sha256:").unwrap_or(v);
    with_tag(v) == with_tag(image)
        || (!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) && image_id.starts_with(id))
}

/// Docker's `CreatedAt` of `ps`: "2026-12-02 07:31:33 +0000 UTC" from an
/// RFC 3339 UTC time.
pub fn docker_time(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.to_string();
    };
    let clock: String = rest.chars().take(8).collect();
    format!("{date} {clock} +0000 UTC")
}

/// Docker's human sizes (decimal units, 3 significant digits): "0B", "12.3kB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    // Go's %.3g: 3 significant digits, no trailing zeros.
    let s = format!(
        "{:.*}",
        2usize.saturating_sub(v.log10().floor().max(0.0) as usize),
        v
    );
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// The last `n` lines of `text` (a final line without a newline counts).
/// (`logs` tails over records now: container/logs.rs.)
#[cfg(test)]
pub fn tail_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &text[text.len()..];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// `--tail`: "all" or a count.
pub fn parse_tail(s: &str) -> Result<Option<usize>, String> {
    match s {
        "all" | "-1" => Ok(None),
        n => n
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("invalid value for --tail: {s:?} (a number or \"all\")")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(labels: &'a BTreeMap<String, String>) -> PsFacts<'a> {
        PsFacts {
            id: "0123456789abcdef",
            name: "web-1",
            image: "busybox",
            image_id: "feedbeef00",
            state: Status::Exited,
            exit_code: 3,
            networks: vec![("testbr".into(), "aaaa1111".into())],
            labels,
            health: "none",
        }
    }

    fn f(specs: &[&str]) -> PsFilter {
        PsFilter::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn filters_match_like_docker() {
        let mut labels = BTreeMap::new();
        labels.insert("tier".to_string(), "web".to_string());
        let c = facts(&labels);
        for yes in [
            vec!["name=web"],
            vec!["name=/web-1"],
            vec!["id=0123"],
            vec!["status=exited"],
            vec!["status=running", "status=exited"],
            vec!["network=testbr"],
            vec!["network=aaaa"],
            vec!["ancestor=busybox"],
            vec!["ancestor=busybox:latest"],
            vec!["ancestor=sha256:feedbeef"],
            vec!["exited=3"],
            vec!["label=tier"],
            vec!["label=tier=web"],
            vec!["name=web", "status=exited", "exited=3"],
        ] {
            assert!(f(&yes).matches(&c), "{yes:?} should match");
        }
        for no in [
            vec!["name=db"],
            vec!["id=1"],
            vec!["status=running"],
            vec!["network=other"],
            vec!["ancestor=alpine"],
            vec!["exited=0"],
            vec!["label=tier=db"],
            vec!["label=other"],
            vec!["name=web", "status=running"],
        ] {
            assert!(!f(&no).matches(&c), "{no:?} should not match");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_dockers_codes() {
        let p = |s: &str| PsFilter::parse(&[s.to_string()]).unwrap_err();
        assert_eq!(p("name").code, 125);
        assert_eq!(p("colour=red").code, 1);
        assert_eq!(p("colour=red").message, "invalid filter 'colour'");
        assert_eq!(p("status=sleeping").code, 1);
        assert_eq!(p("exited=x").code, 1);
        assert!(f(&["status=exited"]).wants_stopped());
        assert!(!f(&["status=running"]).wants_stopped());
    }

    #[test]
    fn times_sizes_and_tails() {
        assert_eq!(
            docker_time("2026-12-02T07:31:33.123456789Z"),
            "2026-12-02 07:31:33 +0000 UTC"
        );
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(12_300_000_000), "12.3GB");
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail_lines(b"a\nb\n", 0), b"");
        assert_eq!(parse_tail("all"), Ok(None));
        assert_eq!(parse_tail("3"), Ok(Some(3)));
        assert!(parse_tail("x").is_err());
    }

    #[test]
    fn health_filters_match_the_checks_status() {
        let labels = BTreeMap::new();
        let mut c = facts(&labels);
        assert!(f(&["health=none"]).matches(&c));
        assert!(!f(&["health=healthy"]).matches(&c));
        c.health = "unhealthy";
        assert!(f(&["health=healthy", "health=unhealthy"]).matches(&c));
        let e = PsFilter::parse(&["health=sick".to_string()]).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.message, "Unrecognised filter value for health: sick");
    }
}

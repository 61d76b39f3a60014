//! `--ulimit NAME=SOFT[:HARD]`: Docker's resource limit names and values,
//! parsed into the OCI spec's `process.rlimits` (pure).

use oci_spec::runtime::PosixRlimit;
use serde::{Deserialize, Serialize};

/// The names Docker accepts (`RLIMIT_` + upper case in the OCI spec).
const NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

fn value(s: &str) -> Result<u64, String> {
    match s.trim() {
        "-1" | "unlimited" => Ok(u64::MAX),
        v => v
            .parse()
            .map_err(|_| format!("invalid ulimit value {v:?}: a number or -1")),
    }
}

/// Reads `nofile=1024:2048` (a missing hard limit equals the soft one).
pub fn parse(s: &str) -> Result<Ulimit, String> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => (value(vals)?, value(vals)?),
    };
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// The OCI spec's entry for `u`.
pub(crate) fn to_oci(u: &Ulimit) -> Result<PosixRlimit, String> {
    serde_json::from_value(serde_json::json!({
        "type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()),
        "soft": u.soft,
        "hard": u.hard,
    }))
    .map_err(|e| format!("ulimit {}: {e}", u.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_ulimit_values_parse() {
        assert_eq!(
            parse("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(parse("nproc=64").unwrap().hard, 64);
        assert_eq!(parse("core=-1").unwrap().soft, u64::MAX);
        assert!(parse("nofile=10:5").is_err());
        assert!(parse("bogus=1").is_err());
        assert!(parse("nofile").is_err());
        assert!(parse("nofile=x").is_err());
        let o = to_oci(&parse("nofile=10:20").unwrap()).unwrap();
        assert_eq!(o.soft(), 10);
        assert_eq!(o.hard(), 20);
    }
}

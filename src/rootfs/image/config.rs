//! The image config blob: what a container runs with, the layer diff ids,
//! and the creation time.

use super::*;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    created: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    healthcheck: Option<crate::container::health::HealthConfig>,
}

#[derive(Deserialize)]
pub(super) struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// What the store needs from an image config blob.
#[derive(Debug, PartialEq)]
pub(crate) struct ParsedConfig {
    pub config: ImageConfig,
    /// Layer diff ids (hex), bottom first.
    pub diff_ids: Vec<String>,
    /// `created`, in nanoseconds since the epoch, when present and valid.
    pub created: Option<i64>,
}

pub(crate) fn parse_config(raw: &[u8]) -> std::result::Result<ParsedConfig, String> {
    let f: ConfigFile =
        serde_json::from_slice(raw).map_err(|e| format!("bad image config: {e}"))?;
    let rc = f.config.unwrap_or_default();
    let config = ImageConfig {
        env: rc.env.unwrap_or_default(),
        entrypoint: rc.entrypoint,
        cmd: rc.cmd,
        working_dir: rc.working_dir.unwrap_or_default(),
        user: rc.user.unwrap_or_default(),
        stop_signal: rc.stop_signal.filter(|s| !s.is_empty()),
        healthcheck: rc.healthcheck,
    };
    let mut diff_ids = vec![];
    for d in f.rootfs.map(|r| r.diff_ids).unwrap_or_default() {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("unsupported layer digest {d:?}"))?;
        if !is_hex64(hex) {
            return Err(format!("bad layer digest {d:?}"));
        }
        diff_ids.push(hex.to_string());
    }
    Ok(ParsedConfig {
        config,
        diff_ids,
        created: f.created.as_deref().and_then(parse_rfc3339),
    })
}

/// "2024-01-02T03:04:05.123Z" / "+01:00" offsets -> nanoseconds since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n.min(9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = crate::util::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

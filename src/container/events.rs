//! The event log `minirt events` reads: one row per thing that happened to a
//! container, image, network or volume, in Docker's vocabulary (`start`,
//! `die` with its `exitCode`, `health_status: healthy` ...). Written by the
//! command that made the change, in its transaction where it has one, with a
//! single INSERT; a failed write is a warning, never a failed command. The
//! table keeps the last [`KEEP_ROWS`] rows and [`KEEP_NS`] of time: every
//! [`PRUNE_EVERY`]th insert deletes what is older (a range delete on the
//! rowid plus a scan of at most a few thousand rows).
//!
//! The pure parts (filters, Docker's time arguments, the output shapes) are
//! here too, for the CLI and its tests.

use crate::store::Store;
use crate::Instance;
use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Rows kept.
pub const KEEP_ROWS: i64 = 10_000;
/// Age kept: one week.
pub const KEEP_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;
/// Prune on every this many inserts.
pub const PRUNE_EVERY: i64 = 256;

/// One event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub time_ns: i64,
    /// container | image | network | volume
    pub kind: String,
    pub action: String,
    pub actor: String,
    pub attributes: BTreeMap<String, String>,
}

fn attrs_json(attrs: &[(&str, &str)]) -> String {
    let m: Map<String, Value> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(m).to_string()
}

/// Rows kept: `MINIRT_EVENTS_KEEP` when set to a positive number, else
/// [`KEEP_ROWS`] (the soak test keeps a few dozen so that it measures the
/// log at its bound rather than filling up).
pub fn keep_rows() -> i64 {
    std::env::var("MINIRT_EVENTS_KEEP")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(KEEP_ROWS)
}

/// How often a log of `keep` rows is pruned: every [`PRUNE_EVERY`]th
/// insert, more often for a small log (it overshoots by a quarter at most).
fn prune_every(keep: i64) -> i64 {
    (keep / 4).clamp(1, PRUNE_EVERY)
}

fn after_insert(c: &Connection) {
    let seq = c.last_insert_rowid();
    let keep = keep_rows();
    if seq % prune_every(keep) == 0 {
        if let Err(e) = prune_keeping(c, seq, crate::util::now_nanos(), keep) {
            tracing::warn!("pruning the event log: {e}");
        }
    }
}

/// Deletes rows beyond the newest [`KEEP_ROWS`] (counted from `seq`) and
/// those older than [`KEEP_NS`].
pub fn prune(c: &Connection, seq: i64, now: i64) -> rusqlite::Result<usize> {
    prune_keeping(c, seq, now, KEEP_ROWS)
}

/// [`prune`] keeping `keep` rows.
fn prune_keeping(c: &Connection, seq: i64, now: i64, keep: i64) -> rusqlite::Result<usize> {
    c.execute(
        "DELETE FROM events WHERE seq <= ?1 OR time_ns < ?2",
        params![seq - keep, now - KEEP_NS],
    )
}

/// Records an event of any type (inside the caller's transaction when `c`
/// is one). Never fails the caller: a failure is logged.
pub fn record(c: &Connection, kind: &str, action: &str, actor: &str, attrs: &[(&str, &str)]) {
    let res = c.prepare_cached(
        "INSERT INTO events (time_ns, type, action, actor, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
    ).and_then(|mut st| st.execute(params![
            crate::util::now_nanos(),
            kind,
            action,
            actor,
            attrs_json(attrs)
        ]));
    match res {
        Ok(_) => after_insert(c),
        Err(e) => tracing::warn!("recording the event {kind} {action}: {e}"),
    }
}

/// Records a container event; its attributes are the container's labels,
/// `image` and `name` (read from its row by the same statement), then
/// `extra`. Call before the row is deleted.
pub fn container(c: &Connection, id: &str, action: &str, extra: &[(&str, &str)]) {
    let res = c
        .prepare_cached(
            "INSERT INTO events (time_ns, type, action, actor, attributes)
         SELECT ?1, 'container', ?2, id,
                json_patch(json_patch(COALESCE(json_extract(config, '$.labels'), '{}'),
                                      json_object('image', image, 'name', name)), ?3)
         FROM containers WHERE id = ?4",
        )
        .and_then(|mut st| {
            st.execute(params![
                crate::util::now_nanos(),
                action,
                attrs_json(extra),
                id
            ])
        });
    match res {
        Ok(1) => after_insert(c),
        Ok(_) => {}
        Err(e) => tracing::warn!("recording the event container {action}: {e}"),
    }
}

/// [`container`] on a connection of its own (a command with no transaction
/// at hand).
pub fn container_now(inst: &Instance, id: &str, action: &str, extra: &[(&str, &str)]) {
    match Store::open(&inst.db_path()) {
        Ok(s) => container(s.conn(), id, action, extra),
        Err(e) => tracing::warn!("recording the event container {action}: {e}"),
    }
}

/// Several [`container`] events on a connection of their own, in one
/// commit (`exec` records its create and start together).
pub fn container_all_now(inst: &Instance, id: &str, events: &[(&str, &[(&str, &str)])]) {
    let res = Store::open(&inst.db_path()).and_then(|mut s| {
        s.write(|tx| -> crate::store::Result<()> {
            for (action, extra) in events {
                container(tx, id, action, extra);
            }
            Ok(())
        })
    });
    if let Err(e) = res {
        tracing::warn!("recording the events of container {id}: {e}");
    }
}

/// [`record`] on a connection of its own.
pub fn record_now(inst: &Instance, kind: &str, action: &str, actor: &str, attrs: &[(&str, &str)]) {
    match Store::open(&inst.db_path()) {
        Ok(s) => record(s.conn(), kind, action, actor, attrs),
        Err(e) => tracing::warn!("recording the event {kind} {action}: {e}"),
    }
}

/// The newest row's sequence number (0 for none): where following starts.
pub fn last_seq(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}

/// Events after `seq`, oldest first.
pub fn read_after(c: &Connection, seq: i64) -> rusqlite::Result<Vec<Event>> {
    let mut st = c.prepare_cached(
        "SELECT seq, time_ns, type, action, actor, attributes FROM events WHERE seq > ?1 ORDER BY seq",
    )?;
    let rows = st.query_map([seq], |r| {
        let attrs: String = r.get(5)?;
        Ok(Event {
            seq: r.get(0)?,
            time_ns: r.get(1)?,
            kind: r.get(2)?,
            action: r.get(3)?,
            actor: r.get(4)?,
            attributes: serde_json::from_str(&attrs).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

// ---------------------------------------------------------------- filters

/// The filter keys Docker's `events --filter` knows.
const KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// `--filter KEY=VALUE`, as Docker's daemon matches them: values of one
/// key are alternatives, different keys must all match.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventFilter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn parse(specs: &[String]) -> Result<EventFilter, String> {
        let mut f = EventFilter::default();
        for s in specs {
            let Some((k, v)) = s.split_once('=') else {
                return Err(format!("bad format of filter (expected name=value): {s}"));
            };
            let k = k.trim().to_ascii_lowercase();
            if !KEYS.contains(&k.as_str()) {
                return Err(format!("invalid filter '{k}'"));
            }
            if k == "type"
                && ![
                    "container",
                    "image",
                    "network",
                    "volume",
                    "daemon",
                    "plugin",
                    "service",
                    "node",
                    "secret",
                    "config",
                ]
                .contains(&v)
            {
                return Err(format!("invalid filter 'type={v}'"));
            }
            f.by_key.entry(k).or_default().push(v.to_string());
        }
        Ok(f)
    }

    fn values(&self, key: &str) -> Option<&[String]> {
        self.by_key.get(key).map(Vec::as_slice)
    }

    /// Any value equal to one of `sources` (true without the key).
    fn exact(&self, key: &str, sources: &[&str]) -> bool {
        self.values(key)
            .is_none_or(|vs| vs.iter().any(|v| sources.contains(&v.as_str())))
    }

    /// Any value equal to or a prefix of one of `sources`.
    fn fuzzy(&self, key: &str, sources: &[&str]) -> bool {
        self.values(key).is_none_or(|vs| {
            vs.iter().any(|v| {
                sources
                    .iter()
                    .any(|s| !s.is_empty() && s.starts_with(v.as_str()))
            })
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        let named = [e.actor.as_str(), name];
        let event_ok = match self.values("event") {
            // Docker: these three match "health_status: healthy" and such.
            Some(vs)
                if vs.iter().any(|v| {
                    ["health_status", "exec_create", "exec_start"].contains(&v.as_str())
                }) =>
            {
                self.fuzzy("event", &[&e.action])
            }
            _ => self.exact("event", &[&e.action]),
        };
        let image_name = if e.kind == "image" {
            name
        } else {
            e.attributes.get("image").map(String::as_str).unwrap_or("")
        };
        let image_ok = self.exact(
            "image",
            &[
                &e.actor,
                image_name,
                strip_tag(&e.actor),
                strip_tag(image_name),
            ],
        );
        let labels_ok = self.values("label").is_none_or(|vs| {
            vs.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => e.attributes.get(k).is_some_and(|a| a == val),
                None => e.attributes.contains_key(v.as_str()),
            })
        });
        event_ok
            && self.exact("type", &[&e.kind])
            && self.exact("scope", &["local"])
            && self.fuzzy("container", &named)
            && self.fuzzy("network", &named)
            && self.fuzzy("volume", &named)
            && self.fuzzy("daemon", &named)
            && ["plugin", "node", "service", "secret", "config"]
                .iter()
                .all(|k| self.values(k).is_none())
            && image_ok
            && labels_ok
    }
}

/// "busybox:latest" -> "busybox"; a registry's port stays.
fn strip_tag(r: &str) -> &str {
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

// ---------------------------------------------------------------- times

/// Docker's `--since`/`--until` value to ns since the epoch: a Go duration
/// ("10m": that long before `now`), Unix seconds ("1700000000.5"), or an
/// RFC 3339 date-time, date or date-time without seconds (UTC unless a
/// zone is given).
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let bad = || format!("failed to parse value as time or duration: \"{s}\"");
    if !s.contains(['-', ':']) {
        // As Docker: "0" is the epoch, not a zero duration.
        if let (false, Ok(d)) = (s == "0", super::health::parse_go_duration(s)) {
            return Ok(now - d);
        }
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
        return Ok(secs * 1_000_000_000 + nanos);
    }
    parse_rfc3339(s).ok_or_else(bad)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = match s.split_once(['T', 't', ' ']) {
        Some((d, r)) => (d, r),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // The zone: Z, +hh:mm or -hh:mm at the end of the time.
    let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, mi) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
        (t, sign * (num(h)? * 3600 + num(mi)? * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let h = parts
        .next()
        .filter(|p| !p.is_empty())
        .map_or(Some(0), num)?;
    let mi = parts.next().map_or(Some(0), num)?;
    let sec = parts.next().map_or(Some(0), num)?;
    if parts.next().is_some() || h > 23 || mi > 59 || sec > 60 || frac.len() > 9 {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        num(&format!("{frac:0<9}"))?
    };
    let days = crate::util::days_from_civil(y, m, day);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000_000 + nanos)
}

// ---------------------------------------------------------------- output

/// Docker's default line: `TIME TYPE ACTION ACTOR (k=v, ...)`.
pub fn line(e: &Event) -> String {
    let mut out = format!(
        "{} {} {} {}",
        crate::util::rfc3339(e.time_ns),
        e.kind,
        e.action,
        e.actor
    );
    if !e.attributes.is_empty() {
        let attrs: Vec<String> = e
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(" ({})", attrs.join(", ")));
    }
    out
}

/// Docker's JSON message (`--format json`, `{{json .}}`): the deprecated
/// `status`/`id`/`from` for containers and images, then the current shape.
pub fn json_doc(e: &Event) -> Value {
    let mut m = Map::new();
    if e.kind == "container" || e.kind == "image" {
        m.insert("status".into(), json!(e.action));
        m.insert("id".into(), json!(e.actor));
        if let Some(from) = e.attributes.get("image").filter(|_| e.kind == "container") {
            m.insert("from".into(), json!(from));
        }
    }
    m.insert("Type".into(), json!(e.kind));
    m.insert("Action".into(), json!(e.action));
    m.insert(
        "Actor".into(),
        json!({"ID": e.actor, "Attributes": e.attributes}),
    );
    m.insert("scope".into(), json!("local"));
    m.insert("time".into(), json!(e.time_ns.div_euclid(1_000_000_000)));
    m.insert("timeNano".into(), json!(e.time_ns));
    Value::Object(m)
}

/// What a Go template sees: the fields of Docker's Go struct by their Go
/// names (`{{.Status}}`, `{{.ID}}`, `{{.Actor.Attributes.name}}`).
pub fn template_doc(e: &Event) -> Value {
    let deprecated = e.kind == "container" || e.kind == "image";
    json!({
        "Status": if deprecated { e.action.as_str() } else { "" },
        "ID": if deprecated { e.actor.as_str() } else { "" },
        "From": if e.kind == "container" {
            e.attributes.get("image").map(String::as_str).unwrap_or("")
        } else { "" },
        "Type": e.kind,
        "Action": e.action,
        "Actor": {"ID": e.actor, "Attributes": e.attributes},
        "Scope": "local",
        "Time": e.time_ns.div_euclid(1_000_000_000),
        "TimeNano": e.time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, actor: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            time_ns: 1_796_225_831_123_456_789,
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn filter(specs: &[&str]) -> EventFilter {
        EventFilter::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_default_line_is_dockers() {
        let e = ev(
            "container",
            "start",
            "abc",
            &[("name", "web"), ("image", "busybox")],
        );
        assert_eq!(
            line(&e),
            "2026-12-02T15:37:11.123456789Z container start abc (image=busybox, name=web)"
        );
        assert_eq!(
            line(&ev("volume", "create", "v1", &[])),
            "2026-12-02T15:37:11.123456789Z volume create v1"
        );
    }

    #[test]
    fn json_has_the_deprecated_fields_for_containers_only() {
        let e = ev(
            "container",
            "die",
            "abc",
            &[("image", "busybox"), ("exitCode", "3")],
        );
        let j = json_doc(&e);
        assert_eq!(j["status"], "die");
        assert_eq!(j["id"], "abc");
        assert_eq!(j["from"], "busybox");
        assert_eq!(j["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(j["scope"], "local");
        assert_eq!(j["time"], 1_796_225_831i64);
        assert_eq!(j["timeNano"], 1_796_225_831_123_456_789i64);
        let n = json_doc(&ev("network", "create", "n1", &[("name", "net")]));
        assert!(n.get("status").is_none() && n.get("from").is_none());
        assert_eq!(template_doc(&e)["Actor"]["Attributes"]["exitCode"], "3");
    }

    #[test]
    fn filters_match_as_dockers_daemon() {
        let start = ev(
            "container",
            "start",
            "abc123",
            &[
                ("name", "web"),
                ("image", "busybox:latest"),
                ("tier", "front"),
            ],
        );
        let health = ev(
            "container",
            "health_status: healthy",
            "abc123",
            &[("name", "web")],
        );
        let net = ev(
            "network",
            "create",
            "n0",
            &[("name", "backend"), ("type", "bridge")],
        );
        assert!(filter(&["container=web"]).matches(&start));
        assert!(filter(&["container=abc"]).matches(&start));
        assert!(!filter(&["container=db"]).matches(&start));
        assert!(!filter(&["container=web"]).matches(&net));
        assert!(filter(&["container=db", "container=web"]).matches(&start));
        assert!(filter(&["event=start"]).matches(&start));
        assert!(!filter(&["event=star"]).matches(&start));
        assert!(filter(&["event=health_status"]).matches(&health));
        assert!(filter(&["type=network", "network=backend"]).matches(&net));
        assert!(!filter(&["type=network"]).matches(&start));
        assert!(filter(&["image=busybox"]).matches(&start));
        assert!(filter(&["image=busybox:latest"]).matches(&start));
        assert!(!filter(&["image=alpine"]).matches(&start));
        assert!(filter(&["label=tier"]).matches(&start));
        assert!(filter(&["label=tier=front"]).matches(&start));
        assert!(!filter(&["label=tier=back"]).matches(&start));
        assert!(!filter(&["label=tier", "label=other"]).matches(&start));
        assert!(filter(&[]).matches(&net));
    }

    #[test]
    fn bad_filters_are_one_line() {
        let p = |s: &str| EventFilter::parse(&[s.to_string()]).unwrap_err();
        assert_eq!(p("bogus=1"), "invalid filter 'bogus'");
        assert_eq!(p("type=car"), "invalid filter 'type=car'");
        assert!(p("container").starts_with("bad format of filter"));
    }

    #[test]
    fn strip_tag_keeps_a_registry_port() {
        assert_eq!(strip_tag("busybox:latest"), "busybox");
        assert_eq!(strip_tag("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(strip_tag("localhost:5000/app:1"), "localhost:5000/app");
    }

    #[test]
    fn times_parse_as_dockers() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000_000_000);
        assert_eq!(parse_time("0", now).unwrap(), 0);
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("1700000000.5", now).unwrap(),
            1_700_000_000_500_000_000
        );
        let t = 1_796_225_831_123_456_789;
        assert_eq!(
            parse_time("2026-12-02T15:37:11.123456789Z", now).unwrap(),
            t
        );
        assert_eq!(
            parse_time("2026-12-02T16:37:11.123456789+01:00", now).unwrap(),
            t
        );
        assert_eq!(
            parse_time("2026-12-02", now).unwrap(),
            t - (15 * 3600 + 37 * 60 + 11) * 1_000_000_000 - 123_456_789
        );
        assert_eq!(
            parse_time("2026-12-02T15:37", now).unwrap(),
            t - 11 * 1_000_000_000 - 123_456_789
        );
        assert_eq!(crate::util::rfc3339(t), "2026-12-02T15:37:11.123456789Z");
        for bad in [
            "yesterday",
            "2026-13-01",
            "12:00",
            "1.2.3",
            "2026-12-02T25:00Z",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_read_back_and_prune() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        record(c, "volume", "create", "v1", &[("driver", "local")]);
        record(c, "volume", "destroy", "v1", &[("driver", "local")]);
        let evs = read_after(c, 0).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].action, "destroy");
        assert_eq!(evs[0].attributes["driver"], "local");
        assert_eq!(read_after(c, evs[0].seq).unwrap().len(), 1);
        assert_eq!(last_seq(c).unwrap(), evs[1].seq);
        // Older than a week, or beyond the row count: gone.
        assert_eq!(
            prune(c, 0, crate::util::now_nanos() + KEEP_NS + 1).unwrap(),
            2
        );
        assert!(read_after(c, 0).unwrap().is_empty());
        record(c, "volume", "create", "v2", &[]);
        let seq = last_seq(c).unwrap();
        assert_eq!(prune(c, seq + KEEP_ROWS - 1, 0).unwrap(), 0);
        assert_eq!(prune(c, seq + KEEP_ROWS, 0).unwrap(), 1);
        assert_eq!(prune_every(KEEP_ROWS), PRUNE_EVERY);
        assert_eq!(prune_every(64), 16);
        assert_eq!(prune_every(2), 1);
    }

    #[test]
    fn container_events_carry_labels_image_and_name() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        c.execute(
            "INSERT INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO containers (id, name, image, image_id, command, config, status, created)
             VALUES ('cid', 'web', 'busybox', 'img', '[]', '{\"labels\":{\"tier\":\"front\",\"name\":\"x\"}}', 'created', 0)",
            [],
        )
        .unwrap();
        container(c, "cid", "die", &[("exitCode", "3")]);
        container(c, "nope", "die", &[]);
        let evs = read_after(c, 0).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(
            line(&evs[0]).split_once(' ').unwrap().1,
            "container die cid (exitCode=3, image=busybox, name=web, tier=front)"
        );
    }
}

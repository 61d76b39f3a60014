//! The cluster store client: etcd v3 through its JSON gateway (`/v3/...`,
//! grpc-gateway, served by every etcd member on its client port) over the
//! blocking HTTP client minirt already has (ureq). Why not the `etcd-client`
//! crate: minirt's code is synchronous; the gRPC stack (tonic, prost, hyper,
//! h2, tower) would be the largest dependency tree of the project for the
//! seven calls the overlay makes (range, txn, put, delete, lease grant,
//! keepalive, revoke, watch), each of which the gateway answers as one small
//! JSON POST (measured on this 2-CPU VM, one member on loopback, kept-alive
//! connection: range median 0.36 ms, a put txn median 0.9 ms, fsync
//! included; none of them is on a container's start path).
//!
//! Endpoints are tried in order; one that cannot be reached is skipped
//! (a member that is down), and the one that answered is tried first next
//! time. Every request counts in [`requests`] (the bench reads it through
//! `MINIRT_ETCD_REQUESTS_LOG`).

use super::OverlayError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// How many requests this process sent to the cluster store.
pub fn requests() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

/// Parses `etcd://H:P[,H:P...]` into the members' base URLs.
pub(crate) fn parse_store(s: &str) -> Result<Vec<String>, OverlayError> {
    let bad = || {
        OverlayError::Invalid(format!(
            "invalid cluster store {:?}: expected etcd://HOST:PORT[,HOST:PORT...]",
            crate::validate::escape_controls(s)
        ))
    };
    let rest = s.strip_prefix("etcd://").ok_or_else(bad)?;
    let mut out = vec![];
    for hp in rest.split(',') {
        let hp = hp.trim().trim_end_matches('/');
        let (h, p) = hp.rsplit_once(':').ok_or_else(bad)?;
        if h.is_empty()
            || p.parse::<u16>().is_err()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        {
            return Err(bad());
        }
        out.push(format!("http://{hp}"));
    }
    Ok(out)
}

/// One key and value as the store holds them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub lease: i64,
}

/// What one watch call saw.
#[derive(Debug, PartialEq)]
pub enum Watched {
    /// Something under the prefix changed (at this revision).
    Changed(i64),
    /// The revision asked for was compacted away: list again.
    Compacted,
    /// Nothing changed before the call's time was up.
    Quiet,
}

pub(crate) struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    /// The member that answered last.
    current: AtomicUsize,
    /// The store as the user wrote it (for messages).
    pub spec: String,
}

fn decode(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The end of a prefix range (the prefix with its last byte plus one).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    b64(&b)
}

fn kvs(v: &Value) -> Vec<Kv> {
    v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| Kv {
                    key: String::from_utf8_lossy(&decode(&kv["key"])).into_owned(),
                    value: decode(&kv["value"]),
                    mod_revision: num(&kv["mod_revision"]),
                    lease: num(&kv["lease"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A compare for a txn: the key does not exist.
pub(crate) fn absent(key: &str) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
}

/// A compare for a txn: the key exists.
pub(crate) fn present(key: &str) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "GREATER", "create_revision": "0"})
}

/// A compare for a txn: nothing under `prefix` changed after `rev`.
pub fn unchanged_since(prefix: &str, rev: i64) -> Value {
    json!({"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix),
           "target": "MOD", "result": "LESS", "mod_revision": (rev + 1).to_string()})
}

pub(crate) fn put_op(key: &str, value: &[u8], lease: i64) -> Value {
    json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}})
}

pub(crate) fn delete_op(key: &str) -> Value {
    json!({"request_delete_range": {"key": b64(key.as_bytes())}})
}

pub(crate) fn delete_prefix_op(prefix: &str) -> Value {
    json!({"request_delete_range": {"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix)}})
}

impl Etcd {
    pub(crate) fn new(spec: &str) -> Result<Etcd, OverlayError> {
        let endpoints = parse_store(spec)?;
        let cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(700)))
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        Ok(Etcd {
            endpoints,
            agent: ureq::Agent::new_with_config(cfg),
            current: AtomicUsize::new(0),
            spec: spec.to_string(),
        })
    }

    /// One POST to the first member that answers.
    fn post(&self, path: &str, body: &Value) -> Result<Value, OverlayError> {
        self.post_with(&self.agent, path, body)
            .and_then(|(_, mut r)| {
                r.body_mut()
                    .read_to_string()
                    .map_err(|e| self.unreachable(&e.to_string()))
                    .and_then(|t| {
                        serde_json::from_str::<Value>(&t)
                            .map_err(|e| self.unreachable(&format!("bad answer: {e}")))
                    })
            })
            .and_then(|v| match v.get("error").or_else(|| v.get("message")) {
                Some(m) if v.get("header").is_none() => Err(OverlayError::Store(format!(
                    "cluster store {}: {}",
                    self.spec,
                    m.as_str().unwrap_or("error")
                ))),
                _ => Ok(v),
            })
    }

    fn unreachable(&self, e: &str) -> OverlayError {
        OverlayError::Unreachable(format!("cannot reach the cluster store {}: {e}", self.spec))
    }

    fn post_with(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
    ) -> Result<(usize, ureq::http::Response<ureq::Body>), OverlayError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no member");
        for i in 0..n {
            let at = (start + i) % n;
            REQUESTS.fetch_add(1, Ordering::Relaxed);
            match agent
                .post(&format!("{}{path}", self.endpoints[at]))
                .header("content-type", "application/json")
                .send(body.to_string())
            {
                Ok(r) if r.status().is_server_error() => {
                    last = format!("{} answered {}", self.endpoints[at], r.status());
                }
                Ok(r) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok((at, r));
                }
                Err(e) => last = format!("{}: {e}", self.endpoints[at]),
            }
        }
        Err(self.unreachable(&last))
    }

    /// Every key under `prefix`, and the store's revision.
    pub(crate) fn list(&self, prefix: &str) -> Result<(i64, Vec<Kv>), OverlayError> {
        let v = self.post(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix)}),
        )?;
        Ok((num(&v["header"]["revision"]), kvs(&v)))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Kv>, OverlayError> {
        let v = self.post("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        Ok(kvs(&v).into_iter().next())
    }

    /// A transaction: `success` ops when every compare holds, else none.
    pub(crate) fn txn(
        &self,
        compare: Vec<Value>,
        success: Vec<Value>,
    ) -> Result<bool, OverlayError> {
        let v = self.post(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": success, "failure": []}),
        )?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// A lease of `ttl` seconds; its id.
    pub(crate) fn grant(&self, ttl: i64) -> Result<i64, OverlayError> {
        let v = self.post("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        Ok(num(&v["ID"]))
    }

    /// Renews a lease; its remaining TTL (0: it had expired).
    pub(crate) fn keepalive(&self, id: i64) -> Result<i64, OverlayError> {
        let v = self.post("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        Ok(num(&v["result"]["TTL"]))
    }

    /// Ends a lease and deletes its keys.
    pub(crate) fn revoke(&self, id: i64) -> Result<(), OverlayError> {
        self.post("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .map(|_| ())
    }

    /// Waits up to `wait` for a change under `prefix` from revision `from`.
    pub(crate) fn watch(
        &self,
        prefix: &str,
        from: i64,
        wait: Duration,
    ) -> Result<Watched, OverlayError> {
        let cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(700)))
            .timeout_global(Some(wait))
            .build();
        let agent = ureq::Agent::new_with_config(cfg);
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix),
            "start_revision": from.to_string()}});
        let (_, resp) = self.post_with(&agent, "/v3/watch", &body)?;
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else {
                // The call's time is up (or the member went away).
                return Ok(Watched::Quiet);
            };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let r = &v["result"];
            if num(&r["compact_revision"]) > 0 || r["canceled"].as_bool() == Some(true) {
                return Ok(Watched::Compacted);
            }
            if r["events"].as_array().is_some_and(|e| !e.is_empty()) {
                return Ok(Watched::Changed(num(&r["header"]["revision"])));
            }
        }
        Ok(Watched::Quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_parse() {
        assert_eq!(
            parse_store("etcd://198.51.100.1:2379,198.51.100.2:2379").unwrap(),
            vec!["http://198.51.100.1:2379", "http://198.51.100.2:2379"]
        );
        for bad in [
            "",
            "http://x:1",
            "etcd://",
            "etcd://x",
            "etcd://x:y",
            "etcd://a b:1",
        ] {
            assert!(parse_store(bad).is_err(), "{bad}");
        }
        assert_eq!(prefix_end("/a/"), b64(b"/a0"));
    }

    #[test]
    fn gateway_answers_decode() {
        // As etcd 3.4's gateway answers a range: int64s as strings, bytes as base64.
        let v: Value = serde_json::from_str(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"Zm9v","create_revision":"2",
                "mod_revision":"5","version":"1","value":"YmFy","lease":"42"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(num(&v["header"]["revision"]), 7);
        assert_eq!(
            kvs(&v),
            vec![Kv {
                key: "foo".into(),
                value: b"bar".to_vec(),
                mod_revision: 5,
                lease: 42
            }]
        );
        // No kvs (an empty range), no TTL (an expired lease's keepalive).
        assert!(kvs(&serde_json::json!({"header": {}})).is_empty());
        assert_eq!(
            num(&serde_json::json!({"result": {"ID": "1"}})["result"]["TTL"]),
            0
        );
        let c = unchanged_since("/p/", 9);
        assert_eq!(c["mod_revision"], "10");
        assert_eq!(c["result"], "LESS");
    }
}

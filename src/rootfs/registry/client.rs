//! One registry host over the distribution API (v2): HTTPS with the system
//! CAs plus the host's own CA from `certs.d`, plain HTTP only when marked
//! insecure, and auth from the `WWW-Authenticate` challenge (anonymous,
//! Basic, or a Bearer token per repository scope, reused for the command).
//! Thin effect code over ureq; the tests run it against a real registry.

use super::auth::{self, Challenge, Credentials};
use super::RegistryError;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

pub(crate) const DEFAULT_CERTS_D: &str = "/etc/minirt/certs.d";

/// Where per-registry CAs live (`HOST:PORT/ca.crt`, Docker's layout).
pub fn certs_d() -> PathBuf {
    std::env::var_os("MINIRT_CERTS_D")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_D))
}

type Resp = Response<Body>;

/// Builds and sends one request, given the Authorization header to use.
pub(crate) type RequestFn<'a> =
    dyn Fn(&ureq::Agent, Option<&str>) -> Result<Resp, ureq::Error> + 'a;

pub struct Client {
    agent: ureq::Agent,
    /// "https://host:port"
    base: String,
    pub host: String,
    creds: Option<Credentials>,
    /// "Bearer <token>" per scope, reused by every request of the command.
    tokens: Mutex<HashMap<String, String>>,
    /// The registry asked for Basic auth: send it up front from then on.
    basic: AtomicBool,
}

impl Client {
    /// A client for `host`; `insecure` means plain HTTP. Credentials come
    /// from Docker's config.json unless given.
    pub fn new(
        host: &str,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        let creds = match creds {
            Some(c) => Some(c),
            None => auth::lookup(host).map_err(RegistryError::Other)?,
        };
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(8)
            .user_agent(concat!("minirt/", env!("CARGO_PKG_VERSION")));
        if !insecure {
            cfg = cfg.tls_config(tls_config(host)?);
        }
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            agent: ureq::Agent::new_with_config(cfg.build()),
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
        })
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends a request built by `f` (given the Authorization header to
    /// use), answering an auth challenge once: a 401 fetches a token for
    /// `scope` (or switches to Basic) and sends again.
    pub fn send(&self, scope: &str, f: &RequestFn<'_>) -> Result<Resp, RegistryError> {
        let header = self.auth_header(scope);
        let resp = f(&self.agent, header.as_deref()).map_err(|e| self.net_err(e))?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = www_authenticate(&resp)?;
        let header = match challenge {
            Challenge::Basic => {
                let Some(c) = &self.creds else {
                    return Err(self.unauthorized(resp, false));
                };
                if self.basic.swap(true, Ordering::SeqCst) && header.is_some() {
                    return Err(self.unauthorized(resp, true));
                }
                c.basic_header()
            }
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let want = asked.unwrap_or_else(|| scope.to_string());
                let token = self.fetch_token(&realm, service.as_deref(), Some(&want))?;
                let h = format!("Bearer {token}");
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(scope.to_string(), h.clone());
                }
                h
            }
        };
        let resp = f(&self.agent, Some(&header)).map_err(|e| self.net_err(e))?;
        if resp.status() == 401 {
            return Err(self.unauthorized(resp, self.creds.is_some()));
        }
        Ok(resp)
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        if let Some(h) = self.tokens.lock().ok().and_then(|t| t.get(scope).cloned()) {
            return Some(h);
        }
        if self.basic.load(Ordering::SeqCst) {
            return self.creds.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// The Bearer token flow: GET realm?service=..&scope=.., with the
    /// user's credentials as Basic when there are any.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let mut req = self.agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        if let Some(s) = scope {
            req = req.query("scope", s);
        }
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let mut resp = req.call().map_err(|e| RegistryError::Unreachable {
            host: realm.to_string(),
            detail: describe_net(&e),
        })?;
        if resp.status() == 401 || resp.status() == 403 {
            return Err(RegistryError::Unauthorized(format!(
                "{}: {}",
                self.host,
                if self.creds.is_some() {
                    "wrong username or password (the token server refused them)"
                } else {
                    "authentication required (use minirt login)"
                }
            )));
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Other(format!(
                "the token server {realm} answered {}",
                resp.status()
            )));
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| RegistryError::Other(format!("token server {realm}: {e}")))?;
        let t: Tok = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Other(format!("bad answer from token server {realm}: {e}"))
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Other(format!("token server {realm} gave no token")))
    }

    /// Checks the credentials: `GET /v2/`, answering its challenge.
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let resp = self.send("", &|agent, auth| {
            let mut r = agent.get(&url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(status_error(&self.host, resp, "/v2/"))
    }

    fn unauthorized(&self, resp: Resp, had_creds: bool) -> RegistryError {
        let detail = error_message(resp).unwrap_or_default();
        let what = if had_creds {
            "wrong username or password, or access denied"
        } else {
            "authentication required (use minirt login)"
        };
        RegistryError::Unauthorized(if detail.is_empty() {
            format!("{}: {what}", self.host)
        } else {
            format!("{}: {what} ({detail})", self.host)
        })
    }

    fn net_err(&self, e: ureq::Error) -> RegistryError {
        let detail = describe_net(&e);
        if matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || detail.contains("certificate")
            || detail.contains("tls")
        {
            let ca = certs_d().join(&self.host).join("ca.crt");
            return RegistryError::Tls(format!(
                "TLS error talking to {}: {detail} (a private CA belongs in {}; --tls-verify=false or insecure = true in {} uses plain HTTP)",
                self.host,
                ca.display(),
                super::config::config_path().display()
            ));
        }
        RegistryError::Unreachable {
            host: self.host.clone(),
            detail,
        }
    }
}

fn describe_net(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

fn www_authenticate(resp: &Resp) -> Result<Challenge, RegistryError> {
    let h = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect::<Vec<_>>();
    // Prefer Bearer when a registry offers both.
    let pick = h
        .iter()
        .find(|v| v.to_ascii_lowercase().starts_with("bearer"))
        .or(h.first())
        .ok_or_else(|| {
            RegistryError::Unauthorized("the registry answered 401 without a challenge".into())
        })?;
    auth::parse_challenge(pick).map_err(RegistryError::Other)
}

/// The message of a distribution API error body (`{"errors":[{"code","message"}]}`).
pub(crate) fn error_message(mut resp: Resp) -> Option<String> {
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let errs = v.get("errors")?.as_array()?;
    let msgs: Vec<String> = errs
        .iter()
        .filter_map(|e| {
            let m = e.get("message").and_then(|m| m.as_str())?;
            Some(m.chars().filter(|c| !c.is_control()).take(200).collect())
        })
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

/// A registry answer that is not a success, as one line.
pub(crate) fn status_error(host: &str, resp: Resp, what: &str) -> RegistryError {
    let status = resp.status();
    let msg = error_message(resp);
    let line = match msg {
        Some(m) => format!("{host}: {m} ({what}: HTTP {})", status.as_u16()),
        None => format!("{host}: {what}: HTTP {status}"),
    };
    if status == 404 {
        RegistryError::NotFound(line)
    } else if status == 401 || status == 403 {
        RegistryError::Unauthorized(line)
    } else {
        RegistryError::Other(line)
    }
}

/// The system CAs plus the host's CA files (`certs.d/HOST/*.crt`).
fn tls_config(host: &str) -> Result<ureq::tls::TlsConfig, RegistryError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut certs: Vec<Certificate<'static>> = vec![];
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        certs.push(Certificate::from_der(c.as_ref()).to_owned());
    }
    let dir = certs_d().join(host);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for f in files {
            let pem = std::fs::read(&f)
                .map_err(|e| RegistryError::Other(format!("cannot read {}: {e}", f.display())))?;
            let mut n = 0;
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    certs.push(c);
                    n += 1;
                }
            }
            if n == 0 {
                return Err(RegistryError::Other(format!(
                    "{} holds no PEM certificate",
                    f.display()
                )));
            }
        }
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(std::sync::Arc::new(certs)))
        .build())
}

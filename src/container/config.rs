//! What a container was asked to be: stored as JSON in the containers table.

use crate::cgroups::Resources;
use crate::network::NetworkRequest;
use oci_spec::runtime::LinuxSeccomp;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    pub source: String,
    pub destination: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    /// The image as the user named it, and its id.
    pub image: String,
    pub image_id: String,
    /// The full argv (entrypoint + cmd resolved against the image config).
    pub args: Vec<String>,
    /// The image's entrypoint, the first words of `args` (for inspect's
    /// Config.Entrypoint / Config.Cmd split); absent in older rows.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Final environment (PATH, HOSTNAME, TERM, image Env, -e / --env-file).
    pub env: Vec<String>,
    pub hostname: String,
    pub workdir: String,
    /// "uid[:gid]" or empty for root.
    pub user: String,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// `--restart`: what the monitor does when the container exits.
    #[serde(default)]
    pub restart: super::restart::RestartPolicy,
    /// The health check the monitor runs (image's HEALTHCHECK with the
    /// `--health-*` flags laid over it); None = none.
    #[serde(default)]
    pub healthcheck: Option<super::health::HealthConfig>,
    /// `--stop-signal` or the image's StopSignal ("SIGTERM" when neither).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (10 when unset; -1 waits forever).
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    pub mounts: Vec<BindMount>,
    pub resources: Resources,
    pub network: NetworkRequest,
    /// `--cap-add` / `--cap-drop` words as typed (validated when the container is created).
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// All capabilities and devices, no seccomp, no masked or read-only paths.
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub seccomp: SeccompMode,
    /// `--read-only`: the root filesystem is mounted read-only.
    #[serde(default)]
    pub read_only: bool,
    /// `--tmpfs` mounts.
    #[serde(default)]
    pub tmpfs: Vec<super::tmpfs::Tmpfs>,
    /// `--ulimit` limits for the container's processes.
    #[serde(default)]
    pub ulimits: Vec<super::ulimit::Ulimit>,
    /// `--shm-size` of /dev/shm in bytes (Docker's 64 MiB when absent).
    #[serde(default)]
    pub shm_size: Option<i64>,
    /// `--label` / `-l` KEY=VALUE metadata.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Which seccomp filter the container's processes run under.
/// The parts of a stored [`ContainerConfig`] that listing containers
/// (`ps`) uses, read without building the rest: parsing the whole config of
/// every row was a tenth of `ps` with 1000 containers. The fields that
/// `ContainerConfig` requires are required here too (and skipped unread),
/// so a stored text that the full parse refuses gives the default here as
/// well, as [`ContainerConfig`]'s readers treat it.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct ListedConfig {
    #[allow(dead_code)]
    image: IgnoredAny,
    #[allow(dead_code)]
    image_id: IgnoredAny,
    #[allow(dead_code)]
    args: IgnoredAny,
    #[allow(dead_code)]
    env: IgnoredAny,
    #[allow(dead_code)]
    hostname: IgnoredAny,
    #[allow(dead_code)]
    workdir: IgnoredAny,
    #[allow(dead_code)]
    user: IgnoredAny,
    #[allow(dead_code)]
    tty: IgnoredAny,
    #[allow(dead_code)]
    interactive: IgnoredAny,
    #[allow(dead_code)]
    auto_remove: IgnoredAny,
    #[allow(dead_code)]
    resources: IgnoredAny,
    #[allow(dead_code)]
    network: IgnoredAny,
    #[serde(default)]
    pub restart: super::restart::RestartPolicy,
    /// Whether the container has a health check.
    #[serde(default, rename = "healthcheck")]
    health: Option<IgnoredAny>,
    pub mounts: Vec<ListedMount>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A bind mount as listing shows it (its source).
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct ListedMount {
    pub source: String,
}

impl ListedConfig {
    /// From a row's stored JSON; unreadable gives the default, as
    /// `lifecycle::config_of` does for the full config.
    pub fn parse(json: &str) -> ListedConfig {
        serde_json::from_str(json).unwrap_or_default()
    }

    pub fn has_healthcheck(&self) -> bool {
        self.health.is_some()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// Docker's default profile for the container's capabilities.
    #[default]
    Default,
    /// `--security-opt seccomp=unconfined`.
    Unconfined,
    /// `--security-opt seccomp=PROFILE.json`, an OCI (or plain Docker) profile.
    Profile(Box<LinuxSeccomp>),
}

/// What `--security-opt` values ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SecurityOpts {
    pub seccomp: SeccompMode,
}

/// Parses `--security-opt` values: `seccomp=unconfined`, `seccomp=PATH` (read with `read`),
/// and `no-new-privileges[=true]` (always on here). Anything else is refused, so a user never
/// believes an option (apparmor, label) took effect when it did not.
pub(crate) fn parse_security_opts(
    opts: &[String],
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<SecurityOpts, String> {
    let mut out = SecurityOpts::default();
    for o in opts {
        // Docker still accepts the old "key:value" form.
        let (key, value) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => out.seccomp = SeccompMode::Unconfined,
            ("seccomp", "") => return Err(format!("invalid --security-opt: {o:?}")),
            ("seccomp", path) => {
                let text = read(path)
                    .map_err(|e| format!("opening seccomp profile ({path}) failed: {e}"))?;
                let profile: LinuxSeccomp = serde_json::from_str(&text)
                    .map_err(|e| format!("decoding seccomp profile {path} failed: {e}"))?;
                out.seccomp = SeccompMode::Profile(Box::new(profile));
            }
            ("no-new-privileges", "" | "true") => {}
            ("no-new-privileges", "false") => {
                return Err("no-new-privileges cannot be turned off in minirt".into())
            }
            _ => return Err(format!("invalid --security-opt: {o:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<SecurityOpts, String> {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse_security_opts(&opts, |p| match p {
            "/p.json" => Ok(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["keyctl"],"action":"SCMP_ACT_ERRNO"}]}"#
                .to_string()),
            "/bad.json" => Ok("{".to_string()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        })
    }

    #[test]
    fn security_opts_parse_like_docker() {
        assert_eq!(parse(&[]).unwrap().seccomp, SeccompMode::Default);
        assert_eq!(
            parse(&["seccomp=unconfined"]).unwrap().seccomp,
            SeccompMode::Unconfined
        );
        assert_eq!(
            parse(&["seccomp:unconfined"]).unwrap().seccomp,
            SeccompMode::Unconfined
        );
        match parse(&["seccomp=/p.json"]).unwrap().seccomp {
            SeccompMode::Profile(p) => assert_eq!(p.syscalls().as_ref().unwrap().len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["no-new-privileges"]).is_ok());
        assert!(parse(&["seccomp=/missing.json"])
            .unwrap_err()
            .contains("/missing.json"));
        assert!(parse(&["seccomp=/bad.json"])
            .unwrap_err()
            .contains("decoding"));
        assert!(parse(&["apparmor=unconfined"]).is_err());
        assert!(parse(&["no-new-privileges=false"]).is_err());
    }

    #[test]
    fn old_rows_without_security_fields_still_parse() {
        let cfg: ContainerConfig = serde_json::from_str(
            r#"{"image":"i","image_id":"x","args":["sh"],"env":[],"hostname":"h","workdir":"/",
            "user":"","tty":false,"interactive":false,"auto_remove":false,"mounts":[],
            "resources":{"memory":null,"nano_cpus":null,"pids_limit":null},
            "network":{"mode":"none","ip":null,"dns":[],"add_hosts":[],"publish":[],"aliases":[]}}"#,
        )
        .unwrap();
        assert!(!cfg.privileged && !cfg.read_only && cfg.cap_add.is_empty());
        assert_eq!(cfg.seccomp, SeccompMode::Default);
        let back: ContainerConfig = serde_json::from_str(
            &serde_json::to_string(&ContainerConfig {
                seccomp: SeccompMode::Unconfined,
                ..cfg
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(back.seccomp, SeccompMode::Unconfined);
    }

    /// What `ps` reads from the slim parse agrees with the full one, for a
    /// full config, an old row without the optional fields, and texts the
    /// full parse refuses.
    #[test]
    fn listed_config_agrees_with_the_full_parse() {
        let full = ContainerConfig {
            restart: crate::container::restart::RestartPolicy::parse("on-failure:3").unwrap(),
            healthcheck: Some(crate::container::health::HealthConfig {
                test: vec!["CMD".into(), "true".into()],
                ..Default::default()
            }),
            mounts: vec![BindMount {
                source: "/src".into(),
                destination: "/dst".into(),
                readonly: true,
            }],
            labels: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let old = r#"{"image":"i","image_id":"x","args":["sh"],"env":[],"hostname":"h","workdir":"/",
            "user":"","tty":false,"interactive":false,"auto_remove":false,"mounts":[],
            "resources":{"memory":null,"nano_cpus":null,"pids_limit":null},
            "network":{"mode":"none","ip":null,"dns":[],"add_hosts":[],"publish":[],"aliases":[]}}"#;
        let texts = [
            serde_json::to_string(&full).unwrap(),
            serde_json::to_string(&ContainerConfig::default()).unwrap(),
            old.to_string(),
            old.replace(r#""hostname":"h","#, ""),
            String::new(),
            "{".into(),
        ];
        for t in &texts {
            let want: ContainerConfig = serde_json::from_str(t).unwrap_or_default();
            let got = ListedConfig::parse(t);
            assert_eq!(got.restart, want.restart, "{t}");
            assert_eq!(got.has_healthcheck(), want.healthcheck.is_some(), "{t}");
            assert_eq!(got.labels, want.labels, "{t}");
            let sources: Vec<&str> = want.mounts.iter().map(|m| m.source.as_str()).collect();
            let got_sources: Vec<&str> = got.mounts.iter().map(|m| m.source.as_str()).collect();
            assert_eq!(got_sources, sources, "{t}");
        }
        assert!(ListedConfig::parse(&texts[0]).has_healthcheck());
    }
}

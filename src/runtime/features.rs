//! The runtime-spec "features" document: what this runtime implements, for
//! engines that ask before they build a config.json.

use super::state::OCI_VERSION;
use serde_json::{json, Value};

pub fn document() -> Value {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": [
            "bind", "rbind", "ro", "rw", "nosuid", "noexec", "nodev", "strictatime",
            "relatime", "noatime", "private", "rprivate", "shared", "rshared", "slave", "rslave"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": [serde_json::to_value(crate::runtime::seccomp::native_oci_arch()).unwrap_or(Value::Null)]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"io.github.minirt.runtime": "minirt"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_reads_as_the_specs_features() {
        let f: oci_spec::runtime::Features = serde_json::from_value(document()).unwrap();
        assert_eq!(f.oci_version_max(), OCI_VERSION);
        let linux = f.linux().as_ref().unwrap();
        assert!(linux.namespaces().as_ref().unwrap().len() == 7);
        assert!(linux
            .capabilities()
            .as_ref()
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.enabled(), &Some(true));
        assert!(!seccomp.archs().as_ref().unwrap().is_empty());
    }
}

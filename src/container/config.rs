//! What a container was asked to be: stored as JSON in the containers table.

use crate::cgroups::Resources;
use crate::network::NetworkRequest;
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
    /// Final environment (PATH, HOSTNAME, TERM, image Env, -e / --env-file).
    pub env: Vec<String>,
    pub hostname: String,
    pub workdir: String,
    /// "uid[:gid]" or empty for root.
    pub user: String,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub mounts: Vec<BindMount>,
    pub resources: Resources,
    pub network: NetworkRequest,
}

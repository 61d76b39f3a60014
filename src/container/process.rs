//! PLACEHOLDER until the `exec` branch lands (it owns this file): the final
//! steps before execve shared by init and exec.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub capabilities: Option<Vec<String>>,
    pub no_new_privs: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChildFailure {
    NotFound(String),
    CannotExecute(String),
    Other(String),
}

impl ChildFailure {
    pub fn exit_code(&self) -> i32 {
        match self {
            ChildFailure::NotFound(_) => 127,
            ChildFailure::CannotExecute(_) => 126,
            ChildFailure::Other(_) => 125,
        }
    }
}

pub fn finish_and_exec(spec: &ProcessSpec) -> ChildFailure {
    use std::ffi::CString;
    if let Err(e) = nix::unistd::chdir(spec.cwd.as_str()) {
        return ChildFailure::Other(format!("chdir {}: {e}", spec.cwd));
    }
    let args: Vec<CString> = spec
        .args
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    let env: Vec<CString> = spec
        .env
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    let Some(prog) = args.first() else {
        return ChildFailure::Other("no command".into());
    };
    let path = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/bin:/usr/bin")
        .to_string();
    let candidates: Vec<String> = if spec.args[0].contains('/') {
        vec![spec.args[0].clone()]
    } else {
        path.split(':')
            .map(|d| format!("{d}/{}", spec.args[0]))
            .collect()
    };
    for c in candidates {
        if let Ok(cp) = CString::new(c) {
            let _ = nix::unistd::execve(&cp, &args, &env);
        }
    }
    let _ = prog;
    ChildFailure::NotFound(format!(
        "exec: \"{}\": executable file not found in $PATH",
        spec.args[0]
    ))
}

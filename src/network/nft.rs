//! Applies rendered nftables scripts with the `nft` tool: one `nft -f -` per
//! batch, which the kernel commits atomically (all of it or nothing).

use super::NetworkError;
use std::io::Write;
use std::process::{Command, Stdio};

/// The nft binary; overridable for unusual installs.
fn nft_bin() -> String {
    std::env::var("MINIRT_NFT").unwrap_or_else(|_| "nft".into())
}

/// Run one script as one atomic transaction in the caller's network namespace.
pub fn apply(script: &str) -> Result<(), NetworkError> {
    if script.trim().is_empty() {
        return Ok(());
    }
    let out = run(&["-f", "-"], Some(script))?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Firewall(format!(
        "nftables rejected the ruleset: {}",
        first_error(&String::from_utf8_lossy(&out.stderr))
    )))
}

/// Remove the whole table (every chain, map and element); absent is fine.
pub fn delete_table(table: &str) -> Result<(), NetworkError> {
    // `add` first so the delete never fails on a missing table (no `destroy` in nft 1.0.6).
    apply(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
}

/// `nft list table inet <table>` output, for inspection and tests.
pub fn list_table(table: &str) -> Result<String, NetworkError> {
    let out = run(&["list", "table", "inet", table], None)?;
    if !out.status.success() {
        return Err(NetworkError::Firewall(format!(
            "cannot list nftables table {table}: {}",
            first_error(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, NetworkError> {
    let bin = nft_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NetworkError::Firewall(format!("cannot run {bin}: {e} (is nftables installed?)"))
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means nft exited early; its stderr says why.
        let _ = pipe.write_all(text.as_bytes());
    }
    child
        .wait_with_output()
        .map_err(|e| NetworkError::Firewall(format!("waiting for {bin}: {e}")))
}

/// nft prints `file:line:col: Error: what` then the offending line and carets;
/// keep the error and the offending statement on one line.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|l| l.contains("Error:")) {
        Some(i) => {
            let msg = lines[i];
            let msg = msg.find("Error:").map_or(msg, |p| &msg[p..]);
            match lines.get(i + 1).map(|l| l.trim()).filter(|l| !l.is_empty()) {
                Some(stmt) => format!("{msg} (in: {stmt})"),
                None => msg.to_string(),
            }
        }
        None => lines
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or_else(|| "no error message".to_string(), |l| l.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_picks_the_error_line() {
        let e = "/dev/stdin:3:1-20: Error: Could not process rule: No such file or directory\n\
                 add rule inet t c accept\n^^^^^^\n";
        assert_eq!(
            first_error(e),
            "Error: Could not process rule: No such file or directory (in: add rule inet t c accept)"
        );
        assert_eq!(first_error("\n  something odd\n"), "something odd");
        assert_eq!(first_error(""), "no error message");
    }
}

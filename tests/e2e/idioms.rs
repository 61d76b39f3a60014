//! tests/scripts/idioms.sh: everyday Docker idioms (inspect -f, ps
//! --format, port, wait, cp, logs --tail, stats, pause, volume, create,
//! --restart always, a health check going unhealthy)
//! run unchanged with minirt as `docker`.

use crate::common::*;

#[test]
fn docker_idioms_script_runs_unchanged() {
    let h = TestHost::new();
    let scratch = TempDir::new("idioms");
    let work = scratch.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let path = minirt_shim(&h, &scratch.0.join("bin"), "minirt");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/idioms.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .current_dir(&work)
        .env("PATH", path)
        .env("MINIRT_DNS_LINGER", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "idioms failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("ok ")).count(),
        13,
        "{}",
        stdout(&o)
    );
}

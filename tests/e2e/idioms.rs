//! tests/scripts/idioms.sh: everyday Docker idioms (inspect -f, ps
//! --format, port, wait, cp, logs --tail, stats, pause, volume, create,
//! --restart always, a health check going unhealthy)
//! run unchanged with minirt as `docker`.

use crate::common::*;

#[test]
fn docker_idioms_script_runs_unchanged() {
    let h = TestHost::new();
    let scratch = TempDir::new("idioms");
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let work = scratch.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let minirt = bin.join("minirt");
    std::fs::write(
        &minirt,
        format!(
            "#!/bin/sh\nexec nsenter --net={} -- {BIN} --root {} --run-root {} \"$@\"\n",
            h.netns_path(),
            h.root.display(),
            h.run_root.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&minirt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/idioms.sh");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
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

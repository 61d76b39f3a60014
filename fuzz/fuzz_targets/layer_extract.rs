//! Fuzzes layer extraction into a temp dir: whatever the tar says, nothing
//! may appear outside the layer directory, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minirt::rootfs::extract::extract_layer;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    let layer = tmp.path().join("layer");
    if std::fs::create_dir(&layer).is_err() {
        return;
    }
    let _ = extract_layer(data, &layer);
    let outside: Vec<_> = std::fs::read_dir(tmp.path())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("layer")],
        "wrote outside the layer"
    );
});

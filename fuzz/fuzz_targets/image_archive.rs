//! Fuzzes the image archive reader: the member index, the docker-save / OCI
//! plan (manifests, indexes, configs) and opening each planned layer, all
//! over an in-memory archive. Must never panic, hang or allocate wildly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minirt::rootfs::image::{plan_archive, ArchiveIndex};
use std::io::{Cursor, Read};

fuzz_target!(|data: &[u8]| {
    let mut r = Cursor::new(data);
    let Ok(idx) = ArchiveIndex::read(&mut r) else {
        return;
    };
    let Ok(plan) = plan_archive(&idx, &mut r) else {
        return;
    };
    for img in &plan {
        assert_eq!(img.id.len(), 64, "image id is a sha256 hex");
        for l in &img.layers {
            if let Ok(mut blob) = idx.open(&mut r, &l.member) {
                // A member can never be longer than the archive holding it.
                let mut sink = Vec::new();
                let n = blob.read_to_end(&mut sink).unwrap_or(0);
                assert!(n <= data.len());
            }
        }
    }
});

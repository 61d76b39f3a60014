//! `minirt system df` as a Docker user reads it: counts, active objects and
//! sizes of images, containers and volumes, in Docker's rows and shapes.

use crate::common::*;

fn rows(h: &TestHost) -> Vec<serde_json::Value> {
    h.ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn system_df_counts_and_sizes_what_is_stored() {
    let h = TestHost::new();
    h.ok(&["volume", "create", "dfvol"]);
    h.ok(&[
        "run",
        "--name",
        "w",
        "--net",
        "none",
        "-v",
        "dfvol:/data",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1000 count=300 2>/dev/null; \
         dd if=/dev/zero of=/data/v bs=1000 count=200 2>/dev/null",
    ]);
    h.ok(&["volume", "create", "idle"]);
    let r = rows(&h);
    let kinds: Vec<&str> = r.iter().map(|d| d["Type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Images", "Containers", "Local Volumes", "Build Cache"]
    );
    assert_eq!(
        (r[0]["TotalCount"].as_str(), r[0]["Active"].as_str()),
        (Some("1"), Some("1"))
    );
    assert_eq!(r[0]["Reclaimable"], "0B (0%)");
    // The exited container: not active, its 300 kB upper dir reclaimable.
    assert_eq!(
        (r[1]["TotalCount"].as_str(), r[1]["Active"].as_str()),
        (Some("1"), Some("0"))
    );
    assert_eq!(r[1]["Size"], "300kB");
    assert_eq!(r[1]["Reclaimable"], "300kB (100%)");
    // Two volumes, one used (200 kB), the idle one empty.
    assert_eq!(
        (r[2]["TotalCount"].as_str(), r[2]["Active"].as_str()),
        (Some("2"), Some("1"))
    );
    assert_eq!(r[2]["Size"], "200kB");
    assert_eq!(r[2]["Reclaimable"], "0B (0%)");
    assert_eq!(r[3]["Size"], "0B");

    let table = h.ok(&["system", "df"]);
    let head: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(
        h.ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]),
        "Images=1\nContainers=1\nLocal Volumes=2\nBuild Cache=0\n"
    );
    let v = h.ok(&["system", "df", "-v"]);
    for section in [
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ] {
        assert!(v.contains(section), "{v}");
    }
    assert!(
        v.lines()
            .any(|l| l.starts_with("dfvol ") && l.ends_with("200kB")),
        "{v}"
    );

    // Removing the container makes its image reclaimable.
    h.ok(&["rm", "w"]);
    let r = rows(&h);
    assert_eq!(r[0]["Active"], "0");
    assert!(
        r[0]["Reclaimable"].as_str().unwrap().ends_with("(100%)"),
        "{:?}",
        r[0]
    );
    let (code, err) = h.fails(&["system", "df", "--format", "{{.Nope"]);
    assert_eq!(code, 125);
    one_line(&err);
}

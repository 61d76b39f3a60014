//! `minirt commit` as a Docker user checks it: a container that wrote,
//! deleted and replaced files becomes an image whose containers see exactly
//! those changes; `-c` changes the config; the image outlives the container
//! and travels through `save`/`load`; bad input is one line and leaves nothing.

use crate::common::*;

const CHANGES: &str = "echo new > /x; rm /etc/shadow; echo replaced > /etc/group; \
     rm -rf /var; mkdir -p /var/www; echo only > /var/www/only";

#[test]
fn a_committed_image_has_the_containers_changes() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "--name",
        "src",
        "--net",
        "none",
        "-l",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        CHANGES,
    ]);
    let id = h.ok(&[
        "commit",
        "-a",
        "me",
        "-m",
        "snap",
        "-c",
        r#"CMD ["cat","/x"]"#,
        "-c",
        "ENV MODE=committed",
        "src",
        "snap:1",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // The command from -c.
    assert_eq!(h.ok(&["run", "--rm", "--net", "none", "snap:1"]), "new\n");
    let seen = h.ok(&[
        "run", "--rm", "--net", "none", "snap:1", "sh", "-c",
        "test -e /etc/shadow && echo shadow; cat /etc/group; ls /var; cat /var/www/only; echo $MODE",
    ]);
    // Deleted file gone, replaced file replaced, the opaque /var holds only www.
    assert_eq!(seen, "replaced\nwww\nonly\ncommitted\n");
    // The image's config and history.
    let doc: serde_json::Value =
        serde_json::from_str(&h.ok(&["image", "inspect", "snap:1"])).unwrap();
    let doc = &doc[0];
    assert_eq!(doc["Author"], "me");
    assert_eq!(doc["Config"]["Labels"]["tier"], "front");
    assert_eq!(doc["Config"]["Cmd"], serde_json::json!(["cat", "/x"]));
    let hist = h.ok(&["history", "snap:1"]);
    let newest = hist.lines().nth(1).unwrap_or_default();
    assert!(
        newest.starts_with(&id[7..19]) && newest.ends_with("snap"),
        "{hist}"
    );
    assert!(h.ok(&["images", "-q"]).contains(&id[7..19]));

    // The image survives the container's removal.
    h.ok(&["rm", "src"]);
    assert_eq!(h.ok(&["run", "--rm", "--net", "none", "snap:1"]), "new\n");

    // save here, load elsewhere: the same files.
    let dir = TempDir::new("commit-save");
    let tar = format!("{}/snap.tar", dir.path());
    h.ok(&["save", "-o", &tar, "snap:1"]);
    let other = TestHost::new();
    other.ok(&["load", "-i", &tar]);
    assert_eq!(
        other.ok(&[
            "run",
            "--rm",
            "--net",
            "none",
            "snap:1",
            "sh",
            "-c",
            "cat /x; ls /var"
        ]),
        "new\nwww\n"
    );
}

#[test]
fn committing_a_running_container_pauses_it_only_meanwhile() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo up > /state; sleep 600",
    ]);
    wait_for(
        "the container's write",
        std::time::Duration::from_secs(10),
        || {
            h.minirt(&["exec", "live", "cat", "/state"])
                .status
                .success()
        },
    );
    h.ok(&["commit", "live", "live:snap"]);
    assert_eq!(
        h.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "live"
        ]),
        "running false\n"
    );
    assert_eq!(
        h.ok(&["run", "--rm", "--net", "none", "live:snap", "cat", "/state"]),
        "up\n"
    );
    // --pause=false is accepted.
    h.ok(&["commit", "--pause=false", "live"]);
    h.ok(&["rm", "-f", "live"]);
    // A container that never ran commits as an empty layer.
    h.ok(&[
        "create", "--name", "fresh", "--net", "none", "busybox", "true",
    ]);
    h.ok(&["commit", "fresh", "fresh:snap"]);
    assert_eq!(
        h.ok(&["run", "--rm", "--net", "none", "fresh:snap", "echo", "ok"]),
        "ok\n"
    );
    h.ok(&["rm", "fresh"]);
}

#[test]
fn bad_commits_are_one_line_and_leave_nothing() {
    let h = TestHost::new();
    h.ok(&[
        "run", "--name", "c", "--net", "none", "busybox", "touch", "/f",
    ]);
    let images = h.ok(&["images", "-q"]);
    let layers = layer_entries(&h);
    let (code, err) = h.fails(&["commit", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(one_line(&err), "minirt: No such container: nope");
    for (args, want) in [
        (
            &["commit", "-c", "RUN true", "c"][..],
            "RUN is not a valid change command",
        ),
        (
            &["commit", "-c", "EXPOSE http", "c"],
            "invalid containerPort: http",
        ),
        (&["commit", "c", "Bad:Ref:x"], "invalid reference format"),
    ] {
        let (code, err) = h.fails(args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(one_line(&err).contains(want), "{args:?}: {err}");
    }
    assert_eq!(h.ok(&["images", "-q"]), images);
    assert_eq!(layer_entries(&h), layers);
}

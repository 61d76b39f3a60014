//! Unit tests of `create`: the container config from flags and image.

use super::*;
use crate::rootfs::ImageConfig;

fn img() -> Image {
    Image {
        id: "img".into(),
        layers: vec![],
        config: ImageConfig {
            env: vec!["PATH=/bin".into(), "FOO=image".into()],
            cmd: Some(vec!["sh".into()]),
            working_dir: "/home".into(),
            ..Default::default()
        },
    }
}
const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn stop_signal_health_check_and_restart_come_from_image_and_flags() {
    use crate::container::health::{HealthConfig, HealthFlags};
    use crate::container::restart::RestartPolicy;
    let mut image = img();
    image.config.stop_signal = Some("SIGQUIT".into());
    image.config.healthcheck = Some(HealthConfig {
        test: vec!["CMD".into(), "/check".into()],
        retries: 4,
        ..Default::default()
    });
    let opts = RunOptions {
        image: "busybox".into(),
        ..Default::default()
    };
    let c = assemble(&image, &opts, ID).unwrap();
    assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(c.healthcheck.as_ref().unwrap().retries, 4);
    assert_eq!(c.restart, RestartPolicy::No);
    let opts = RunOptions {
        image: "busybox".into(),
        stop_signal: Some("USR1".into()),
        stop_timeout: Some(2),
        restart: Some("on-failure:2".into()),
        health: HealthFlags {
            none: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let c = assemble(&image, &opts, ID).unwrap();
    assert_eq!(c.stop_signal.as_deref(), Some("USR1"));
    assert_eq!(c.stop_timeout, Some(2));
    assert_eq!(c.restart, RestartPolicy::OnFailure(2));
    assert_eq!(c.healthcheck, None);
    let conflict = RunOptions {
        image: "busybox".into(),
        auto_remove: true,
        restart: Some("always".into()),
        ..Default::default()
    };
    let e = assemble(&image, &conflict, ID).unwrap_err().to_string();
    assert_eq!(e, "Conflicting options: --restart and --rm");
    let bad = RunOptions {
        image: "busybox".into(),
        stop_signal: Some("SIGNOPE".into()),
        ..Default::default()
    };
    assert!(assemble(&image, &bad, ID).is_err());
}

#[test]
fn image_defaults_and_overrides() {
    let opts = RunOptions {
        image: "busybox".into(),
        cmd: vec!["echo".into(), "hi".into()],
        env: vec!["FOO=cli".into(), "BAR=1".into()],
        tty: true,
        ..Default::default()
    };
    let c = assemble(&img(), &opts, ID).unwrap();
    assert_eq!(c.args, vec!["echo", "hi"]);
    assert_eq!(c.hostname, "0123456789ab");
    assert_eq!(c.workdir, "/home");
    assert_eq!(c.network.mode, "bridge");
    assert_eq!(
        c.env,
        vec![
            "HOSTNAME=0123456789ab",
            "TERM=xterm",
            "PATH=/bin",
            "FOO=cli",
            "BAR=1"
        ]
    );
}

#[test]
fn entrypoint_prefixes_cmd_and_no_command_is_an_error() {
    let mut i = img();
    i.config.entrypoint = Some(vec!["/bin/busybox".into()]);
    let c = assemble(&i, &RunOptions::default(), ID).unwrap();
    assert_eq!(c.args, vec!["/bin/busybox", "sh"]);
    i.config.entrypoint = None;
    i.config.cmd = None;
    let e = assemble(&i, &RunOptions::default(), ID).unwrap_err();
    assert_eq!(e.to_string(), "No command specified");
}

#[test]
fn the_entrypoint_flag_replaces_entrypoint_and_image_cmd() {
    let mut i = img();
    i.config.entrypoint = Some(vec!["/bin/busybox".into()]);
    i.config.cmd = Some(vec!["sh".into()]);
    let o = RunOptions {
        entrypoint: Some("/bin/env".into()),
        ..Default::default()
    };
    assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["/bin/env"]);
    let o = RunOptions {
        entrypoint: Some("/bin/echo".into()),
        cmd: vec!["hi".into()],
        ..Default::default()
    };
    assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["/bin/echo", "hi"]);
    let o = RunOptions {
        entrypoint: Some(String::new()),
        cmd: vec!["ls".into()],
        ..Default::default()
    };
    assert_eq!(assemble(&i, &o, ID).unwrap().args, vec!["ls"]);
}

#[test]
fn bad_values_are_refused() {
    let o = RunOptions {
        volumes: vec!["/definitely/missing:/x".into()],
        ..Default::default()
    };
    assert!(assemble(&img(), &o, ID)
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    let o = RunOptions {
        memory: Some("lots".into()),
        ..Default::default()
    };
    assert!(assemble(&img(), &o, ID).is_err());
    let o = RunOptions {
        workdir: Some("rel".into()),
        ..Default::default()
    };
    assert!(assemble(&img(), &o, ID).is_err());
}

#[test]
fn hostile_inputs_are_refused_with_one_line() {
    let refused = |o: RunOptions| assemble(&img(), &o, ID).unwrap_err().to_string();
    for env in ["=x", "="] {
        let e = refused(RunOptions {
            env: vec![env.into()],
            ..Default::default()
        });
        assert!(e.contains("the name is empty"), "{e}");
    }
    let e = refused(RunOptions {
        env_files: vec!["# fine\nA=1\n=oops\n".into()],
        ..Default::default()
    });
    assert!(e.contains("\"=oops\""), "{e}");
    for dst in ["/", "/proc", "/proc/x", "/sys/fs", "/a/../proc"] {
        let e = refused(RunOptions {
            volumes: vec![format!("/tmp:{dst}")],
            ..Default::default()
        });
        assert!(e.contains("cannot be mounted over"), "{dst}: {e}");
    }
    let e = refused(RunOptions {
        hostname: Some("x\n6.6.6.6 evil".into()),
        ..Default::default()
    });
    assert!(
        e.starts_with("invalid hostname \"x\\n6.6.6.6 evil\""),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let mut o = RunOptions::default();
    o.network.aliases = vec!["a b".into()];
    assert!(refused(o).contains("invalid domain name"));
    let e = validate_name("w\u{1b}[2J").unwrap_err().to_string();
    assert!(
        e.contains("w\\u{1b}[2J") && !e.chars().any(char::is_control),
        "{e}"
    );
}

#[test]
fn volumes_parse() {
    let m = parse_volume("/a:/b:ro").unwrap();
    assert_eq!(
        (m.source.as_str(), m.destination.as_str(), m.readonly),
        ("/a", "/b", true)
    );
    assert!(!parse_volume("/a:/b").unwrap().readonly);
    assert!(parse_volume("vol:/b").is_err());
    assert!(parse_volume("/a:b").is_err());
    assert!(parse_volume("/a:/b:zz").is_err());
    assert!(parse_volume("/a").is_err());
}

#[test]
fn names() {
    assert!(validate_name("web").is_ok());
    assert!(validate_name("w").is_ok());
    assert!(validate_name("").is_err());
    assert!(validate_name("-x").is_err());
    assert!(validate_name("a b").is_err());
    assert!(validate_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    let g = generate_name(ID);
    assert!(validate_name(&g).is_ok(), "{g}");
}

#[test]
fn a_bare_env_name_takes_the_callers_value_or_leaves_the_entry_alone() {
    let mut env = vec!["A=1".to_string(), "MINIRT_TEST_UNSET_VAR=image".into()];
    let caller_path = std::env::var("PATH").unwrap();
    apply_env(
        &mut env,
        &["A=2".into(), "MINIRT_TEST_UNSET_VAR".into(), "PATH".into()],
    )
    .unwrap();
    assert_eq!(
        env,
        vec![
            "A=2".to_string(),
            "MINIRT_TEST_UNSET_VAR=image".into(),
            format!("PATH={caller_path}"),
        ]
    );
    assert!(apply_env(&mut env, &["=x".into()]).is_err());
}

#[test]
fn env_file_lines() {
    assert_eq!(parse_env_file("# c\nA=1\n\n B=2 \n"), vec!["A=1", "B=2"]);
}

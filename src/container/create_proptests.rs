//! Property tests of `create`.

use super::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn names_are_valid_exactly_by_the_rule(s in "\\PC{0,140}|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,140}") {
        let by_rule = s.len() <= MAX_NAME_LEN
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        let got = validate_name(&s);
        prop_assert_eq!(got.is_ok(), by_rule, "{:?}: {:?}", s, got);
        if let Err(e) = got {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn volumes_round_trip(
        src in "/[a-zA-Z0-9_./-]{0,30}", dst in "/[a-zA-Z0-9_./-]{0,30}", mode in 0usize..3
    ) {
        let (suffix, ro) = [("", false), (":rw", false), (":ro", true)][mode];
        let parsed = parse_volume(&format!("{src}:{dst}{suffix}"));
        if validate::mount_destination(&dst).is_err() {
            // `/`, `/proc`, `/sys` and below (however spelled) are refused.
            prop_assert!(parsed.is_err());
        } else {
            let b = parsed.unwrap();
            prop_assert_eq!(b, BindMount { source: src, destination: dst, readonly: ro });
        }
    }

    #[test]
    fn volume_parsing_never_panics_and_keeps_paths_absolute(s in "\\PC{0,40}|[/a-z:]{0,20}") {
        if let Ok(b) = parse_volume(&s) {
            prop_assert!(b.source.starts_with('/') && b.destination.starts_with('/'));
        }
    }
}

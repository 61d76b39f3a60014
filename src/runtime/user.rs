//! Who the process becomes: `--user` forms, /etc/passwd and /etc/group of
//! the container read as runc reads them (pure), and the switch itself
//! (setgroups, setresgid, setresuid through `Sys`).

use super::process::{errno_text, other, ChildFailure, ProcessError};
use super::sys::Sys;

/// A user or group named by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdRef {
    Id(u32),
    Name(String),
}

fn id_ref(s: &str) -> IdRef {
    match s.parse::<u32>() {
        Ok(n) => IdRef::Id(n),
        Err(_) => IdRef::Name(s.to_string()),
    }
}

/// Split "user[:group]" (as in `--user`); "" means root.
pub(crate) fn parse_user_spec(spec: &str) -> Result<(Option<IdRef>, Option<IdRef>), ProcessError> {
    if spec.is_empty() {
        return Ok((None, None));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g == Some("") || g.is_some_and(|g| g.contains(':')) {
        return Err(ProcessError::InvalidUser(spec.to_string()));
    }
    Ok((Some(id_ref(u)), g.map(id_ref)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// /etc/passwd lines "name:pw:uid:gid:gecos:home:shell"; malformed lines are skipped like libc does.
pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// /etc/group lines "name:pw:gid:member,member".
pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Who the process becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// runc's rules: a numeric uid need not exist in passwd (gid then defaults to 0, home to "/");
/// a name must; supplementary groups are those listing the user's name, unless a group was given.
pub(crate) fn resolve_user(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser, ProcessError> {
    let (u, g) = parse_user_spec(spec)?;
    let entry = match &u {
        None => passwd.iter().find(|p| p.uid == 0),
        Some(IdRef::Id(n)) => passwd.iter().find(|p| p.uid == *n),
        Some(IdRef::Name(n)) => Some(
            passwd
                .iter()
                .find(|p| &p.name == n)
                .ok_or_else(|| ProcessError::UserNotFound(n.clone()))?,
        ),
    };
    let uid = match (&u, entry) {
        (Some(IdRef::Id(n)), _) => *n,
        (_, Some(e)) => e.uid,
        (None, None) => 0,
        (Some(IdRef::Name(_)), None) => 0, // unreachable: names must resolve above
    };
    let gid = match &g {
        Some(IdRef::Id(n)) => *n,
        Some(IdRef::Name(n)) => {
            groups
                .iter()
                .find(|gr| &gr.name == n)
                .ok_or_else(|| ProcessError::GroupNotFound(n.clone()))?
                .gid
        }
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let additional_gids = match (&g, entry) {
        (None, Some(e)) => {
            let mut v: Vec<u32> = groups
                .iter()
                .filter(|gr| gr.members.iter().any(|m| m == &e.name) && gr.gid != gid)
                .map(|gr| gr.gid)
                .collect();
            v.dedup();
            v
        }
        _ => Vec::new(),
    };
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

pub(crate) fn switch_user(sys: &impl Sys, u: &ResolvedUser) -> Result<(), ChildFailure> {
    sys.setgroups(&u.additional_gids)
        .map_err(|e| other(format!("setgroups: {}", errno_text(e))))?;
    sys.setresgid(u.gid)
        .map_err(|e| other(format!("setgid {}: {}", u.gid, errno_text(e))))?;
    sys.setresuid(u.uid)
        .map_err(|e| other(format!("setuid {}: {}", u.uid, errno_text(e))))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
        # comment\n\
        broken line\n\
        www-data:x:33:33:www-data:/var/www:/bin/false\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        nohome:x:1000:1000::\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:root,www-data\n\
        www-data:x:33:\n\
        audio:x:29:www-data\n\
        staff:x:50:\n";

    fn resolve(spec: &str) -> Result<ResolvedUser, ProcessError> {
        resolve_user(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_passwd_and_group_skipping_garbage() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 5);
        assert_eq!(p[2].name, "www-data");
        assert_eq!((p[2].uid, p[2].gid), (33, 33));
        assert_eq!(p[2].home, "/var/www");
        let g = parse_group(GROUP);
        assert_eq!(g[2].members, vec!["root", "www-data"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn user_spec_forms() {
        assert_eq!(parse_user_spec("").unwrap(), (None, None));
        assert_eq!(
            parse_user_spec("1000").unwrap(),
            (Some(IdRef::Id(1000)), None)
        );
        assert_eq!(
            parse_user_spec("app:staff").unwrap(),
            (
                Some(IdRef::Name("app".into())),
                Some(IdRef::Name("staff".into()))
            )
        );
        assert!(parse_user_spec(":5").is_err());
        assert!(parse_user_spec("5:").is_err());
        assert!(parse_user_spec("1:2:3").is_err());
    }

    #[test]
    fn resolves_users_like_runc() {
        let root = resolve("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.additional_gids, vec![10]);

        let www = resolve("www-data").unwrap();
        assert_eq!((www.uid, www.gid), (33, 33));
        assert_eq!(www.additional_gids, vec![10, 29]);

        // Numeric uid unknown to passwd: gid 0, home "/".
        let n = resolve("4242").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.home.as_str(), n.additional_gids.len()),
            (4242, 0, "/", 0)
        );

        // Explicit group replaces the primary group and the supplementary list.
        let g = resolve("33:staff").unwrap();
        assert_eq!((g.uid, g.gid), (33, 50));
        assert!(g.additional_gids.is_empty());
        assert_eq!(resolve("nobody:7").unwrap().gid, 7);
        assert_eq!(resolve("nohome").unwrap().home, "/");

        assert_eq!(
            resolve("nope").unwrap_err().to_string(),
            "unable to find user nope: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("root:nogroup").unwrap_err(),
            ProcessError::GroupNotFound("nogroup".into())
        );
        // No passwd file at all: root and numeric ids still work.
        assert_eq!(resolve_user("", &[], &[]).unwrap().uid, 0);
        assert_eq!(resolve_user("5:6", &[], &[]).unwrap().gid, 6);
    }
}

//! Container rows: one per container, its config as JSON, its live state
//! (pid + start time of init and monitor, exit code, OOM flag, times).

use super::lookup::by_id_name_or_prefix;
use super::{is_unique_violation, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub command: Vec<String>,
    /// JSON of `container::ContainerConfig` (kept opaque here: the store
    /// layer does not depend on the lifecycle layer).
    pub config: String,
    /// Created, Running or Exited: the words stored; the others are
    /// worked out from the state files when shown.
    pub status: Status,
    pub pid: i32,
    pub pid_start: u64,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub created: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// Frozen by `pause` (written by pause/unpause, cleared by every start
    /// and exit): `ps` shows it without a read of each container's freezer.
    pub paused: bool,
}

/// Docker's container status words (`State.Status`, `ps --filter status=`).
/// A row stores `Created`, `Running` or `Exited` as that text; `Paused` and
/// `Restarting` are read from the cgroup and the restart state when shown;
/// `Removing` and `Dead` are Docker's words minirt accepts in filters but
/// never shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Created,
    Restarting,
    Running,
    Removing,
    Paused,
    Exited,
    Dead,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Created,
        Status::Restarting,
        Status::Running,
        Status::Removing,
        Status::Paused,
        Status::Exited,
        Status::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Restarting => "restarting",
            Status::Running => "running",
            Status::Removing => "removing",
            Status::Paused => "paused",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not one of Docker's container statuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid container status {0:?}")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> std::result::Result<Status, UnknownStatus> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl rusqlite::types::ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for Status {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Status> {
        v.as_str()?
            .parse()
            .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

// The stored words under their old names (kept while other branches still
// spell them so; new code names `Status::...`).
pub const CREATED: Status = Status::Created;
pub const RUNNING: Status = Status::Running;
pub const EXITED: Status = Status::Exited;

const COLUMNS: &str = "id, name, image, image_id, command, config, status, pid, pid_start, \
    monitor_pid, monitor_start, exit_code, oom_killed, created, started_at, finished_at, paused";

fn from_row(r: &Row) -> rusqlite::Result<ContainerRow> {
    let command: String = r.get(4)?;
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        image_id: r.get(3)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        config: r.get(5)?,
        status: r.get(6)?,
        pid: r.get(7)?,
        pid_start: r.get::<_, i64>(8)? as u64,
        monitor_pid: r.get(9)?,
        monitor_start: r.get::<_, i64>(10)? as u64,
        exit_code: r.get(11)?,
        oom_killed: r.get::<_, i64>(12)? != 0,
        created: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        paused: r.get::<_, i64>(16)? != 0,
    })
}

/// Inserts a new container; a taken name is a Conflict naming the holder.
pub fn insert(c: &Connection, row: &ContainerRow) -> Result<()> {
    let res = c.execute(
        &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"),
        params![
            row.id,
            row.name,
            row.image,
            row.image_id,
            serde_json::to_string(&row.command)?,
            row.config,
            row.status,
            row.pid,
            row.pid_start as i64,
            row.monitor_pid,
            row.monitor_start as i64,
            row.exit_code,
            row.oom_killed as i64,
            row.created,
            row.started_at,
            row.finished_at,
            row.paused as i64
        ],
    );
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            let holder: Option<String> = c
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1",
                    [&row.name],
                    |r| r.get(0),
                )
                .optional()?;
            Err(StoreError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                row.name,
                holder.unwrap_or_default()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn get(c: &Connection, id: &str) -> Result<Option<ContainerRow>> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?)
}

/// Finds a container by full id, name, or unique id prefix (Docker's order,
/// `lookup::by_id_name_or_prefix`); a miss is `NotFound`, a prefix of several
/// ids a `Conflict`.
pub fn lookup(c: &Connection, key: &str) -> Result<ContainerRow> {
    find(c, key)?.ok_or_else(|| not_found(key))
}

/// `lookup` with a miss as None.
pub fn find(c: &Connection, key: &str) -> Result<Option<ContainerRow>> {
    by_id_name_or_prefix(c, "containers", COLUMNS, key, from_row)?.into_option("container", key)
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound(format!("No such container: {key}"))
}

/// All containers, newest first.
pub fn list(c: &Connection) -> Result<Vec<ContainerRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLUMNS} FROM containers ORDER BY created DESC"
    ))?;
    let rows = st
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Containers whose recorded state says a process may be alive.
pub(crate) fn list_live(c: &Connection) -> Result<Vec<ContainerRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLUMNS} FROM containers WHERE status IN ('created','running')"
    ))?;
    let rows = st
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn set_running(
    c: &Connection,
    id: &str,
    pid: i32,
    pid_start: u64,
    monitor_pid: i32,
    monitor_start: u64,
    started_at: i64,
) -> Result<()> {
    c.execute(
        "UPDATE containers SET status='running', pid=?2, pid_start=?3, monitor_pid=?4, \
         monitor_start=?5, started_at=?6, exit_code=0, oom_killed=0, finished_at=0, paused=0 \
         WHERE id=?1",
        params![
            id,
            pid,
            pid_start as i64,
            monitor_pid,
            monitor_start as i64,
            started_at
        ],
    )?;
    Ok(())
}

/// Marks the container as started-but-not-yet-running (a start in progress).
pub(crate) fn set_created(
    c: &Connection,
    id: &str,
    monitor_pid: i32,
    monitor_start: u64,
) -> Result<()> {
    c.execute(
        "UPDATE containers SET status='created', pid=0, pid_start=0, monitor_pid=?2, monitor_start=?3 WHERE id=?1",
        params![id, monitor_pid, monitor_start as i64],
    )?;
    Ok(())
}

/// Moves the ownership of a live (created or running) container from one
/// process to another in one statement: true when `from` still owned it.
/// A monitor taking over from the CLI and a reconciler taking over from a
/// dead owner both go through here, so at most one of them wins.
pub(crate) fn hand_over(
    c: &Connection,
    id: &str,
    from: (i32, u64),
    to: (i32, u64),
) -> Result<bool> {
    let n = c.execute(
        "UPDATE containers SET monitor_pid=?4, monitor_start=?5 WHERE id=?1 \
         AND monitor_pid=?2 AND monitor_start=?3 AND status IN ('created','running')",
        params![id, from.0, from.1 as i64, to.0, to.1 as i64],
    )?;
    Ok(n == 1)
}

pub(crate) fn set_exited(
    c: &Connection,
    id: &str,
    exit_code: i32,
    oom: bool,
    finished_at: i64,
) -> Result<()> {
    c.execute(
        "UPDATE containers SET status='exited', exit_code=?2, oom_killed=?3, finished_at=?4, \
         monitor_pid=0, monitor_start=0, paused=0 WHERE id=?1",
        params![id, exit_code, oom as i64, finished_at],
    )?;
    Ok(())
}

/// `pause` / `unpause`: what the freezer was just set to.
pub(crate) fn set_paused(c: &Connection, id: &str, paused: bool) -> Result<()> {
    c.execute(
        "UPDATE containers SET paused=?2 WHERE id=?1",
        params![id, paused as i64],
    )?;
    Ok(())
}

/// `update`: the container's stored configuration (JSON) replaced.
pub(crate) fn set_config(c: &Connection, id: &str, config: &str) -> Result<()> {
    c.execute(
        "UPDATE containers SET config=?2 WHERE id=?1",
        params![id, config],
    )?;
    Ok(())
}

/// `rename`: a taken name is a Conflict, like Docker's.
pub fn rename(c: &Connection, id: &str, name: &str) -> Result<()> {
    match c.execute(
        "UPDATE containers SET name = ?2 WHERE id = ?1",
        params![id, name],
    ) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "Error when allocating new name: Conflict. The container name \"/{name}\" is already in use"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub fn delete(c: &Connection, id: &str) -> Result<()> {
    c.execute("DELETE FROM containers WHERE id = ?1", [id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn row(id: &str, name: &str) -> ContainerRow {
        ContainerRow {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            image_id: "img".into(),
            command: vec!["sh".into()],
            config: "{}".into(),
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: 0,
            oom_killed: false,
            created: 1,
            started_at: 0,
            finished_at: 0,
            paused: false,
        }
    }

    fn store() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.conn()
            .execute(
                "INSERT INTO images (id, config, layers, created) VALUES ('img','{}','[]',0)",
                [],
            )
            .unwrap();
        s
    }

    #[test]
    fn name_taken_is_a_conflict_naming_the_holder() {
        let s = store();
        insert(s.conn(), &row("aaaa", "web")).unwrap();
        let e = insert(s.conn(), &row("bbbb", "web")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"/web\" is already in use by container \"aaaa\""),
            "{msg}"
        );
    }

    #[test]
    fn lookup_by_id_name_and_unique_prefix() {
        let s = store();
        insert(s.conn(), &row("abc123", "one")).unwrap();
        insert(s.conn(), &row("abd456", "two")).unwrap();
        assert_eq!(lookup(s.conn(), "abc123").unwrap().name, "one");
        assert_eq!(lookup(s.conn(), "two").unwrap().id, "abd456");
        assert_eq!(lookup(s.conn(), "abc").unwrap().name, "one");
        assert!(matches!(
            lookup(s.conn(), "ab"),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            lookup(s.conn(), "zzz"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn state_transitions_round_trip() {
        let s = store();
        insert(s.conn(), &row("c1", "n1")).unwrap();
        set_running(s.conn(), "c1", 42, 7, 41, 6, 100).unwrap();
        let r = get(s.conn(), "c1").unwrap().unwrap();
        assert_eq!(
            (r.status, r.pid, r.pid_start, r.monitor_pid),
            (Status::Running, 42, 7, 41)
        );
        assert_eq!(list_live(s.conn()).unwrap().len(), 1);
        set_exited(s.conn(), "c1", 137, true, 200).unwrap();
        let r = get(s.conn(), "c1").unwrap().unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.oom_killed),
            (Status::Exited, 137, true)
        );
        assert!(list_live(s.conn()).unwrap().is_empty());
        delete(s.conn(), "c1").unwrap();
        assert!(get(s.conn(), "c1").unwrap().is_none());
    }

    #[test]
    fn status_words_round_trip() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>(), Ok(st));
        }
        assert!("up".parse::<Status>().is_err());
        assert!(
            "Running".parse::<Status>().is_err(),
            "Docker's words are lower case"
        );
    }
}

//! The state store: one SQLite database per instance (`<root>/minirt.db`).
//! WAL mode, a busy timeout and IMMEDIATE transactions make many concurrent
//! minirt processes safe; UNIQUE constraints make double allocation impossible.

pub mod containers;
pub mod images;
pub mod networks;
pub mod volumes;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state database schema version {0} is newer than this minirt understands")]
    TooNew(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Each entry migrates the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE images (
        id          TEXT PRIMARY KEY,          -- sha256 hex of the image config
        config      TEXT NOT NULL,             -- image config JSON (Env, Cmd, ...)
        layers      TEXT NOT NULL,             -- JSON array of layer digests, bottom first
        size        INTEGER NOT NULL DEFAULT 0,
        created     INTEGER NOT NULL
    );
    CREATE TABLE image_tags (
        name        TEXT PRIMARY KEY,          -- "busybox:latest"
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE TABLE layers (
        digest      TEXT PRIMARY KEY,          -- sha256 hex of the uncompressed layer tar
        size        INTEGER NOT NULL,
        created     INTEGER NOT NULL
    );
    CREATE TABLE containers (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        image       TEXT NOT NULL,             -- as the user named it
        image_id    TEXT NOT NULL REFERENCES images(id),
        command     TEXT NOT NULL,             -- JSON array (entrypoint + cmd)
        config      TEXT NOT NULL,             -- JSON ContainerConfig
        status      TEXT NOT NULL,             -- created | running | exited
        pid         INTEGER NOT NULL DEFAULT 0,
        pid_start   INTEGER NOT NULL DEFAULT 0,
        monitor_pid INTEGER NOT NULL DEFAULT 0,
        monitor_start INTEGER NOT NULL DEFAULT 0,
        exit_code   INTEGER NOT NULL DEFAULT 0,
        oom_killed  INTEGER NOT NULL DEFAULT 0,
        created     INTEGER NOT NULL,
        started_at  INTEGER NOT NULL DEFAULT 0,
        finished_at INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX containers_status ON containers(status);
    CREATE TABLE networks (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        driver      TEXT NOT NULL,
        subnet      TEXT NOT NULL,             -- CIDR
        net_start   INTEGER NOT NULL,          -- first address, as u32
        net_end     INTEGER NOT NULL,          -- last address, as u32
        gateway     TEXT NOT NULL,
        bridge      TEXT NOT NULL UNIQUE,
        internal    INTEGER NOT NULL DEFAULT 0,
        mtu         INTEGER NOT NULL DEFAULT 0,
        options     TEXT NOT NULL DEFAULT '{}',
        created     INTEGER NOT NULL
    );
    CREATE TABLE endpoints (
        id          TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id  TEXT NOT NULL REFERENCES networks(id),
        ifname      TEXT NOT NULL,             -- eth0, eth1, ... inside the container
        ip          INTEGER NOT NULL,          -- IPv4 as u32
        mac         TEXT NOT NULL,
        host_veth   TEXT NOT NULL UNIQUE,
        aliases     TEXT NOT NULL DEFAULT '[]',
        UNIQUE (container_id, network_id),
        UNIQUE (container_id, ifname),
        UNIQUE (network_id, ip)
    );
    CREATE INDEX endpoints_network ON endpoints(network_id);
    CREATE TABLE port_bindings (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        proto       TEXT NOT NULL,             -- tcp | udp
        host_ip     TEXT NOT NULL,             -- 0.0.0.0 = every address
        host_port   INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        UNIQUE (proto, host_ip, host_port)
    );
    CREATE INDEX port_bindings_container ON port_bindings(container_id);
    CREATE INDEX port_bindings_port ON port_bindings(proto, host_port);
    "#,
    // v2: the allocator's cursor, so released addresses are not reused at once.
    r#"
    ALTER TABLE networks ADD COLUMN last_ip INTEGER NOT NULL DEFAULT 0;  -- IPv4 as u32
    "#,
    // v3: host veths of exited containers, left to the kernel to remove.
    r#"
    CREATE TABLE dying_links (
        name        TEXT PRIMARY KEY,          -- host-side veth
        since       INTEGER NOT NULL           -- ns since the epoch
    );
    CREATE INDEX dying_links_since ON dying_links(since);
    "#,
    // v4: the manifest digests images were pulled by (`images --digests`, `name@sha256:`).
    r#"
    CREATE TABLE image_digests (
        repository  TEXT NOT NULL,             -- "busybox", "localhost:5000/app"
        digest      TEXT NOT NULL,             -- "sha256:<hex>" of the manifest pulled
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX image_digests_image ON image_digests(image_id);
    "#,
    // v5 (cmds): named and anonymous volumes (`volume create`, `-v NAME:/path`).
    r#"
    CREATE TABLE volumes (
        name        TEXT PRIMARY KEY,
        driver      TEXT NOT NULL DEFAULT 'local',
        labels      TEXT NOT NULL DEFAULT '{}',  -- JSON object
        anonymous   INTEGER NOT NULL DEFAULT 0,  -- made for `-v /path`, removed by `rm -v`
        created     INTEGER NOT NULL             -- ns since the epoch
    );
    "#,
];

pub struct Store {
    conn: ManuallyDrop<Connection>,
    /// The database file, when the connection goes back to [`IDLE`] on drop.
    path: Option<PathBuf>,
}

/// One open connection kept between the stores a command opens (`run`
/// opens one to create, one to start, one to finish): opening costs the
/// file opens, pragmas and a parse of the schema each time. Tagged with the
/// pid: a copy inherited across fork is never used (SQLite forbids it).
struct Idle {
    pid: u32,
    path: PathBuf,
    conn: Connection,
}

static IDLE: Mutex<Option<Idle>> = Mutex::new(None);

/// The idle connection to `path`, if this process has one.
fn take_idle(path: &Path) -> Option<Connection> {
    // try_lock: after a fork the lock may be held by a thread that is gone.
    let mut slot = IDLE.try_lock().ok()?;
    match slot.take() {
        Some(i) if i.pid == std::process::id() && i.path == path => Some(i.conn),
        Some(i) if i.pid != std::process::id() => {
            // The parent's: closing it here could disturb the parent's locks.
            std::mem::forget(i.conn);
            None
        }
        other => {
            *slot = other;
            None
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the only place the connection is taken out; `self` is not
        // used afterwards.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        let Some(path) = self.path.take() else { return };
        if !conn.is_autocommit() {
            return; // mid-transaction (a panic): closing rolls it back
        }
        if let Ok(mut slot) = IDLE.try_lock() {
            if slot.is_none() {
                *slot = Some(Idle {
                    pid: std::process::id(),
                    path,
                    conn,
                });
            }
        }
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(conn) = take_idle(path) {
            let mut store = Store {
                conn: ManuallyDrop::new(conn),
                path: Some(path.to_path_buf()),
            };
            // Cheap (the header's version), and another process may have
            // upgraded the schema meanwhile.
            store.migrate()?;
            return Ok(store);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(60))?;
        // WAL: readers never block the writer; NORMAL sync is crash-safe in WAL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each minirt command opens and closes the database; a checkpoint on
        // every close would fsync twice per command. Checkpoints still run
        // automatically as the WAL grows, and often: no connection outlives
        // a command process, so each one's first open replays the whole WAL into
        // the index, and a long WAL would slow every command down (the soak
        // test saw +18% with SQLite's default of 1000 pages).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        conn.pragma_update(None, "wal_autocheckpoint", 64)?;
        let mut store = Store {
            conn: ManuallyDrop::new(conn),
            path: Some(path.to_path_buf()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// An in-memory store for unit tests.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store {
            conn: ManuallyDrop::new(conn),
            path: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let target = MIGRATIONS.len() as i64;
        if current > target {
            return Err(StoreError::TooNew(current));
        }
        if current == target {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated.
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in one IMMEDIATE transaction (takes the write lock up front,
    /// so two processes never deadlock upgrading a read lock).
    pub fn write<T, E>(
        &mut self,
        f: impl FnOnce(&Transaction) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Read-only access (a single statement or a deferred read).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// True when a rusqlite error is a UNIQUE / PRIMARY KEY violation.
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_reopens_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minirt.db");
        {
            let s = Store::open(&p).unwrap();
            let v: i64 = s
                .conn()
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
        let s = Store::open(&p).unwrap();
        let n: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n >= 7);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minirt.db");
        drop(Store::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew(99))));
    }
}

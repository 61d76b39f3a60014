//! The state store: one SQLite database per instance (`<root>/minirt.db`).
//! WAL mode, a busy timeout and IMMEDIATE transactions make many concurrent
//! minirt processes safe; UNIQUE constraints make double allocation impossible.

pub mod containers;
pub mod images;
pub mod lookup;
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
    // v5: a driver-neutral schema. `networks.bridge` becomes `device` (the
    // host-side device the network lives on: the bridge, or a macvlan's
    // parent) and is unique only among bridge networks (two macvlan networks
    // may share a parent); `endpoints.host_veth` becomes `host_ifname` (the
    // host side of the endpoint, when the driver has one). SQLite cannot
    // drop a column constraint in place, so the three tables are rebuilt
    // children-first and renamed, which rewrites the foreign keys.
    r#"
    CREATE TABLE networks_v5 (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        driver      TEXT NOT NULL,             -- bridge | macvlan
        subnet      TEXT NOT NULL,             -- CIDR
        net_start   INTEGER NOT NULL,          -- first address, as u32
        net_end     INTEGER NOT NULL,          -- last address, as u32
        gateway     TEXT NOT NULL,
        device      TEXT NOT NULL,             -- bridge name, or macvlan parent
        internal    INTEGER NOT NULL DEFAULT 0,
        mtu         INTEGER NOT NULL DEFAULT 0,
        options     TEXT NOT NULL DEFAULT '{}',
        created     INTEGER NOT NULL,
        last_ip     INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO networks_v5 (id, name, driver, subnet, net_start, net_end, gateway, device,
                             internal, mtu, options, created, last_ip)
        SELECT id, name, driver, subnet, net_start, net_end, gateway, bridge,
               internal, mtu, options, created, last_ip FROM networks;
    CREATE TABLE endpoints_v5 (
        id          TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id  TEXT NOT NULL REFERENCES networks_v5(id),
        ifname      TEXT NOT NULL,             -- eth0, eth1, ... inside the container
        ip          INTEGER NOT NULL,          -- IPv4 as u32
        mac         TEXT NOT NULL,
        host_ifname TEXT NOT NULL UNIQUE,      -- host-side veth, or the name a
                                               -- macvlan is made under before it moves
        aliases     TEXT NOT NULL DEFAULT '[]',
        UNIQUE (container_id, network_id),
        UNIQUE (container_id, ifname),
        UNIQUE (network_id, ip)
    );
    INSERT INTO endpoints_v5 (id, container_id, network_id, ifname, ip, mac, host_ifname, aliases)
        SELECT id, container_id, network_id, ifname, ip, mac, host_veth, aliases FROM endpoints;
    CREATE TABLE port_bindings_v5 (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        endpoint_id TEXT NOT NULL REFERENCES endpoints_v5(id) ON DELETE CASCADE,
        proto       TEXT NOT NULL,             -- tcp | udp
        host_ip     TEXT NOT NULL,             -- 0.0.0.0 = every address
        host_port   INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        UNIQUE (proto, host_ip, host_port)
    );
    INSERT INTO port_bindings_v5 SELECT container_id, endpoint_id, proto, host_ip, host_port,
        container_port FROM port_bindings;
    DROP TABLE port_bindings;
    DROP TABLE endpoints;
    DROP TABLE networks;
    ALTER TABLE networks_v5 RENAME TO networks;
    ALTER TABLE endpoints_v5 RENAME TO endpoints;
    ALTER TABLE port_bindings_v5 RENAME TO port_bindings;
    CREATE UNIQUE INDEX networks_bridge_device ON networks(device) WHERE driver = 'bridge';
    CREATE INDEX endpoints_network ON endpoints(network_id);
    CREATE INDEX port_bindings_container ON port_bindings(container_id);
    CREATE INDEX port_bindings_port ON port_bindings(proto, host_port);
    "#,
    // v6: IPv6 (issue 16): a network's v6 subnet, gateway and allocator cursor
    // ('' when it has none); an endpoint's v6 address (NULL when none),
    // unique per network like the IPv4 address.
    r#"
    ALTER TABLE networks ADD COLUMN subnet6 TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN gateway6 TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN last_ip6 TEXT NOT NULL DEFAULT '';
    ALTER TABLE endpoints ADD COLUMN ip6 TEXT;
    CREATE UNIQUE INDEX endpoints_network_ip6 ON endpoints(network_id, ip6);
    "#,
    // v7: named and anonymous volumes (`volume create`, `-v NAME:/path`).
    r#"
    CREATE TABLE volumes (
        name        TEXT PRIMARY KEY,
        driver      TEXT NOT NULL DEFAULT 'local',
        labels      TEXT NOT NULL DEFAULT '{}',  -- JSON object
        anonymous   INTEGER NOT NULL DEFAULT 0,  -- made for `-v /path`, removed by `rm -v`
        created     INTEGER NOT NULL             -- ns since the epoch
    );
    "#,
    // ipv6 branch: IPv6-only networks (issue 16). An endpoint may have no
    // IPv4 address (`endpoints.ip` NULL; a v6-only network's row keeps
    // `subnet`/`gateway` '' and net_start/net_end 0). SQLite cannot drop a
    // NOT NULL in place: endpoints is rebuilt, and port_bindings with it
    // (dropping the parent table would cascade-delete its bindings),
    // children-first like v5, every constraint and index kept.
    r#"
    CREATE TABLE endpoints_v6only (
        id          TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id  TEXT NOT NULL REFERENCES networks(id),
        ifname      TEXT NOT NULL,             -- eth0, eth1, ... inside the container
        ip          INTEGER,                   -- IPv4 as u32; NULL on an IPv6-only network
        mac         TEXT NOT NULL,
        host_ifname TEXT NOT NULL UNIQUE,      -- host-side veth, or the name a
                                               -- macvlan is made under before it moves
        aliases     TEXT NOT NULL DEFAULT '[]',
        ip6         TEXT,                      -- NULL on a network without IPv6
        UNIQUE (container_id, network_id),
        UNIQUE (container_id, ifname),
        UNIQUE (network_id, ip)
    );
    INSERT INTO endpoints_v6only (id, container_id, network_id, ifname, ip, mac, host_ifname,
                                  aliases, ip6)
        SELECT id, container_id, network_id, ifname, ip, mac, host_ifname, aliases, ip6
        FROM endpoints;
    CREATE TABLE port_bindings_v6only (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        endpoint_id TEXT NOT NULL REFERENCES endpoints_v6only(id) ON DELETE CASCADE,
        proto       TEXT NOT NULL,             -- tcp | udp
        host_ip     TEXT NOT NULL,             -- 0.0.0.0 / :: = every address
        host_port   INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        UNIQUE (proto, host_ip, host_port)
    );
    INSERT INTO port_bindings_v6only SELECT container_id, endpoint_id, proto, host_ip,
        host_port, container_port FROM port_bindings;
    DROP TABLE port_bindings;
    DROP TABLE endpoints;
    ALTER TABLE endpoints_v6only RENAME TO endpoints;
    ALTER TABLE port_bindings_v6only RENAME TO port_bindings;
    CREATE INDEX endpoints_network ON endpoints(network_id);
    CREATE UNIQUE INDEX endpoints_network_ip6 ON endpoints(network_id, ip6);
    CREATE INDEX port_bindings_container ON port_bindings(container_id);
    CREATE INDEX port_bindings_port ON port_bindings(proto, host_port);
    "#,
    // cli branch: events
    // v9: the event log `minirt events` reads (Docker's vocabulary), kept to
    // the last 10 000 rows and one week (container::events::prune).
    r#"
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,         -- rowid: the follow cursor
        time_ns     INTEGER NOT NULL,            -- ns since the epoch
        type        TEXT NOT NULL,               -- container | image | network | volume
        action      TEXT NOT NULL,               -- start, die, "health_status: healthy" ...
        actor       TEXT NOT NULL,               -- the object's id (or reference)
        attributes  TEXT NOT NULL DEFAULT '{}'   -- JSON object of strings
    );
    "#,
    // v10: the paused flag `pause`/`unpause` write, so `ps` with 1000
    // containers reads no freezer file per row.
    r#"
    ALTER TABLE containers ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    "#,
    // v11: a counter every change to what the firewall and the
    // anti-spoofing table are built from moves, in the same transaction (the
    // triggers fire for cascaded deletes too). A command's heal check reads
    // it, not the 1000 endpoints and bindings it stands for, to see whether
    // the store still wants what the last intact check saw.
    r#"
    CREATE TABLE firewall_epoch (n INTEGER NOT NULL);
    INSERT INTO firewall_epoch VALUES (0);
    CREATE TRIGGER fw_networks_i AFTER INSERT ON networks BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_networks_u AFTER UPDATE ON networks BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_networks_d AFTER DELETE ON networks BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_endpoints_i AFTER INSERT ON endpoints BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_endpoints_u AFTER UPDATE ON endpoints BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_endpoints_d AFTER DELETE ON endpoints BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_ports_i AFTER INSERT ON port_bindings BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_ports_u AFTER UPDATE ON port_bindings BEGIN UPDATE firewall_epoch SET n = n + 1; END;
    CREATE TRIGGER fw_ports_d AFTER DELETE ON port_bindings BEGIN UPDATE firewall_epoch SET n = n + 1; END;
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

/// SQLITE_BUSY or SQLITE_LOCKED.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

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
        // SQLite answers SQLITE_BUSY without calling the busy handler while
        // another connection cleans up the WAL as the last one to close, or
        // recovers it as the first to open (sqlite.org/wal.html, "Sometimes
        // Queries Return SQLITE_BUSY In WAL Mode"): every minirt command
        // opens and closes the database, so opening retries that for a while.
        // Nothing here has effects but the schema migration, which is one
        // transaction.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Self::open_new(path) {
                Err(StoreError::Sqlite(e))
                    if is_busy(&e) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                res => return res,
            }
        }
    }

    fn open_new(path: &Path) -> Result<Store> {
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
    #[cfg(test)]
    pub(crate) fn open_in_memory() -> Result<Store> {
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
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
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

    /// `PRAGMA foreign_key_check` finds nothing.
    fn assert_foreign_keys_hold(c: &Connection) {
        let fk: Vec<String> = c
            .prepare("PRAGMA foreign_key_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(fk.is_empty(), "{fk:?}");
    }

    /// A database at schema `version` (the first `version` migrations),
    /// with `rows` inserted.
    fn at_version(p: &Path, version: usize, rows: &str) {
        let c = Connection::open(p).unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for sql in &MIGRATIONS[..version] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", version as i64)
            .unwrap();
        c.execute_batch(rows).unwrap();
    }

    /// The store opened on `p`, checked to be at the newest schema.
    fn migrated(p: &Path) -> Store {
        let s = Store::open(p).unwrap();
        let v: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        s
    }

    #[test]
    fn migrates_fresh_and_reopens_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minirt.db");
        drop(migrated(&p));
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

    #[test]
    fn v5_makes_a_v4_database_driver_neutral_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minirt.db");
        at_version(
            &p,
            4,
                "INSERT INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0);
                 INSERT INTO containers (id, name, image, image_id, command, config, status, created)
                     VALUES ('c1', 'web', 'busybox', 'img', '[]', '{}', 'running', 0);
                 INSERT INTO networks (id, name, driver, subnet, net_start, net_end, gateway,
                     bridge, options, created, last_ip)
                     VALUES ('n1', 'front', 'bridge', '10.88.0.0/24', 1, 2, '10.88.0.1',
                     'mrb-n1', '{\"com.docker.network.bridge.name\":\"mrb-n1\"}', 7, 5);
                 INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac, host_veth)
                     VALUES ('e1', 'c1', 'n1', 'eth0', 5, '02:42:0a:58:00:05', 'mrve1');
                 INSERT INTO port_bindings VALUES ('c1', 'e1', 'tcp', '0.0.0.0', 8080, 80);",
        );
        let s = migrated(&p);
        let c = s.conn();
        let n = networks::find_network(c, "front").unwrap().unwrap();
        assert_eq!((n.device.as_str(), n.driver.as_str()), ("mrb-n1", "bridge"));
        assert_eq!(n.options["com.docker.network.bridge.name"], "mrb-n1");
        assert_eq!(networks::last_ip(c, "n1").unwrap(), 5);
        let eps = networks::endpoints_of_container(c, "c1").unwrap();
        assert_eq!(eps[0].host_ifname, "mrve1");
        assert_eq!(
            networks::port_bindings_of_container(c, "c1").unwrap().len(),
            1
        );
        // The foreign keys and cascades still hold after the rebuild.
        assert!(c
            .execute(
                "INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac, host_ifname)
                 VALUES ('e2', 'c1', 'nosuch', 'eth1', 6, 'm', 'x')",
                [],
            )
            .is_err());
        assert_foreign_keys_hold(c);
        c.execute("DELETE FROM containers WHERE id = 'c1'", [])
            .unwrap();
        assert!(networks::all_port_bindings(c).unwrap().is_empty());
        assert!(networks::used_ips(c, "n1").unwrap().is_empty());
        // Bridge names stay unique, macvlan parents may be shared.
        let mut row = n.clone();
        row.id = "n2".into();
        row.name = "again".into();
        row.net_start = 10;
        assert!(networks::insert_network(c, &row).is_err());
        for (id, name) in [("m1", "lan1"), ("m2", "lan2")] {
            row.id = id.into();
            row.name = name.into();
            row.driver = "macvlan".into();
            row.device = "eth0".into();
            networks::insert_network(c, &row).unwrap();
        }
    }

    /// The ipv6 branch's migration (v8): endpoints may lose their
    /// IPv4 address; rows, foreign keys, cascades and indexes survive.
    #[test]
    fn ipv6_only_migration_keeps_rows_and_constraints() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minirt.db");
        let before = 7; // up to v7; v8 is the migration under test
        at_version(
            &p,
            before,
                "INSERT INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0);
                 INSERT INTO containers (id, name, image, image_id, command, config, status, created)
                     VALUES ('c1', 'web', 'busybox', 'img', '[]', '{}', 'running', 0),
                            ('c2', 'db', 'busybox', 'img', '[]', '{}', 'running', 0);
                 INSERT INTO networks (id, name, driver, subnet, net_start, net_end, gateway,
                     device, created, subnet6, gateway6)
                     VALUES ('n1', 'front', 'bridge', '10.88.0.0/24', 1, 2, '10.88.0.1',
                     'mrb-n1', 7, 'fd00:1::/64', 'fd00:1::1');
                 INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac,
                     host_ifname, aliases, ip6)
                     VALUES ('e1', 'c1', 'n1', 'eth0', 5, '02:42:0a:58:00:05', 'mrve1',
                     '[\"www\"]', 'fd00:1::2');
                 INSERT INTO port_bindings VALUES ('c1', 'e1', 'tcp', '0.0.0.0', 8080, 80);",
        );
        let s = migrated(&p);
        let c = s.conn();
        let eps = networks::endpoints_of_container(c, "c1").unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].ip, std::net::Ipv4Addr::from(5));
        assert_eq!(eps[0].ip6, Some("fd00:1::2".parse().unwrap()));
        assert_eq!(eps[0].aliases, ["www"]);
        let pb = networks::port_bindings_of_container(c, "c1").unwrap();
        assert_eq!((pb.len(), pb[0].host_port), (1, 8080));
        // The same indexes as before, by name.
        let idx: Vec<String> = c
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name IN ('endpoints', 'port_bindings') ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            idx,
            [
                "endpoints_network",
                "endpoints_network_ip6",
                "port_bindings_container",
                "port_bindings_port"
            ]
        );
        // NULL IPv4 now allowed, several per network; the rest still unique.
        let add = |id: &str, cid: &str, ifname: &str, ip: Option<i64>, ip6: &str, hv: &str| {
            c.execute(
                "INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac, host_ifname, ip6)
                 VALUES (?1, ?2, 'n1', ?3, ?4, 'm', ?5, ?6)",
                rusqlite::params![id, cid, ifname, ip, hv, ip6],
            )
        };
        add("e2", "c2", "eth0", None, "fd00:1::3", "mrve2").unwrap();
        assert!(
            add("e3", "c2", "eth1", None, "fd00:1::4", "mrve3").is_err(),
            "one per network"
        );
        c.execute("DELETE FROM endpoints WHERE id = 'e2'", [])
            .unwrap();
        assert!(
            add("e4", "c2", "eth0", Some(5), "fd00:1::5", "mrve4").is_err(),
            "ip unique"
        );
        assert!(
            add("e5", "c2", "eth0", None, "fd00:1::2", "mrve5").is_err(),
            "ip6 unique"
        );
        assert!(
            add("e6", "c2", "eth0", None, "fd00:1::6", "mrve1").is_err(),
            "veth unique"
        );
        assert!(c
            .execute(
                "INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac, host_ifname)
                 VALUES ('e7', 'c2', 'nosuch', 'eth0', NULL, 'm', 'x')",
                [],
            )
            .is_err());
        assert_foreign_keys_hold(c);
        // Cascades: the container's endpoint and binding go with it.
        c.execute("DELETE FROM containers WHERE id = 'c1'", [])
            .unwrap();
        assert!(networks::all_port_bindings(c).unwrap().is_empty());
        assert!(networks::endpoints_of_network(c, "n1").unwrap().is_empty());
    }
}

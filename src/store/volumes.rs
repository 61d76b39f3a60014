//! Volume rows: a name, its driver (`local`), labels, whether it was made
//! anonymously for one container, and when. The data lives under
//! `<root>/volumes/NAME/_data`; which containers use a volume is read from
//! their configurations.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    /// JSON object.
    pub labels: String,
    pub anonymous: bool,
    pub created: i64,
}

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        driver: r.get(1)?,
        labels: r.get(2)?,
        anonymous: r.get::<_, i64>(3)? != 0,
        created: r.get(4)?,
    })
}

const COLUMNS: &str = "name, driver, labels, anonymous, created";

/// Inserts `v` unless a volume of that name exists; true when inserted.
pub fn insert(c: &Connection, v: &VolumeRow) -> Result<bool> {
    let n = c.execute(
        "INSERT OR IGNORE INTO volumes (name, driver, labels, anonymous, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![v.name, v.driver, v.labels, v.anonymous as i64, v.created],
    )?;
    Ok(n == 1)
}

pub fn get(c: &Connection, name: &str) -> Result<Option<VolumeRow>> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
        [name],
        from_row,
    )
    .optional()?)
}

pub fn list(c: &Connection) -> Result<Vec<VolumeRow>> {
    let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))?;
    let rows = st
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn delete(c: &Connection, name: &str) -> Result<()> {
    c.execute("DELETE FROM volumes WHERE name = ?1", [name])?;
    Ok(())
}

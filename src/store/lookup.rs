//! Docker's lookup of an object by what a user typed: the full id, else the
//! exact name, else a unique id prefix. One function for every table with
//! `id` and `name` columns, so containers and networks
//! are found by the same rule with the same ambiguity message.

use super::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found<T> {
    One(T),
    Missing,
    /// The key is a prefix of several ids (and no full id or name).
    Ambiguous,
}

impl<T> Found<T> {
    /// `Missing` as None; `Ambiguous` as the one Conflict error, worded with
    /// `kind` ("container", "network").
    pub(crate) fn into_option(self, kind: &str, key: &str) -> Result<Option<T>> {
        match self {
            Found::One(t) => Ok(Some(t)),
            Found::Missing => Ok(None),
            Found::Ambiguous => Err(StoreError::Conflict(format!(
                "multiple {kind}s found with provided prefix: {key}"
            ))),
        }
    }
}

/// Finds the row of `table` that `key` names: `id = key`, else `name = key`,
/// else the only row whose id starts with `key` (hex keys only). `table` and
/// `columns` are the caller's constants, never user input; `map` reads one
/// row of `columns`.
pub(crate) fn by_id_name_or_prefix<T>(
    c: &Connection,
    table: &str,
    columns: &str,
    key: &str,
    map: fn(&Row) -> rusqlite::Result<T>,
) -> Result<Found<T>> {
    for column in ["id", "name"] {
        let q = format!("SELECT {columns} FROM {table} WHERE {column} = ?1");
        if let Some(t) = c.query_row(&q, [key], map).optional()? {
            return Ok(Found::One(t));
        }
    }
    if key.is_empty() || !key.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Ok(Found::Missing);
    }
    // Range scan on the primary key: key <= id < key + 'g' (ids are lowercase hex).
    let mut st = c.prepare(&format!(
        "SELECT {columns} FROM {table} WHERE id >= ?1 AND id < ?2 LIMIT 2"
    ))?;
    let mut rows: Vec<T> = st
        .query_map(params![key, format!("{key}g")], map)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match rows.len() {
        0 => Found::Missing,
        1 => rows.pop().map_or(Found::Missing, Found::One),
        _ => Found::Ambiguous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT UNIQUE);
             INSERT INTO t VALUES ('abc123', 'one'), ('abd456', 'two'),
                                  ('ffff00', 'abc123x'), ('0a0a', 'abd456');",
        )
        .unwrap();
        c
    }

    fn find(c: &Connection, key: &str) -> Found<String> {
        by_id_name_or_prefix(c, "t", "id", key, |r| r.get(0)).unwrap()
    }

    #[test]
    fn full_id_then_name_then_unique_prefix() {
        let c = db();
        assert_eq!(find(&c, "abc123"), Found::One("abc123".into()));
        assert_eq!(find(&c, "two"), Found::One("abd456".into()));
        // A full id wins over a name equal to it.
        assert_eq!(find(&c, "abd456"), Found::One("abd456".into()));
        // A name wins over an id prefix.
        assert_eq!(find(&c, "abc123x"), Found::One("ffff00".into()));
        assert_eq!(find(&c, "abc"), Found::One("abc123".into()));
        assert_eq!(find(&c, "ab"), Found::Ambiguous);
        assert_eq!(find(&c, "abx"), Found::Missing);
        assert_eq!(find(&c, "zzz"), Found::Missing);
        assert_eq!(find(&c, ""), Found::Missing);
        let e = find(&c, "ab").into_option("container", "ab").unwrap_err();
        assert_eq!(
            e.to_string(),
            "multiple containers found with provided prefix: ab"
        );
        assert_eq!(
            find(&c, "zzz").into_option("container", "zzz").unwrap(),
            None
        );
    }
}

//! Re-sealing every stored credential under the current encryption key (`tether rotate-key`).

use std::collections::BTreeSet;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};

/// Every column holding sealed values: (table, column).
pub const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("service_bindings", "credentials"),
    ("service_keys", "credentials"),
    ("service_instances", "credentials"),
    ("service_brokers", "auth_password"),
    ("registry_secrets", "password"),
];

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
}

pub struct Report {
    pub resealed: Vec<(&'static str, usize)>,
    /// Key labels still found in stored values afterwards.
    pub labels_in_use: BTreeSet<String>,
}

/// Re-seals, in batches of one transaction each, every value not sealed under the current key.
pub fn reseal_all(db: &crate::app::Store, keyring: &KeyRing) -> ApiResult<Report> {
    let current = keyring.current_label();
    let mut resealed = Vec::new();
    let mut labels_in_use = BTreeSet::new();
    for (table, column) in SEALED_COLUMNS {
        let mut count = 0usize;
        let mut after = 0i64;
        loop {
            let batch: Vec<Row> = db.read_blocking(|conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, {column} AS value FROM {table} WHERE id > $1 ORDER BY id LIMIT 500"
                ))
                .bind::<BigInt, _>(after)
                .load(conn)?)
            })?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            let mut updates = Vec::new();
            for row in batch {
                let Some(value) = row.value else { continue };
                if KeyRing::label_of(&value) == Some(current.as_str()) {
                    continue;
                }
                let plain = keyring.open(&value).map_err(|e| {
                    ApiError::internal(format!("{table}.{column} row {}: {e}", row.id))
                })?;
                updates.push((row.id, keyring.seal(&plain)));
            }
            count += updates.len();
            let (table, column) = (*table, *column);
            db.write_blocking(move |conn| {
                for (id, sealed) in &updates {
                    diesel::sql_query(format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
                        .bind::<Text, _>(sealed)
                        .bind::<BigInt, _>(*id)
                        .execute(conn)?;
                }
                Ok(())
            })?;
        }
        // What is left (written meanwhile by a server that had not reloaded yet).
        let mut after = 0i64;
        loop {
            let batch: Vec<Row> = db.read_blocking(|conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, {column} AS value FROM {table} WHERE id > $1 ORDER BY id LIMIT 1000"
                ))
                .bind::<BigInt, _>(after)
                .load(conn)?)
            })?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            for row in batch {
                if let Some(l) = row.value.as_deref().and_then(KeyRing::label_of) {
                    labels_in_use.insert(l.to_string());
                }
            }
        }
        resealed.push((*table, count));
    }
    Ok(Report {
        resealed,
        labels_in_use,
    })
}

/// Sealed values read from each end of each table by [`unknown_key_labels`].
const START_CHECK_SAMPLE: usize = 500;

/// Key labels of sealed values in the database that `keyring` cannot open, from a sample: the
/// oldest and the newest [`START_CHECK_SAMPLE`] rows of each table (two range reads of its
/// primary key). Checked when `tether serve` starts, so that an instance given other secrets
/// than its peers refuses to start instead of failing request after request. A sample, not
/// every row: a scan of a million bindings' credentials took ~180 ms of every start (measured
/// by the benchmark's restarts), and a server with the wrong secrets cannot open any of what
/// its peers sealed, so both ends show it. Values a rotation left under a retired key are what
/// `tether rotate-key` finds and reseals, reading every row.
pub fn unknown_key_labels(
    db: &crate::app::Store,
    keyring: &KeyRing,
) -> ApiResult<BTreeSet<String>> {
    let known = keyring.labels();
    let mut unknown = BTreeSet::new();
    for (table, column) in SEALED_COLUMNS {
        for order in ["ASC", "DESC"] {
            let sql = format!(
                "SELECT id, {column} AS value FROM {table} ORDER BY id {order} LIMIT {START_CHECK_SAMPLE}"
            );
            let rows: Vec<Row> = db.read_blocking(|conn| Ok(diesel::sql_query(sql).load(conn)?))?;
            unknown.extend(
                rows.iter()
                    .filter_map(|r| r.value.as_deref().and_then(KeyRing::label_of))
                    .filter(|label| !known.iter().any(|k| k == label))
                    .map(str::to_string),
            );
        }
    }
    Ok(unknown)
}

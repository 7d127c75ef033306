//! Regulation counts and bans in the SQLite store, so every process that opens the database
//! (each `serve`, `check`, pam_portcullis under sshd) sees one set of bans.

use super::SqliteStore;
use portcullis_core::StoreError;
use portcullis_core::regulation::{Record, RegulationPolicy, RegulationStore};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

/// Failure times as stored: decimal seconds, comma-separated, oldest first.
fn failures_text(r: &Record) -> String {
    r.failures.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn failures_parse(text: &str) -> std::collections::VecDeque<i64> {
    text.split(',').filter_map(|t| t.parse().ok()).collect()
}

fn read(tx: &rusqlite::Connection, key: &str) -> rusqlite::Result<Record> {
    Ok(tx
        .prepare_cached("SELECT failures, banned_until, touched FROM regulation WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(Record {
                failures: failures_parse(&r.get::<_, String>(0)?),
                banned_until: r.get(1)?,
                touched: r.get(2)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

impl RegulationStore for SqliteStore {
    fn banned(&self, keys: &[String], now: i64) -> Result<bool, StoreError> {
        let conn = self.lock();
        for k in keys {
            let until: Option<i64> = conn
                .prepare_cached("SELECT banned_until FROM regulation WHERE key = ?1")
                .and_then(|mut s| s.query_row([k], |r| r.get(0)).optional())
                .map_err(|e| self.err(e))?;
            if until.is_some_and(|u| now < u) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn fail(&self, keys: &[String], now: i64, policy: &RegulationPolicy) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: the read and the write are one step against every other process.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut banned = Vec::with_capacity(keys.len());
        for k in keys {
            let mut r = read(&tx, k).map_err(|e| self.err(e))?;
            banned.push(r.fail(now, policy));
            tx.execute(
                "INSERT OR REPLACE INTO regulation (key, failures, banned_until, touched) VALUES (?1, ?2, ?3, ?4)",
                params![k, failures_text(&r), r.banned_until, r.touched],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(banned)
    }

    fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("UPDATE regulation SET failures = '' WHERE key = ?1", [key])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn banned_count(&self, now: i64) -> Result<usize, StoreError> {
        self.lock()
            .query_row("SELECT count(*) FROM regulation WHERE banned_until > ?1", [now], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.err(e))
    }

    fn tracked(&self) -> Result<usize, StoreError> {
        self.lock()
            .query_row("SELECT count(*) FROM regulation", [], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.err(e))
    }

    fn purge(&self, now: i64, policy: &RegulationPolicy) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, Record)> = tx
            .prepare("SELECT key, failures, banned_until, touched FROM regulation")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Record {
                            failures: failures_parse(&r.get::<_, String>(1)?),
                            banned_until: r.get(2)?,
                            touched: r.get(3)?,
                        },
                    ))
                })?
                .collect()
            })
            .map_err(|e| self.err(e))?;
        let mut dropped = 0;
        for (k, _) in rows.iter().filter(|(_, r)| !r.matters(now, policy)) {
            tx.execute("DELETE FROM regulation WHERE key = ?1", [k])
                .map_err(|e| self.err(e))?;
            dropped += 1;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(dropped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_store_keeps_the_regulation_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        portcullis_core::regulation::check_store_contract(&store);
    }

    #[test]
    fn a_ban_made_by_one_process_is_seen_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (one, two) = (SqliteStore::open(&path).unwrap(), SqliteStore::open(&path).unwrap());
        let policy = RegulationPolicy {
            max_retries: 2,
            ..RegulationPolicy::default()
        };
        let k = ["user:alice".to_string()];
        assert_eq!(one.fail(&k, 100, &policy).unwrap(), [false]);
        assert_eq!(two.fail(&k, 101, &policy).unwrap(), [true], "counted together");
        assert!(one.banned(&k, 102).unwrap());
    }
}

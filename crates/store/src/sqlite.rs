//! The embedded SQLite directory: one file, WAL mode, every update in an IMMEDIATE
//! transaction so concurrent processes verifying one code serialise and only one wins.

use portcullis_core::model::{FirstFactor, ScratchHash, Step, Token, TokenKind, User};
use portcullis_core::{Directory, StoreError};
use portcullis_otp::{Algorithm, Secret};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use zeroize::Zeroizing;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: users, tokens, scratch codes.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY NOT NULL,
        first_factor TEXT NOT NULL,
        groups TEXT NOT NULL DEFAULT '',
        display_name TEXT,
        email TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        period INTEGER NOT NULL,
        secret BLOB NOT NULL,
        algorithm TEXT NOT NULL,
        digits INTEGER NOT NULL,
        motp_pin TEXT,
        counter INTEGER NOT NULL DEFAULT 0,
        drift INTEGER NOT NULL DEFAULT 0,
        last_step INTEGER,
        last_code TEXT,
        last_used INTEGER,
        last_ip TEXT,
        PRIMARY KEY (user, position)
    );
    CREATE TABLE scratch (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        hash TEXT NOT NULL
    );",
];

/// Users and tokens in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

fn first_factor_text(f: &FirstFactor) -> Zeroizing<String> {
    Zeroizing::new(match f {
        FirstFactor::None => "none".into(),
        FirstFactor::Hash(h) => format!("hash:{h}"),
        FirstFactor::Pin(p) => format!("pin:{}", p.as_str()),
        FirstFactor::External => "external".into(),
    })
}

fn first_factor_parse(s: &str) -> FirstFactor {
    if let Some(h) = s.strip_prefix("hash:") {
        FirstFactor::Hash(h.to_string())
    } else if let Some(p) = s.strip_prefix("pin:") {
        FirstFactor::Pin(Zeroizing::new(p.to_string()))
    } else if s == "external" {
        FirstFactor::External
    } else {
        FirstFactor::None
    }
}

impl SqliteStore {
    /// Opens (creating with mode 0600 if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db_err = |e: rusqlite::Error| StoreError::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if !path.exists() {
            // Create it ourselves so it is 0600 from the first byte; SQLite gives its
            // -wal and -shm files the database file's mode.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::File {
                    path: path.to_path_buf(),
                    message: format!("cannot create the database: {e}; check the directory exists and is writable"),
                })?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err)?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row: SQLite rolls the
        // transaction back, so the poisoned connection is still sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::Database {
                path: self.path.clone(),
                message: format!(
                    "schema version {version} is newer than this portcullis knows ({}); upgrade portcullis",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

fn load(tx: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    let row = tx
        .query_row(
            "SELECT first_factor, groups, display_name, email, failures, locked FROM users WHERE name = ?1",
            [name],
            |r| {
                let ff: Zeroizing<String> = Zeroizing::new(r.get(0)?);
                let groups: String = r.get(1)?;
                let mut u = User::new(name, first_factor_parse(&ff));
                u.groups = groups
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect();
                u.display_name = r.get(2)?;
                u.email = r.get(3)?;
                u.failures = r.get(4)?;
                u.locked = r.get(5)?;
                Ok(u)
            },
        )
        .optional()?;
    let Some(mut user) = row else {
        return Ok(None);
    };
    let mut stmt = tx.prepare_cached(
        "SELECT kind, period, secret, algorithm, digits, motp_pin, counter, drift, last_step, last_code, last_used, last_ip
         FROM tokens WHERE user = ?1 ORDER BY position",
    )?;
    let tokens = stmt.query_map([name], |r| {
        let kind = if r.get::<_, String>(0)? == "motp" {
            TokenKind::Motp
        } else {
            TokenKind::Oath
        };
        let period: u32 = r.get(1)?;
        let step = if period == 0 { Step::Event } else { Step::Time(period) };
        let secret = Secret::from_bytes(r.get(2)?);
        let algorithm = Algorithm::parse(&r.get::<_, String>(3)?).unwrap_or_default();
        let mut t = Token::new(kind, step, secret, algorithm, r.get(4)?);
        t.motp_pin = r.get::<_, Option<String>>(5)?.map(Zeroizing::new);
        t.counter = r.get::<_, i64>(6)? as u64;
        t.drift = r.get(7)?;
        t.last_step = r.get::<_, Option<i64>>(8)?.map(|s| s as u64);
        t.last_code = r.get::<_, Option<String>>(9)?.map(Zeroizing::new);
        t.last_used = r.get(10)?;
        t.last_ip = r.get(11)?;
        Ok(t)
    })?;
    user.tokens = tokens.collect::<rusqlite::Result<_>>()?;
    let mut stmt = tx.prepare_cached("SELECT hash FROM scratch WHERE user = ?1 ORDER BY rowid")?;
    user.scratch = stmt
        .query_map([name], |r| Ok(ScratchHash(r.get(0)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(user))
}

fn save(tx: &Transaction<'_>, user: &User, insert: bool) -> rusqlite::Result<()> {
    let ff = first_factor_text(&user.first_factor);
    let groups = user.groups.join(",");
    if insert {
        tx.execute(
            "INSERT INTO users (name, first_factor, groups, display_name, email, failures, locked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                user.name,
                ff.as_str(),
                groups,
                user.display_name,
                user.email,
                user.failures,
                user.locked
            ],
        )?;
    } else {
        tx.execute(
            "UPDATE users SET first_factor = ?2, groups = ?3, display_name = ?4, email = ?5,
             failures = ?6, locked = ?7 WHERE name = ?1",
            params![
                user.name,
                ff.as_str(),
                groups,
                user.display_name,
                user.email,
                user.failures,
                user.locked
            ],
        )?;
    }
    tx.execute("DELETE FROM tokens WHERE user = ?1", [&user.name])?;
    for (i, t) in user.tokens.iter().enumerate() {
        let period = match t.step {
            Step::Event => 0,
            Step::Time(p) => p,
        };
        let kind = match t.kind {
            TokenKind::Oath => "oath",
            TokenKind::Motp => "motp",
        };
        tx.execute(
            "INSERT INTO tokens (user, position, kind, period, secret, algorithm, digits, motp_pin,
             counter, drift, last_step, last_code, last_used, last_ip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                user.name,
                i as i64,
                kind,
                period,
                t.secret.as_bytes(),
                t.algorithm.name(),
                t.digits,
                t.motp_pin.as_ref().map(|p| p.as_str()),
                t.counter as i64,
                t.drift,
                t.last_step.map(|s| s as i64),
                t.last_code.as_ref().map(|c| c.as_str()),
                t.last_used,
                t.last_ip,
            ],
        )?;
    }
    tx.execute("DELETE FROM scratch WHERE user = ?1", [&user.name])?;
    for h in &user.scratch {
        tx.execute(
            "INSERT INTO scratch (user, hash) VALUES (?1, ?2)",
            params![user.name, h.0],
        )?;
    }
    Ok(())
}

impl Directory for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        load(&self.lock(), name).map_err(|e| self.err(e))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let conn = self.lock();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM users ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        names
            .iter()
            .filter_map(|n| load(&conn, n).transpose())
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn create(&self, user: &User) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if load(&tx, &user.name).map_err(|e| self.err(e))?.is_some() {
            return Err(StoreError::Exists(user.name.clone()));
        }
        save(&tx, user, true).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.lock()
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock before reading, so a second process verifying the
        // same code waits and then sees the first one's accepted step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let Some(mut user) = load(&tx, name).map_err(|e| self.err(e))? else {
            return Ok(false);
        };
        if change(&mut user) {
            save(&tx, &user, false).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> User {
        let mut u = User::new("alice", FirstFactor::Hash("$argon2id$x".into()));
        u.groups = vec!["admins".into(), "ops".into()];
        u.email = Some("a@example.com".into());
        let mut t = Token::new(
            TokenKind::Oath,
            Step::Time(30),
            Secret::from_bytes(vec![7; 20]),
            Algorithm::Sha256,
            8,
        );
        t.last_step = Some(56_666_666);
        t.drift = -1;
        t.last_code = Some(Zeroizing::new("12345678".into()));
        t.last_ip = Some("::1".into());
        u.tokens.push(t);
        let mut m = Token::new(
            TokenKind::Motp,
            Step::Event,
            Secret::from_bytes(vec![1; 8]),
            Algorithm::Sha1,
            6,
        );
        m.motp_pin = Some(Zeroizing::new("1234".into()));
        m.counter = 9;
        u.tokens.push(m);
        u.scratch = vec![ScratchHash("sha256$a$b".into())];
        u
    }

    #[test]
    fn round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let u = sample();
        s.create(&u).unwrap();
        assert!(matches!(s.create(&u), Err(StoreError::Exists(_))));
        assert_eq!(s.user("alice").unwrap().unwrap(), u);
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.users().unwrap(), vec![u]);
        assert!(
            s.update("alice", &mut |u| {
                u.failures = 3;
                true
            })
            .unwrap()
        );
        assert_eq!(s.user("alice").unwrap().unwrap().failures, 3);
        assert!(!s.update("bob", &mut |_| true).unwrap());
        assert!(s.remove("alice").unwrap());
        assert!(s.user("alice").unwrap().is_none());
        let n: i64 = s
            .lock()
            .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "tokens go with their user");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("upgrade portcullis"), "{err}");
    }
}

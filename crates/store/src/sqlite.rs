//! The embedded SQLite directory: one file, WAL mode, every update in an IMMEDIATE
//! transaction so concurrent processes verifying one code serialise and only one wins.

use crate::columns::{
    first_factor_parse, first_factor_text, groups_parse, groups_text, token_from_columns, token_kind_period,
};
use portcullis_core::invite::{Invite, InviteStore};
use portcullis_core::model::{AppPassword, Passkey, ScratchHash, Token, User};
use portcullis_core::session::{Level, Session, SessionBackend, new_token, token_hash};
use portcullis_core::{Directory, StoreError};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
    // 2: login sessions and enrollment invitations, both keyed by the SHA-256 of their
    // bearer token (the token itself is never stored).
    "CREATE TABLE sessions (
        hash BLOB PRIMARY KEY NOT NULL,
        user TEXT NOT NULL,
        groups TEXT NOT NULL DEFAULT '',
        display_name TEXT,
        email TEXT,
        level TEXT NOT NULL,
        client_ip TEXT,
        created INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user);
    CREATE TABLE invites (
        hash BLOB PRIMARY KEY NOT NULL,
        user TEXT NOT NULL,
        expires INTEGER NOT NULL,
        pending_kind TEXT,
        pending_period INTEGER,
        pending_secret BLOB,
        pending_algorithm TEXT,
        pending_digits INTEGER,
        pending_motp_pin TEXT
    );",
    // 3: per-device app passwords for HTTP Basic clients that cannot send a code.
    "CREATE TABLE app_passwords (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        label TEXT NOT NULL,
        hash TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (user, label)
    );",
    // 4: the first-factor fingerprint a session was made with (a password change ends it).
    "ALTER TABLE sessions ADD COLUMN factor BLOB;",
    // 5: regulation (failure counts and bans per user name and client address), shared by
    // every process on this database.
    "CREATE TABLE regulation (
        key TEXT PRIMARY KEY NOT NULL,
        failures TEXT NOT NULL DEFAULT '',
        banned_until INTEGER NOT NULL DEFAULT 0,
        touched INTEGER NOT NULL DEFAULT 0
    );",
    // 6: push approval ([duo]) per user.
    "ALTER TABLE users ADD COLUMN duo INTEGER NOT NULL DEFAULT 0;",
    // 7: passkeys and security keys (WebAuthn); a credential ID has one owner.
    "CREATE TABLE passkeys (
        id BLOB PRIMARY KEY NOT NULL,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        label TEXT NOT NULL,
        data TEXT NOT NULL,
        counter INTEGER NOT NULL DEFAULT 0,
        backup_eligible INTEGER NOT NULL DEFAULT 0,
        backup_state INTEGER NOT NULL DEFAULT 0,
        discoverable INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        last_used INTEGER
    );
    CREATE INDEX passkeys_user ON passkeys(user);",
];

mod regulation;

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

impl SqliteStore {
    /// Opens (creating with mode 0600 if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db_err = |e: rusqlite::Error| StoreError::Database {
            store: path.display().to_string(),
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
                    message: format!(
                        "cannot create the database: {}",
                        portcullis_core::config::explain_unreadable(path, &e)
                    ),
                })?;
        }
        // SQLite would say only "unable to open database file": say whose file it is.
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(path) {
            return Err(StoreError::File {
                path: path.to_path_buf(),
                message: format!(
                    "cannot open the database: {}",
                    portcullis_core::config::explain_unreadable(path, &e)
                ),
            });
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
            store: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// A failed save: a passkey another user has already is `Exists`, anything else the database's error.
    fn saving(&self, e: rusqlite::Error, user: &User) -> StoreError {
        match &e {
            rusqlite::Error::SqliteFailure(f, Some(m))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY && m.contains("passkeys.id") =>
            {
                StoreError::Exists(format!("a passkey of {}", user.name))
            }
            _ => self.err(e),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row: SQLite rolls the
        // transaction back, so the poisoned connection is still sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let before: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if before > 0 && (before as usize) < MIGRATIONS.len() {
            self.back_up(&conn, before)?;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::Database {
                store: self.path.display().to_string(),
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

    /// A copy of the store as it is, before an upgrade changes its schema: `backup/` beside
    /// it (0700), `NAME.vVERSION.UNIXTIME.db` (0600). A failed copy stops the upgrade.
    fn back_up(&self, conn: &Connection, version: i64) -> Result<PathBuf, StoreError> {
        let file_err = |path: &Path, message: String| StoreError::File {
            path: path.to_path_buf(),
            message,
        };
        let dir = self.path.parent().unwrap_or(Path::new(".")).join("backup");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                file_err(
                    &dir,
                    format!("cannot create the backup directory before upgrading the schema: {e}"),
                )
            })?;
        let stem = self
            .path
            .file_stem()
            .map_or("store".into(), |s| s.to_string_lossy().into_owned());
        let copy = dir.join(format!("{stem}.v{version}.{}.db", jiff::Timestamp::now().as_second()));
        // SQLite writes into an empty file; made here so it is 0600 from the first byte.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)
            .map_err(|e| {
                file_err(
                    &copy,
                    format!("cannot create the backup before upgrading the schema: {e}"),
                )
            })?;
        conn.execute("VACUUM INTO ?1", [copy.to_string_lossy().as_ref()])
            .map_err(|e| {
                file_err(
                    &copy,
                    format!("cannot back the store up before upgrading the schema: {e}"),
                )
            })?;
        Ok(copy)
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
            "SELECT first_factor, groups, display_name, email, failures, locked, duo FROM users WHERE name = ?1",
            [name],
            |r| {
                let ff: Zeroizing<String> = Zeroizing::new(r.get(0)?);
                let groups: String = r.get(1)?;
                let mut u = User::new(name, first_factor_parse(&ff));
                u.groups = groups_parse(&groups);
                u.display_name = r.get(2)?;
                u.email = r.get(3)?;
                u.failures = r.get(4)?;
                u.locked = r.get(5)?;
                u.duo = r.get(6)?;
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
        let mut t = token_from_columns(
            &r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            &r.get::<_, String>(3)?,
            r.get(4)?,
        );
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
    let mut stmt =
        tx.prepare_cached("SELECT label, hash, created FROM app_passwords WHERE user = ?1 ORDER BY label")?;
    user.app_passwords = stmt
        .query_map([name], |r| {
            Ok(AppPassword {
                label: r.get(0)?,
                hash: r.get(1)?,
                created: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = tx.prepare_cached(
        "SELECT id, label, data, counter, backup_eligible, backup_state, discoverable, created, last_used
         FROM passkeys WHERE user = ?1 ORDER BY position",
    )?;
    user.passkeys = stmt
        .query_map([name], |r| {
            Ok(Passkey {
                id: r.get(0)?,
                label: r.get(1)?,
                data: r.get(2)?,
                counter: r.get(3)?,
                backup_eligible: r.get(4)?,
                backup_state: r.get(5)?,
                discoverable: r.get(6)?,
                created: r.get(7)?,
                last_used: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(user))
}

fn save(tx: &Transaction<'_>, user: &User) -> rusqlite::Result<()> {
    let ff = first_factor_text(&user.first_factor);
    let groups = groups_text(&user.groups);
    // One upsert for both create and update; `create` has already refused an existing name.
    tx.execute(
        "INSERT INTO users (name, first_factor, groups, display_name, email, failures, locked, duo)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(name) DO UPDATE SET first_factor = ?2, groups = ?3, display_name = ?4,
         email = ?5, failures = ?6, locked = ?7, duo = ?8",
        params![
            user.name,
            ff.as_str(),
            groups,
            user.display_name,
            user.email,
            user.failures,
            user.locked,
            user.duo
        ],
    )?;
    tx.execute("DELETE FROM tokens WHERE user = ?1", [&user.name])?;
    for (i, t) in user.tokens.iter().enumerate() {
        let (kind, period) = token_kind_period(t);
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
    tx.execute("DELETE FROM app_passwords WHERE user = ?1", [&user.name])?;
    for a in &user.app_passwords {
        tx.execute(
            "INSERT INTO app_passwords (user, label, hash, created) VALUES (?1, ?2, ?3, ?4)",
            params![user.name, a.label, a.hash, a.created],
        )?;
    }
    tx.execute("DELETE FROM passkeys WHERE user = ?1", [&user.name])?;
    for (i, p) in user.passkeys.iter().enumerate() {
        tx.execute(
            "INSERT INTO passkeys (id, user, position, label, data, counter, backup_eligible, backup_state,
             discoverable, created, last_used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                p.id,
                user.name,
                i as i64,
                p.label,
                p.data,
                p.counter,
                p.backup_eligible,
                p.backup_state,
                p.discoverable,
                p.created,
                p.last_used
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
        save(&tx, user).map_err(|e| self.saving(e, user))?;
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
            save(&tx, &user).map_err(|e| self.saving(e, &user))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(true)
    }

    fn passkey_owner(&self, id: &[u8]) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row("SELECT user FROM passkeys WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// A stored session row, or `None` if a column no longer parses (such a session is not
/// restored rather than restored with less protection, e.g. without its bound address).
fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<([u8; 32], Session)>> {
    let hash: Vec<u8> = r.get(0)?;
    let Ok(hash) = <[u8; 32]>::try_from(hash) else {
        return Ok(None);
    };
    let Some(level) = Level::parse(&r.get::<_, String>(5)?) else {
        return Ok(None);
    };
    let client_ip = match r.get::<_, Option<String>>(6)? {
        None => None,
        Some(ip) => match ip.parse() {
            Ok(ip) => Some(ip),
            Err(_) => return Ok(None),
        },
    };
    let groups: String = r.get(2)?;
    let s = Session {
        user: r.get(1)?,
        groups: groups_parse(&groups),
        display_name: r.get(3)?,
        email: r.get(4)?,
        level,
        client_ip,
        created: r.get(7)?,
        last_seen: r.get(8)?,
        factor: r
            .get::<_, Option<Vec<u8>>>(9)?
            .and_then(|f| <[u8; 16]>::try_from(f).ok()),
    };
    Ok(Some((hash, s)))
}

impl SessionBackend for SqliteStore {
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        self.lock()
            .prepare_cached(
                "SELECT hash, user, groups, display_name, email, level, client_ip, created, last_seen, factor
                 FROM sessions WHERE hash = ?1",
            )
            .and_then(|mut s| s.query_row([&hash[..]], session_from_row).optional())
            .map(|row| row.flatten().map(|(_, s)| s))
            .map_err(|e| self.err(e))
    }

    fn load(&self, _now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
        // Sessions applies its policy to what comes back; expiry needs the policy's limits.
        let conn = self.lock();
        let rows: Vec<Option<([u8; 32], Session)>> = conn
            .prepare(
                "SELECT hash, user, groups, display_name, email, level, client_ip, created, last_seen, factor FROM sessions",
            )
            .and_then(|mut s| s.query_map([], session_from_row)?.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO sessions
                 (hash, user, groups, display_name, email, level, client_ip, created, last_seen, factor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    &hash[..],
                    s.user,
                    groups_text(&s.groups),
                    s.display_name,
                    s.email,
                    s.level.label(),
                    s.client_ip.map(|ip| ip.to_string()),
                    s.created,
                    s.last_seen,
                    s.factor.as_ref().map(|f| &f[..])
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
        // MAX: concurrent requests may write their times out of order.
        self.lock()
            .prepare_cached("UPDATE sessions SET last_seen = MAX(last_seen, ?2) WHERE hash = ?1")
            .and_then(|mut s| s.execute(params![&hash[..], last_seen]))
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM sessions WHERE hash = ?1", [&hash[..]])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM sessions WHERE user = ?1", [user])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn purge(&self, now_minus_absolute: i64, now_minus_idle: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "DELETE FROM sessions WHERE created <= ?1 OR last_seen <= ?2",
                [now_minus_absolute, now_minus_idle],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn invite_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Invite> {
    let pending = match r.get::<_, Option<Vec<u8>>>(4)? {
        None => None,
        Some(secret) => {
            let kind: String = r.get(2)?;
            let algorithm: String = r.get(5)?;
            let mut t = token_from_columns(&kind, r.get(3)?, secret, &algorithm, r.get(6)?);
            t.motp_pin = r.get::<_, Option<String>>(7)?.map(Zeroizing::new);
            Some(t)
        }
    };
    Ok(Invite {
        user: r.get(0)?,
        expires: r.get(1)?,
        pending,
    })
}

/// The unexpired invite of a token hash, in the columns `invite_from_row` reads.
const OPEN_INVITE: &str = "SELECT user, expires, pending_kind, pending_period, pending_secret, pending_algorithm,
     pending_digits, pending_motp_pin FROM invites WHERE hash = ?1 AND expires > ?2";

impl InviteStore for SqliteStore {
    fn create(&self, user: &str, expires: i64) -> Result<Zeroizing<String>, StoreError> {
        let (token, hash) = new_token();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        // A new link revokes the user's earlier ones: an old one must not replace the token later.
        tx.execute("DELETE FROM invites WHERE user = ?1", [user])
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO invites (hash, user, expires) VALUES (?1, ?2, ?3)",
            params![&hash[..], user, expires],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(token)
    }

    fn find(&self, token: &str, now: i64) -> Result<Option<Invite>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        self.lock()
            .query_row(OPEN_INVITE, params![&hash[..], now], invite_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    fn open(&self, token: &str, now: i64, fresh: Token) -> Result<Option<(Invite, bool)>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let mut conn = self.lock();
        // IMMEDIATE: two first views at once must not both store (and show) a secret.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let found = tx
            .query_row(OPEN_INVITE, params![&hash[..], now], invite_from_row)
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(mut invite) = found else {
            return Ok(None);
        };
        if invite.pending.is_some() {
            return Ok(Some((invite, false)));
        }
        let (kind, period) = token_kind_period(&fresh);
        tx.execute(
            "UPDATE invites SET pending_kind = ?2, pending_period = ?3, pending_secret = ?4,
             pending_algorithm = ?5, pending_digits = ?6, pending_motp_pin = ?7 WHERE hash = ?1",
            params![
                &hash[..],
                kind,
                period,
                fresh.secret.as_bytes(),
                fresh.algorithm.name(),
                fresh.digits,
                fresh.motp_pin.as_ref().map(|p| p.as_str()),
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        invite.pending = Some(fresh);
        Ok(Some((invite, true)))
    }

    fn consume(&self, token: &str) -> Result<bool, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        self.lock()
            .execute(
                "DELETE FROM invites WHERE user = (SELECT user FROM invites WHERE hash = ?1)",
                [&hash[..]],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        self.lock()
            .execute("DELETE FROM invites WHERE expires <= ?1", [now])
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::model::{FirstFactor, Step, TokenKind};
    use portcullis_core::session::{SessionPolicy, Sessions};
    use portcullis_otp::{Algorithm, Secret};

    #[test]
    fn the_sqlite_store_keeps_the_directory_contract() {
        let dir = tempfile::tempdir().unwrap();
        portcullis_core::store::check_directory_contract(&SqliteStore::open(&dir.path().join("p.db")).unwrap());
    }

    #[test]
    fn the_sqlite_store_keeps_the_session_contract_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        portcullis_core::session::check_session_backend_contract(&|| Box::new(SqliteStore::open(&path).unwrap()));
    }
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000;

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
        u.duo = true;
        u
    }

    #[test]
    fn round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let u = sample();
        Directory::create(&s, &u).unwrap();
        assert!(matches!(Directory::create(&s, &u), Err(StoreError::Exists(_))));
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
    fn passkeys_round_trip_and_have_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        let mut u = sample();
        u.passkeys = vec![Passkey {
            id: vec![1, 2, 3],
            label: "laptop".into(),
            data: "{}".into(),
            counter: 7,
            backup_eligible: true,
            backup_state: false,
            discoverable: true,
            created: 1_700_000_002,
            last_used: Some(1_700_000_003),
        }];
        Directory::create(&s, &u).unwrap();
        assert_eq!(s.user("alice").unwrap().unwrap().passkeys, u.passkeys);
        assert_eq!(s.passkey_owner(&[1, 2, 3]).unwrap().as_deref(), Some("alice"));
        assert_eq!(s.passkey_owner(&[4]).unwrap(), None);
        Directory::create(&s, &User::new("bob", FirstFactor::None)).unwrap();
        let keys = u.passkeys.clone();
        let taken = s.update("bob", &mut |b| {
            b.passkeys = keys.clone();
            true
        });
        assert!(matches!(taken, Err(StoreError::Exists(_))), "{taken:?}");
        assert!(s.user("bob").unwrap().unwrap().passkeys.is_empty());
        assert!(s.remove("alice").unwrap());
        assert_eq!(s.passkey_owner(&[1, 2, 3]).unwrap(), None, "keys go with their user");
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

    fn login(user: &str, now: i64) -> Session {
        Session {
            user: user.into(),
            groups: vec!["admins".into(), "ops".into()],
            display_name: Some("Alice A.".into()),
            email: Some("a@example.com".into()),
            level: Level::TwoFactor,
            created: now,
            last_seen: now,
            client_ip: Some("2001:db8::7".parse().unwrap()),
            factor: Some([7; 16]),
        }
    }

    fn sessions(path: &Path, now: i64) -> Sessions {
        let store = Arc::new(SqliteStore::open(path).unwrap());
        Sessions::new(SessionPolicy::default(), Some(Box::new(store)), now).unwrap()
    }

    #[test]
    fn sessions_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = sessions(&path, T0);
        let alice = s.create(login("alice", T0)).unwrap();
        let revoked = s.create(login("alice", T0)).unwrap();
        let bob = s.create(login("bob", T0)).unwrap();
        let mut one = login("carol", T0);
        one.level = Level::OneFactor;
        one.client_ip = None;
        one.groups.clear();
        let carol = s.create(one.clone()).unwrap();
        s.revoke(revoked.as_str()).unwrap();
        // Slid past the touch interval, so the later last_seen is on disk.
        assert!(s.get(alice.as_str(), T0 + 600, None).is_some());
        drop(s);

        let s = sessions(&path, T0 + 1200);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.get(alice.as_str(), T0 + 1200, None).unwrap(),
            Session {
                last_seen: T0 + 1200,
                ..login("alice", T0)
            }
        );
        assert_eq!(
            s.get(carol.as_str(), T0 + 1200, None).unwrap(),
            Session {
                last_seen: T0 + 1200,
                ..one
            }
        );
        assert!(s.get(revoked.as_str(), T0 + 1200, None).is_none());
        // bob was idle since T0: 20 minutes, still inside the 30-minute limit.
        assert!(s.get(bob.as_str(), T0 + 1200, None).is_some());
        assert_eq!(s.revoke_user("alice").unwrap(), 1);
        drop(s);

        let s = sessions(&path, T0 + 1300);
        assert!(s.get(alice.as_str(), T0 + 1300, None).is_none());
        assert_eq!(s.len(), 2);
        drop(s);
        // Past the idle limit: nothing is restored and the rows are gone.
        let s = sessions(&path, T0 + 1200 + 1800 + 60);
        assert!(s.is_empty());
        let store = SqliteStore::open(&path).unwrap();
        assert!(SessionBackend::load(&store, 0).unwrap().is_empty());
        let n: i64 = store
            .lock()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn only_the_session_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = sessions(&path, T0);
        let id = s.create(login("alice", T0)).unwrap();
        drop(s);
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for b in [bytes, wal] {
            assert!(!b.windows(id.as_str().len()).any(|w| w == id.as_str().as_bytes()));
        }
    }

    fn fresh() -> Token {
        Token::new(
            TokenKind::Oath,
            Step::Time(30),
            Secret::from_bytes(portcullis_core::random::bytes(20).to_vec()),
            Algorithm::Sha256,
            8,
        )
    }

    #[test]
    fn invites_keep_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        portcullis_core::invite::check_store_contract(&s, &fresh);
    }

    #[test]
    fn invites_create_open_twice_consume_and_expire_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = SqliteStore::open(&path).unwrap();
        let token = InviteStore::create(&s, "alice", T0 + 3600).unwrap();
        let expired = InviteStore::create(&s, "bob", T0 + 60).unwrap();
        let shown = fresh();
        let (inv, first) = s.open(&token, T0, shown.clone()).unwrap().unwrap();
        assert!(first);
        assert_eq!(inv.pending.as_ref(), Some(&shown));
        drop(s);

        // The pending secret is on disk: a second view after a restart gets the same one.
        let s = SqliteStore::open(&path).unwrap();
        let (inv, first) = s.open(&token, T0 + 10, fresh()).unwrap().unwrap();
        assert!(!first);
        assert_eq!(inv.user, "alice");
        assert_eq!(inv.pending, Some(shown));
        assert!(s.open(&expired, T0 + 60, fresh()).unwrap().is_none());
        assert!(s.open(&expired, T0 + 59, fresh()).unwrap().is_some());
        assert_eq!(InviteStore::purge(&s, T0 + 60).unwrap(), 1);
        assert!(s.consume(&token).unwrap());
        assert!(!s.consume(&token).unwrap());
        assert!(s.open(&token, T0 + 20, fresh()).unwrap().is_none());
    }

    #[test]
    fn migrating_a_version_1_database_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute(
            "INSERT INTO users (name, first_factor, groups) VALUES ('bob', 'external', 'ops')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO tokens (user, position, kind, period, secret, algorithm, digits, last_step)
             VALUES ('bob', 0, 'oath', 30, x'3132333435363738393031323334353637383930', 'SHA1', 6, 42)",
            [],
        )
        .unwrap();
        drop(c);

        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let bob = s.user("bob").unwrap().unwrap();
        assert_eq!(bob.first_factor, FirstFactor::External);
        assert_eq!(bob.groups, vec!["ops".to_string()]);
        assert_eq!(bob.tokens.len(), 1);
        assert_eq!(bob.tokens[0].secret.as_bytes(), b"12345678901234567890");
        assert_eq!(bob.tokens[0].last_step, Some(42));
        // A copy of the version-1 store was taken first, readable only by its owner, and
        // it is the old store (schema 1, bob in it); a current store is not copied again.
        let backups: Vec<_> = std::fs::read_dir(dir.path().join("backup"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let name = backups[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("p.v1.") && name.ends_with(".db"), "{name}");
        assert_eq!(
            std::fs::metadata(&backups[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("backup"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let old = Connection::open(&backups[0]).unwrap();
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        let n: i64 = old
            .query_row("SELECT count(*) FROM users WHERE name = 'bob'", [], |r| r.get(0))
            .unwrap();
        assert_eq!((v, n), (1, 1));
        drop(s);
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(std::fs::read_dir(dir.path().join("backup")).unwrap().count(), 1);
        let s = SqliteStore::open(&path).unwrap();
        // The new tables work at once.
        let sessions = Sessions::new(SessionPolicy::default(), Some(Box::new(s)), T0).unwrap();
        let id = sessions.create(login("bob", T0)).unwrap();
        assert_eq!(sessions.get(id.as_str(), T0 + 1, None).unwrap().user, "bob");
    }
}

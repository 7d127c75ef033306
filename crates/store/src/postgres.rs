//! The PostgreSQL directory: users and tokens shared by every gateway on one database.
//! Every update is one transaction with the user's row locked (`SELECT … FOR UPDATE`), so
//! two nodes verifying one code serialise and only one wins.
//! Calls wait on the store's own runtime ([`crate::bridge`]), each bounded by `[store] timeout`.

use crate::bridge::{Bridge, cut_off, describe, secret_file};
use crate::columns::{first_factor_parse, first_factor_text, token_from_columns, token_kind_period};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use portcullis_core::config::{SslMode, StoreConfig};
use portcullis_core::model::{AppPassword, Passkey, ScratchHash, Token, User};
use portcullis_core::{Directory, StoreError};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// Schema migrations, applied in order; `portcullis_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: users, tokens, scratch codes, app passwords (as in the SQLite store).
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        first_factor TEXT NOT NULL,
        groups TEXT NOT NULL DEFAULT '',
        display_name TEXT,
        email TEXT,
        failures BIGINT NOT NULL DEFAULT 0,
        locked BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE tokens (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        period BIGINT NOT NULL,
        secret BYTEA NOT NULL,
        algorithm TEXT NOT NULL,
        digits BIGINT NOT NULL,
        motp_pin TEXT,
        counter BIGINT NOT NULL DEFAULT 0,
        drift BIGINT NOT NULL DEFAULT 0,
        last_step BIGINT,
        last_code TEXT,
        last_used BIGINT,
        last_ip TEXT,
        PRIMARY KEY (user_name, position)
    );
    CREATE TABLE scratch (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (user_name, position)
    );
    CREATE TABLE app_passwords (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        label TEXT NOT NULL,
        hash TEXT NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (user_name, label)
    );",
    // 2: push approval ([duo]) per user.
    "ALTER TABLE users ADD COLUMN duo BOOLEAN NOT NULL DEFAULT false;",
    // 3: passkeys and security keys (WebAuthn); a credential ID has one owner.
    "CREATE TABLE passkeys (
        id BYTEA PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        label TEXT NOT NULL,
        data TEXT NOT NULL,
        counter BIGINT NOT NULL DEFAULT 0,
        backup_eligible BOOLEAN NOT NULL DEFAULT false,
        backup_state BOOLEAN NOT NULL DEFAULT false,
        discoverable BOOLEAN NOT NULL DEFAULT false,
        created BIGINT NOT NULL,
        last_used BIGINT
    );
    CREATE INDEX passkeys_user ON passkeys(user_name);",
];

/// Any number (above 0) that no other program takes an advisory lock on: migrations by
/// several nodes starting at once run one after the other.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375;

/// Users and tokens in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// The runtime the pool's connections live on (named by the URL, which holds no password).
    bridge: Bridge,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.bridge.name)
    }
}

/// What went wrong inside one call, before it is named for the store.
enum Fault {
    Query(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    Exists(String),
}

/// A save refused because another user has one of the passkeys: `Exists`.
fn passkey_taken(e: tokio_postgres::Error, user: &User) -> Fault {
    match e.as_db_error() {
        Some(db)
            if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION && db.table() == Some("passkeys") =>
        {
            Fault::Exists(format!("a passkey of {}", user.name))
        }
        _ => Fault::Query(e),
    }
}

impl From<tokio_postgres::Error> for Fault {
    fn from(e: tokio_postgres::Error) -> Self {
        Fault::Query(e)
    }
}

impl From<deadpool_postgres::PoolError> for Fault {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Fault::Pool(e)
    }
}

impl PostgresStore {
    /// Connects to the database `config` names (paths resolved with `resolve`), checks
    /// the connection and brings the schema up to date.
    pub fn open(config: &StoreConfig, resolve: &dyn Fn(&Path) -> std::path::PathBuf) -> Result<Self, StoreError> {
        let name = config.url.clone();
        let fail = |message: String| StoreError::Database {
            store: name.clone(),
            message,
        };
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| fail(format!("[store] url: {}", describe(&e))))?;
        if let Some(file) = &config.password_file {
            pg.password(secret_file(&resolve(file), "[store] password_file")?.as_str());
        }
        let timeout = Duration::from_secs(config.timeout);
        pg.connect_timeout(timeout);
        pg.application_name("portcullis");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.sslmode {
            SslMode::Disable => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(pg, tokio_postgres::NoTls, manager_config)
            }
            SslMode::VerifyFull => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let ca = config.ca_file.as_deref().map(resolve).ok_or_else(|| {
                    fail(
                        "[store] sslmode = \"verify-full\" needs ca_file, the CA that signed the server's certificate"
                            .into(),
                    )
                })?;
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::trusting(&ca, "[store] ca_file")?);
                Manager::from_config(pg, tls, manager_config)
            }
        };
        let bridge = Bridge::new("PostgreSQL", name, timeout)?;
        let pool = {
            // The pool's connection tasks are spawned on the store's own runtime.
            let _entered = bridge.enter();
            Pool::builder(manager)
                .max_size(config.pool_size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| bridge.fail(format!("cannot make the connection pool: {e}")))?
        };
        let store = PostgresStore { pool, bridge };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `work` against the database, bounded by `[store] timeout`.
    fn run<T>(&self, work: impl Future<Output = Result<T, Fault>>) -> Result<T, StoreError> {
        self.bridge.run(work, |fault| match fault {
            Fault::Exists(name) => StoreError::Exists(name),
            Fault::Query(e) if e.is_closed() => self.bridge.unreachable(describe(&e)),
            Fault::Query(e) => self.bridge.classify(&e),
            Fault::Pool(deadpool_postgres::PoolError::Timeout(t)) => {
                self.bridge.unreachable(format!("no connection within [store] timeout ({t:?})"))
            }
            Fault::Pool(e) => {
                let mut text = describe(&e);
                if text.contains("invalid peer certificate") {
                    text.push_str("; [store] ca_file must hold the CA that signed the server's certificate, for the host in [store] url");
                }
                if cut_off(&e) {
                    self.bridge.unreachable(text)
                } else {
                    self.bridge.fail(text)
                }
            }
        })
    }

    fn fail(&self, message: String) -> StoreError {
        self.bridge.fail(message)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let newer = self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS portcullis_schema (version INTEGER NOT NULL)")
                .await?;
            let version: i64 = match tx.query_opt("SELECT version FROM portcullis_schema", &[]).await? {
                Some(row) => i64::from(row.get::<_, i32>(0)),
                None => {
                    tx.execute("INSERT INTO portcullis_schema (version) VALUES (0)", &[])
                        .await?;
                    0
                }
            };
            if version > known {
                return Ok(Some(version));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).await?;
                let v = (i + 1) as i32;
                tx.execute("UPDATE portcullis_schema SET version = $1", &[&v]).await?;
            }
            tx.commit().await?;
            Ok(None)
        })?;
        match newer {
            Some(version) => Err(self.fail(format!(
                "schema version {version} is newer than this portcullis knows ({known}); upgrade portcullis"
            ))),
            None => Ok(()),
        }
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            let row = client.query_one("SELECT version FROM portcullis_schema", &[]).await?;
            Ok(i64::from(row.get::<_, i32>(0)))
        })
    }
}

/// The user `name` with everything that belongs to it; `lock` holds its row until the
/// transaction ends. The four queries go out at once (one connection runs them in order,
/// so the lock is held before the rest is read): one round trip, with statements prepared
/// once per connection.
async fn load(c: &impl GenericClient, name: &str, lock: bool) -> Result<Option<User>, tokio_postgres::Error> {
    let sql = if lock {
        "SELECT first_factor, groups, display_name, email, failures, locked, duo FROM users WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT first_factor, groups, display_name, email, failures, locked, duo FROM users WHERE name = $1"
    };
    let (user_q, tokens_q, scratch_q, apps_q, keys_q) = futures_util::future::try_join5(
        c.prepare_cached(sql),
        c.prepare_cached(
            "SELECT kind, period, secret, algorithm, digits, motp_pin, counter, drift, last_step, last_code, last_used, last_ip
             FROM tokens WHERE user_name = $1 ORDER BY position",
        ),
        c.prepare_cached("SELECT hash FROM scratch WHERE user_name = $1 ORDER BY position"),
        c.prepare_cached("SELECT label, hash, created FROM app_passwords WHERE user_name = $1 ORDER BY label"),
        c.prepare_cached(
            "SELECT id, label, data, counter, backup_eligible, backup_state, discoverable, created, last_used
             FROM passkeys WHERE user_name = $1 ORDER BY position",
        ),
    )
    .await?;
    let (row, tokens, scratch, apps, keys) = futures_util::future::try_join5(
        c.query_opt(&user_q, &[&name]),
        c.query(&tokens_q, &[&name]),
        c.query(&scratch_q, &[&name]),
        c.query(&apps_q, &[&name]),
        c.query(&keys_q, &[&name]),
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let ff: Zeroizing<String> = Zeroizing::new(row.get(0));
    let mut user = User::new(name, first_factor_parse(&ff));
    let groups: String = row.get(1);
    user.groups = crate::columns::groups_parse(&groups);
    user.display_name = row.get(2);
    user.email = row.get(3);
    user.failures = u32::try_from(row.get::<_, i64>(4)).unwrap_or(u32::MAX);
    user.locked = row.get(5);
    user.duo = row.get(6);
    for r in tokens {
        let small = |i: usize| u32::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        let mut t = token_from_columns(r.get(0), small(1), r.get(2), r.get(3), small(4));
        t.motp_pin = r.get::<_, Option<String>>(5).map(Zeroizing::new);
        t.counter = r.get::<_, i64>(6) as u64;
        t.drift = r.get(7);
        t.last_step = r.get::<_, Option<i64>>(8).map(|s| s as u64);
        t.last_code = r.get::<_, Option<String>>(9).map(Zeroizing::new);
        t.last_used = r.get(10);
        t.last_ip = r.get(11);
        user.tokens.push(t);
    }
    user.scratch = scratch.iter().map(|r| ScratchHash(r.get(0))).collect();
    user.app_passwords = apps
        .iter()
        .map(|r| AppPassword {
            label: r.get(0),
            hash: r.get(1),
            created: r.get(2),
        })
        .collect();
    user.passkeys = keys
        .iter()
        .map(|r| Passkey {
            id: r.get(0),
            label: r.get(1),
            data: r.get(2),
            counter: u32::try_from(r.get::<_, i64>(3)).unwrap_or(u32::MAX),
            backup_eligible: r.get(4),
            backup_state: r.get(5),
            discoverable: r.get(6),
            created: r.get(7),
            last_used: r.get(8),
        })
        .collect();
    Ok(Some(user))
}

/// Writes `user` over its rows (the user row itself exists or is inserted). With `before`,
/// the user as read in this transaction, only what changed is written: a verification
/// rewrites one token's row, not the user's every row.
async fn save(c: &impl GenericClient, user: &User, before: Option<&User>) -> Result<(), tokio_postgres::Error> {
    let same_row = before.is_some_and(|b| {
        (
            &b.first_factor,
            &b.groups,
            &b.display_name,
            &b.email,
            b.failures,
            b.locked,
            b.duo,
        ) == (
            &user.first_factor,
            &user.groups,
            &user.display_name,
            &user.email,
            user.failures,
            user.locked,
            user.duo,
        )
    });
    if !same_row {
        let ff = first_factor_text(&user.first_factor);
        let groups = crate::columns::groups_text(&user.groups);
        let failures = i64::from(user.failures);
        let upsert = c
            .prepare_cached(
                "INSERT INTO users (name, first_factor, groups, display_name, email, failures, locked, duo)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (name) DO UPDATE SET first_factor = $2, groups = $3, display_name = $4,
                 email = $5, failures = $6, locked = $7, duo = $8",
            )
            .await?;
        c.execute(
            &upsert,
            &[
                &user.name,
                &ff.as_str(),
                &groups,
                &user.display_name,
                &user.email,
                &failures,
                &user.locked,
                &user.duo,
            ],
        )
        .await?;
    }
    save_tokens(c, user, before.map(|b| b.tokens.as_slice())).await?;
    if before.is_none_or(|b| b.app_passwords != user.app_passwords) {
        c.execute("DELETE FROM app_passwords WHERE user_name = $1", &[&user.name])
            .await?;
        for a in &user.app_passwords {
            c.execute(
                "INSERT INTO app_passwords (user_name, label, hash, created) VALUES ($1, $2, $3, $4)",
                &[&user.name, &a.label, &a.hash, &a.created],
            )
            .await?;
        }
    }
    if before.is_none_or(|b| b.passkeys != user.passkeys) {
        c.execute("DELETE FROM passkeys WHERE user_name = $1", &[&user.name])
            .await?;
        for (i, p) in user.passkeys.iter().enumerate() {
            let (position, counter) = (i as i32, i64::from(p.counter));
            c.execute(
                "INSERT INTO passkeys (id, user_name, position, label, data, counter, backup_eligible,
                 backup_state, discoverable, created, last_used) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &p.id,
                    &user.name,
                    &position,
                    &p.label,
                    &p.data,
                    &counter,
                    &p.backup_eligible,
                    &p.backup_state,
                    &p.discoverable,
                    &p.created,
                    &p.last_used,
                ],
            )
            .await?;
        }
    }
    if before.is_none_or(|b| b.scratch != user.scratch) {
        c.execute("DELETE FROM scratch WHERE user_name = $1", &[&user.name])
            .await?;
        for (i, h) in user.scratch.iter().enumerate() {
            let position = i as i32;
            c.execute(
                "INSERT INTO scratch (user_name, position, hash) VALUES ($1, $2, $3)",
                &[&user.name, &position, &h.0],
            )
            .await?;
        }
    }
    Ok(())
}

/// The token rows: those that changed are replaced by position; a different number of
/// tokens rewrites them all.
async fn save_tokens(
    c: &impl GenericClient,
    user: &User,
    before: Option<&[Token]>,
) -> Result<(), tokio_postgres::Error> {
    let changed: Vec<usize> = match before {
        Some(b) if b.len() == user.tokens.len() => (0..b.len()).filter(|&i| b[i] != user.tokens[i]).collect(),
        _ => {
            c.execute("DELETE FROM tokens WHERE user_name = $1", &[&user.name])
                .await?;
            (0..user.tokens.len()).collect()
        }
    };
    if changed.is_empty() {
        return Ok(());
    }
    let write = c
        .prepare_cached(
            "INSERT INTO tokens (user_name, position, kind, period, secret, algorithm, digits, motp_pin,
             counter, drift, last_step, last_code, last_used, last_ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (user_name, position) DO UPDATE SET kind = $3, period = $4, secret = $5,
             algorithm = $6, digits = $7, motp_pin = $8, counter = $9, drift = $10, last_step = $11,
             last_code = $12, last_used = $13, last_ip = $14",
        )
        .await?;
    for i in changed {
        let t = &user.tokens[i];
        let (kind, period) = token_kind_period(t);
        let position = i as i32;
        c.execute(
            &write,
            &[
                &user.name,
                &position,
                &kind,
                &i64::from(period),
                &t.secret.as_bytes(),
                &t.algorithm.name(),
                &i64::from(t.digits),
                &t.motp_pin.as_ref().map(|p| p.as_str()),
                &(t.counter as i64),
                &t.drift,
                &t.last_step.map(|s| s as i64),
                &t.last_code.as_ref().map(|c| c.as_str()),
                &t.last_used,
                &t.last_ip,
            ],
        )
        .await?;
    }
    Ok(())
}

impl Directory for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            // One snapshot for the user's rows across the tables.
            let tx = client.build_transaction().read_only(true).start().await?;
            let user = load(&tx, name, false).await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let mut users = Vec::new();
            for row in tx.query("SELECT name FROM users ORDER BY name", &[]).await? {
                let name: String = row.get(0);
                users.extend(load(&tx, &name, false).await?);
            }
            tx.commit().await?;
            Ok(users)
        })
    }

    fn create(&self, user: &User) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let inserted = tx
                .execute(
                    "INSERT INTO users (name, first_factor) VALUES ($1, 'none') ON CONFLICT (name) DO NOTHING",
                    &[&user.name],
                )
                .await?;
            if inserted == 0 {
                return Err(Fault::Exists(user.name.clone()));
            }
            save(&tx, user, None).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.run(async {
            self.pool.get().await?.execute("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            Ok(client.execute("DELETE FROM users WHERE name = $1", &[&name]).await? > 0)
        })
    }

    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // The row lock makes a second node verifying the same code wait here, then read
            // the first one's accepted step.
            let Some(mut user) = load(&tx, name, true).await? else {
                return Ok(false);
            };
            let before = user.clone();
            if change(&mut user) {
                save(&tx, &user, Some(&before))
                    .await
                    .map_err(|e| passkey_taken(e, &user))?;
                tx.commit().await?;
            }
            Ok(true)
        })
    }

    fn passkey_owner(&self, id: &[u8]) -> Result<Option<String>, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            let row = client
                .query_opt("SELECT user_name FROM passkeys WHERE id = $1", &[&id])
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }
}

//! Logins per second on one thread (`bench/gateway.sh`; pin it with `taskset -c 0`):
//! 1. `portcullis_core::password::verify_hash` with the default argon2id parameters (the
//!    cost of every password the portal checks, right or wrong);
//! 2. a full successful password + TOTP check through `portcullis_core::gate::Gate` on a
//!    SQLite store in a temporary directory (argon2id, the code search, and the fsync'd
//!    transaction that records the used step), with a clock that moves one step per login
//!    so every code is fresh; then the code alone (a user without a password), where the
//!    store's transaction is most of the cost;
//! 3. the same two on PostgreSQL when `BENCH_PG_URL` names an empty database (no TLS).
//!
//! Usage: `login_rate [SECONDS=5]` (per measurement). Prints `key=value` lines.

use anyhow::{Context, Result, bail};
use portcullis_core::config::{SslMode, StoreConfig, StoreKind};
use portcullis_core::gate::{Attempt, Gate, Outcome, VerifyPolicy};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::{Clock, Directory, password};
use portcullis_otp::{Algorithm, Secret, totp};
use portcullis_store::SqliteStore;
use portcullis_store::postgres::PostgresStore;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// A clock that the benchmark moves forward one TOTP step per login.
struct SteppingClock(AtomicI64);

impl Clock for SteppingClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse().ok().context("SECONDS must be a number")?,
        None => 5,
    };
    let limit = Duration::from_secs(seconds);
    let pw = "correct horse battery staple";
    let hash = password::hash_password(pw)?;
    println!("argon2_phc_params={}", hash.split('$').nth(3).unwrap_or("?"));

    // 1. The password hash alone (a wrong password costs the same).
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < limit {
        if password::verify_hash(&hash, "wrong password") {
            bail!("a wrong password was accepted");
        }
        n += 1;
    }
    println!("verify_hash_per_s={:.2}", n as f64 / t.elapsed().as_secs_f64());

    // 2. The whole check through the Gate on SQLite (and PostgreSQL when given), with and
    //    without the password: without it, what the store's transaction costs shows.
    let dir = tempfile::tempdir()?;
    let sqlite = SqliteStore::open(&dir.path().join("portcullis.db"))?;
    rates("", &sqlite, &hash, pw, limit)?;
    if let Ok(url) = std::env::var("BENCH_PG_URL") {
        let config = StoreConfig {
            backend: StoreKind::Postgres,
            url,
            sslmode: SslMode::Disable,
            ..StoreConfig::default()
        };
        let pg = PostgresStore::open(&config, &|p| p.to_path_buf())?;
        rates("_postgres", &pg, &hash, pw, limit)?;
    }
    Ok(())
}

/// Prints `gate_login{suffix}_per_s` (password + TOTP) and `gate_code{suffix}_per_s` (TOTP
/// alone) for `store`.
fn rates(suffix: &str, store: &dyn Directory, hash: &str, pw: &str, limit: Duration) -> Result<()> {
    let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
    for (name, first_factor) in [
        ("alice", FirstFactor::Hash(hash.to_string())),
        ("carl", FirstFactor::None),
    ] {
        let mut user = User::new(name, first_factor);
        user.tokens.push(Token::new(
            TokenKind::Oath,
            Step::Time(30),
            secret.clone(),
            Algorithm::Sha1,
            6,
        ));
        store.create(&user)?;
    }
    let clock = SteppingClock(AtomicI64::new(1_700_000_000));
    let gate = Gate {
        directory: store,
        clock: &clock,
        policy: VerifyPolicy {
            totp_window: 1,
            hotp_look_ahead: 10,
            motp_window: 18,
            linger: 300,
            max_failures: 5,
        },
        external: None,
    };
    for (what, user, password) in [("login", "alice", Some(pw)), ("code", "carl", None)] {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < limit {
            let now = clock.0.fetch_add(30, Ordering::Relaxed) + 30;
            let code = totp(&secret, now, 30, 6, Algorithm::Sha1);
            let outcome = gate.verify(Attempt {
                user,
                password,
                code: &code,
                client_ip: Some("127.0.0.1"),
                linger: false,
            })?;
            if !matches!(outcome, Outcome::Accepted { .. }) {
                bail!("{what} {n} of {user} refused: {outcome:?}");
            }
            n += 1;
        }
        println!("gate_{what}{suffix}_per_s={:.2}", n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(())
}

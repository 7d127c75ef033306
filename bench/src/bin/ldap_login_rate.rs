//! Logins per second on one thread with an LDAP first factor against the same logins with
//! the local argon2id one (`bench/ldap.sh`, which starts the slapd; pin it with
//! `taskset -c 0`): the whole login the portal's form asks the core for
//! (`Authorizer::login`: the canonical name, the password, the code, the new session with
//! the user's groups), on an `Engine` built from a configuration as the gateway builds it.
//!
//! Both configurations have their own SQLite store; `USERS` users `{PREFIX}0…` are created
//! in each with one TOTP secret: local ones with an argon2id hash of `PASSWORD` (default
//! parameters), LDAP ones as `External` (the directory holds the same names with that
//! password). Logins go round the users, so no search result is reused from an earlier
//! login (the source keeps one for a second); a clock that moves one step per login keeps
//! every code fresh. Each side is measured twice, alternating, and the better run counts.
//!
//! Usage: `ldap_login_rate SECONDS LOCAL.toml LDAP.toml PREFIX USERS PASSWORD`.
//! Prints `key=value` lines.

use anyhow::{Context, Result, bail};
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::login::{LoginAttempt, LoginOutcome};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::{Clock, Config, Level, password};
use portcullis_otp::{Algorithm, Secret, totp};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// A clock that the benchmark moves forward one TOTP step per login.
struct SteppingClock(AtomicI64);

impl Clock for SteppingClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One side: an engine on its configuration and the clock it runs on.
struct Side {
    engine: Engine,
    clock: Arc<SteppingClock>,
    next: usize,
}

fn open(config: &Path, ldap: bool, prefix: &str, users: usize, pw: &str, secret: &Secret) -> Result<Side> {
    let config = Config::load(config).with_context(|| format!("{}", config.display()))?;
    if config.ldap.is_set() != ldap {
        bail!(
            "{}: [ldap] is {}set",
            config.path.display(),
            if ldap { "not " } else { "" }
        );
    }
    let stores = portcullis_store::open_all(&config)?;
    let hash = password::hash_password(pw)?;
    for i in 0..users {
        let first_factor = if ldap {
            FirstFactor::External
        } else {
            FirstFactor::Hash(hash.clone())
        };
        let mut user = User::new(&format!("{prefix}{i}"), first_factor);
        user.tokens.push(Token::new(
            TokenKind::Oath,
            Step::Time(30),
            secret.clone(),
            Algorithm::Sha1,
            6,
        ));
        stores.directory.create(&user)?;
    }
    let clock = Arc::new(SteppingClock(AtomicI64::new(1_700_000_000)));
    let parts = Parts {
        directory: stores.directory,
        sessions: stores.sessions,
        regulation: stores.regulation,
        external: stores.external,
        pushes: None,
    };
    let engine = Engine::from_config(&config, parts, clock.clone())?;
    Ok(Side { engine, clock, next: 0 })
}

impl Side {
    fn refuses_a_wrong_password(&mut self, prefix: &str, secret: &Secret) -> Result<()> {
        let now = self.clock.0.fetch_add(30, Ordering::Relaxed) + 30;
        let code = totp(secret, now, 30, 6, Algorithm::Sha1);
        let step = self.engine.authorizer().login(&LoginAttempt {
            user: &format!("{prefix}0"),
            password: "not the password",
            code: Some(&code),
            target: None,
            client_ip: "127.0.0.1".parse()?,
            current: None,
        })?;
        match step.outcome {
            LoginOutcome::Refused(_) => Ok(()),
            other => bail!("a wrong password was accepted: {other:?}"),
        }
    }

    /// Logins for `limit`; returns how many per second.
    fn run(&mut self, prefix: &str, users: usize, pw: &str, secret: &Secret, limit: Duration) -> Result<f64> {
        let ip: IpAddr = "127.0.0.1".parse()?;
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < limit {
            let now = self.clock.0.fetch_add(30, Ordering::Relaxed) + 30;
            let code = totp(secret, now, 30, 6, Algorithm::Sha1);
            let user = format!("{prefix}{}", self.next % users);
            self.next += 1;
            let step = self.engine.authorizer().login(&LoginAttempt {
                user: &user,
                password: pw,
                code: Some(&code),
                target: None,
                client_ip: ip,
                current: None,
            })?;
            match step.outcome {
                LoginOutcome::SignedIn {
                    level: Level::TwoFactor,
                    complete: true,
                    ..
                } => {}
                other => bail!("login {n} of {user} refused: {other:?}"),
            }
            n += 1;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [seconds, local, ldap, prefix, users, pw] = &args[..] else {
        bail!("usage: ldap_login_rate SECONDS LOCAL.toml LDAP.toml PREFIX USERS PASSWORD");
    };
    let limit = Duration::from_secs(seconds.parse().ok().context("SECONDS must be a number")?);
    let users: usize = users
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .context("USERS must be a positive number")?;
    let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
    let mut sides = [
        ("local", open(Path::new(local), false, prefix, users, pw, &secret)?),
        ("ldap", open(Path::new(ldap), true, prefix, users, pw, &secret)?),
    ];
    // A wrong password is refused on each side (the password is really checked), then a
    // warm-up of each (LDAP connections opened), then two alternating runs.
    for (name, side) in &mut sides {
        side.refuses_a_wrong_password(prefix, &secret)?;
        side.run(prefix, users, pw, &secret, Duration::from_secs(1))
            .with_context(|| name.to_string())?;
    }
    let mut best = [0f64; 2];
    for _ in 0..2 {
        for (i, (_, side)) in sides.iter_mut().enumerate() {
            best[i] = best[i].max(side.run(prefix, users, pw, &secret, limit)?);
        }
    }
    for (i, (name, _)) in sides.iter().enumerate() {
        println!("login_{name}_per_s={:.2}", best[i]);
    }
    if best[1] > users as f64 {
        eprintln!(
            "ldap_login_rate: more LDAP logins per second than users: search results were reused across logins; give more users"
        );
    }
    Ok(())
}

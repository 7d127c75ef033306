//! `store check` and `store migrate`: whether the configured engines answer, and moving
//! users from any store into PostgreSQL.

use super::plural;
use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use portcullis_core::Directory;
use portcullis_core::config::{SslMode, StateKind, StoreConfig, StoreKind};
use portcullis_store::postgres::PostgresStore;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Milliseconds, for people.
fn ms(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1000.0)
}

/// Where the configured store is, as messages name it.
fn location(c: &Settings) -> String {
    match c.core.store.backend {
        StoreKind::Postgres => c.core.store.url.clone(),
        _ => c.core.resolve(&c.core.store.path).display().to_string(),
    }
}

/// `store check`: opens everything `serve` would open and times a round trip to each.
pub fn check(path: &Path) -> Result<ExitCode> {
    let c = Settings::load(path)?;
    let started = Instant::now();
    let stores = match portcullis_store::open_all(&c.core) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!("opened in {}", ms(started));
    let asked = Instant::now();
    if let Err(e) = stores.directory.ping() {
        eprintln!("error: directory: {e}");
        return Ok(ExitCode::from(2));
    }
    let answered = ms(asked);
    let users = stores.directory.users()?.len();
    println!(
        "directory: {} at {}: answers in {answered}, {}",
        stores.directory.backend(),
        location(&c),
        plural(users, "user", "users")
    );
    match (&stores.sessions, c.core.state.backend) {
        (Some(state), StateKind::Redis) => {
            let asked = Instant::now();
            if let Err(e) = state.ping() {
                eprintln!("error: state: {e}");
                return Ok(ExitCode::from(2));
            }
            println!("state: redis at {}: answers in {}", c.core.state.url, ms(asked));
        }
        (Some(_), StateKind::Local) => println!("state: in the {} store", stores.directory.backend()),
        (None, _) => println!("state: in each process's memory (not shared; see [state] for Redis)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The PostgreSQL database `store migrate` copies into.
pub struct Target {
    /// `postgres://USER@HOST:PORT/DATABASE`.
    pub url: String,
    /// The password's file.
    pub password_file: Option<PathBuf>,
    /// The CA for verify-full.
    pub ca_file: Option<PathBuf>,
    /// Plain TCP (loopback, a Unix socket).
    pub no_tls: bool,
}

/// `store migrate --to URL`: every user of the configured store into PostgreSQL. Copies
/// what is missing, leaves what is identical, refuses what differs (exit 2).
pub fn migrate(path: &Path, target: &Target) -> Result<ExitCode> {
    let c = Settings::load(path)?;
    if portcullis_core::config::url_has_password(&target.url) {
        bail!("--to: keep the password out of the URL (it shows in `ps`): give it with --password-file");
    }
    if !target.no_tls && target.ca_file.is_none() {
        bail!(
            "--to: give --ca-file (the CA that signed the server's certificate; TLS is checked) or, on loopback or a Unix socket only, --no-tls"
        );
    }
    let source = portcullis_store::open(&c.core).with_context(|| format!("the configured store ({})", location(&c)))?;
    let config = StoreConfig {
        backend: StoreKind::Postgres,
        url: target.url.clone(),
        password_file: target.password_file.clone(),
        sslmode: if target.no_tls {
            SslMode::Disable
        } else {
            SslMode::VerifyFull
        },
        ca_file: target.ca_file.clone(),
        ..StoreConfig::default()
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let into = PostgresStore::open(&config, &|p| cwd.join(p))?;
    let (mut copied, mut same, mut differ) = (0, 0, Vec::new());
    for user in source.users()? {
        match into.user(&user.name)? {
            None => {
                into.create(&user)?;
                copied += 1;
            }
            Some(there) if there == user => same += 1,
            Some(_) => differ.push(user.name),
        }
    }
    println!(
        "{} to {}: {copied} copied, {same} already there",
        plural(copied + same + differ.len(), "user", "users"),
        target.url
    );
    if !differ.is_empty() {
        eprintln!(
            "error: {} differ in {} and were left as they are there (used since an earlier copy? newer state is never overwritten): {}; \
             remove them there first if the configured store is the one to keep",
            plural(differ.len(), "user", "users"),
            target.url,
            differ.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

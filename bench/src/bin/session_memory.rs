//! Memory per active session (`bench/gateway.sh`): builds the in-process session table the
//! gateway holds (`portcullis_core::session::Sessions`) with N sessions and reports the
//! growth of this process' RSS per session; then the same with the SQLite backend for the
//! bytes each session takes on disk (write-through, one fsync'd transaction per session,
//! so that part stops after a time limit).
//!
//! Usage: `session_memory [N=100000] [SQLITE_SECONDS=20]`. Prints `key=value` lines.

use anyhow::{Context, Result, bail};
use portcullis_core::session::{Level, Session, SessionBackend, SessionPolicy, Sessions};
use portcullis_core::{Clock, SystemClock};
use portcullis_store::SqliteStore;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Resident set size of this process in bytes (`VmRSS` of /proc/self/status).
fn rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS")?
        .parse()
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// A typical session: what the portal stores after a two-factor login.
fn session(i: usize, now: i64) -> Session {
    Session {
        user: format!("user{i:06}"),
        groups: vec!["users".to_string()],
        display_name: Some(format!("User {i}")),
        email: Some(format!("user{i:06}@example.com")),
        level: Level::TwoFactor,
        created: now,
        last_seen: now,
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8))),
        factor: Some([7; 16]),
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> Result<T> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .ok()
            .with_context(|| format!("argument {n}: {s:?} is not a number")),
    }
}

fn main() -> Result<()> {
    let n: usize = arg(1, 100_000)?;
    let sqlite_seconds: u64 = arg(2, 20)?;
    let now = SystemClock.now();

    // 1. The in-memory table (session store "memory", and what every backend keeps in RAM).
    let before = rss()?;
    let sessions = Sessions::new(SessionPolicy::default(), None, now)?;
    let t = Instant::now();
    for i in 0..n {
        // The cookie value is returned to the browser, not kept: drop it.
        drop(sessions.create(session(i, now))?);
    }
    let create_s = t.elapsed().as_secs_f64();
    let after = rss()?;
    if sessions.len() != n {
        bail!("expected {n} sessions, have {}", sessions.len());
    }
    let grown = after.saturating_sub(before);
    println!("memory_sessions={n}");
    println!("memory_rss_before_bytes={before}");
    println!("memory_rss_after_bytes={after}");
    println!("memory_bytes_per_session={}", grown / n as u64);
    println!("memory_creates_per_s={:.0}", n as f64 / create_s);
    drop(sessions);

    // 2. The SQLite backend: bytes on disk per session, creates per second (fsync each).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.db");
    let empty = {
        drop(SqliteStore::open(&path)?);
        std::fs::metadata(&path)?.len()
    };
    let store = SqliteStore::open(&path)?;
    let backend: Box<dyn SessionBackend> = Box::new(store);
    let sessions = Sessions::new(SessionPolicy::default(), Some(backend), now)?;
    let t = Instant::now();
    let limit = Duration::from_secs(sqlite_seconds);
    let mut made = 0usize;
    while made < n && t.elapsed() < limit {
        drop(sessions.create(session(made, now))?);
        made += 1;
    }
    let create_s = t.elapsed().as_secs_f64();
    // Closing the connection checkpoints the WAL into the database file.
    drop(sessions);
    let mut size = std::fs::metadata(&path)?.len();
    let wal = dir.path().join("sessions.db-wal");
    if let Ok(m) = std::fs::metadata(&wal) {
        size += m.len();
    }
    println!("sqlite_sessions={made}");
    println!("sqlite_db_bytes={size}");
    println!(
        "sqlite_bytes_per_session={}",
        size.saturating_sub(empty) / made.max(1) as u64
    );
    println!("sqlite_creates_per_s={:.0}", made as f64 / create_s);
    Ok(())
}

//! What portcullis adds to a push login (`bench/duo.sh`, which starts the Auth API stand-in
//! with a device that approves at once): the time from "password accepted" to "approved,
//! session issued" through the core (`Authorizer::login_push` on a one-factor portal
//! session: preauth with its ping, the push, the answer, the user's failures cleared in the
//! SQLite store, regulation, the new two-factor session) against the same Auth API calls
//! made straight with the client (ping, preauth, auth, auth_status): the stand-in's own
//! round trip. Alternating, one of each at a time; medians.
//!
//! Usage: `duo_push_round_trip CONFIG.toml ROUNDS`. Prints `key=value` lines.

use anyhow::{Context, Result, bail};
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::model::{FirstFactor, User};
use portcullis_core::push::{Preauth, PushOutcome, PushService, PushStatus};
use portcullis_core::{Config, Level, SystemClock};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, rounds] = args.as_slice() else {
        bail!("usage: duo_push_round_trip CONFIG.toml ROUNDS");
    };
    let rounds: usize = rounds.parse().context("ROUNDS")?;
    let config = Config::load(std::path::Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = Arc::new(SystemClock);
    let stores = portcullis_store::open_all(&config)?;
    let mut alice = User::new("alice", FirstFactor::None);
    alice.duo = true;
    stores.directory.create(&alice)?;
    let direct = portcullis_duo::from_config(&config, clock.clone())?.context("[duo] is not set")?;
    let service = portcullis_duo::from_config(&config, clock.clone())?.context("[duo] is not set")?;
    let engine = Engine::from_config(
        &config,
        Parts {
            directory: stores.directory,
            sessions: stores.sessions,
            regulation: stores.regulation,
            external: stores.external,
            pushes: Some(Box::new(service)),
        },
        clock,
    )?;
    let ip: IpAddr = "192.0.2.7".parse()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Password accepted: the one-factor session the portal's password step made.
        let a = engine.authorizer();
        let session = a.sessions.create(a.session_for(&alice, Level::OneFactor, ip)?)?;
        let t = Instant::now();
        let (sent, _) = a.login_push(session.as_str(), ip, true, Duration::ZERO)?;
        if !matches!(sent, PushOutcome::Waiting { .. }) {
            bail!("the push was not sent: {sent:?}");
        }
        loop {
            match a.login_push(session.as_str(), ip, false, Duration::from_secs(5))?.0 {
                PushOutcome::Waiting { .. } => {}
                PushOutcome::SignedIn(_) => break,
                other => bail!("not signed in: {other:?}"),
            }
        }
        ours.push(t.elapsed());
        let t = Instant::now();
        let Preauth::Push { device, .. } = direct.preauth("alice", Some(ip))? else {
            bail!("the stand-in did not offer a push");
        };
        let txid = direct.push("alice", &device, Some(ip))?;
        while direct.status(&txid, Duration::from_secs(5))? == PushStatus::Waiting {}
        theirs.push(t.elapsed());
    }
    let (o, r) = (median(ours), median(theirs));
    println!("rounds={rounds}");
    println!("portcullis_ms={:.3}", o.as_secs_f64() * 1e3);
    println!("stand_in_ms={:.3}", r.as_secs_f64() * 1e3);
    println!("ratio={:.2}", o.as_secs_f64() / r.as_secs_f64());
    Ok(())
}

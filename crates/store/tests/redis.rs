//! The Redis state store against a real redis-server: the session, regulation and
//! invitation conformance suites, failures counted by two nodes at once, an outage that is
//! an error in bounded time and ends by itself, TLS with a CA and an ACL user.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

mod certs;
mod ports;
mod redis_server;

use portcullis_core::config::{StateConfig, StateKind};
use portcullis_core::model::{Step, Token};
use portcullis_core::regulation::{RegulationPolicy, RegulationStore};
use portcullis_core::session::{Revocation, SessionBackend};
use portcullis_otp::Algorithm;
use portcullis_store::redis_state::RedisState;
use redis_server::Redis;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(url: &str, prefix: &str) -> StateConfig {
    StateConfig {
        backend: StateKind::Redis,
        url: url.to_string(),
        key_prefix: prefix.to_string(),
        timeout: 2,
        ..StateConfig::default()
    }
}

fn open(url: &str, prefix: &str) -> RedisState {
    RedisState::open(&config(url, prefix), &|p: &Path| p.to_path_buf()).unwrap()
}

#[test]
fn the_redis_state_keeps_the_session_regulation_and_invite_contracts() {
    let r = Redis::start_new();
    let url = r.url();
    portcullis_core::session::check_session_backend_contract(&|| Box::new(open(&url, "t1:")));
    portcullis_core::regulation::check_store_contract(&open(&url, "t2:"));
    portcullis_core::invite::check_store_contract(&open(&url, "t3:"), &|| {
        Token::generate(Step::Time(30), Algorithm::Sha1, 6)
    });
    // Prefixes keep sites apart on one server.
    let (a, b) = (open(&url, "site-a:"), open(&url, "site-b:"));
    let policy = RegulationPolicy {
        max_retries: 1,
        ..RegulationPolicy::default()
    };
    assert_eq!(a.fail(&["user:ann".into()], 100, &policy).unwrap(), [true]);
    assert!(a.banned(&["user:ann".into()], 101).unwrap());
    assert!(
        !b.banned(&["user:ann".into()], 101).unwrap(),
        "another prefix, another site"
    );
}

#[test]
fn two_nodes_counting_failures_at_once_lose_none() {
    let r = Redis::start_new();
    let (a, b) = (open(&r.url(), "race:"), open(&r.url(), "race:"));
    let policy = RegulationPolicy {
        max_retries: 1000,
        find_time: 3600,
        ban_time: 60,
    };
    std::thread::scope(|s| {
        for node in [&a, &b, &a, &b] {
            let policy = &policy;
            s.spawn(move || {
                for i in 0..50 {
                    node.fail(&["addr:192.0.2.1".into()], 1000 + i, policy).unwrap();
                }
            });
        }
    });
    // 200 failures counted, none lost: 800 more make the 1000th, which bans.
    let mut banned = false;
    for i in 0..800 {
        banned = a.fail(&["addr:192.0.2.1".into()], 2000 + i, &policy).unwrap()[0];
        assert!(!banned || i == 799, "banned early, at failure {}", 200 + i + 1);
    }
    assert!(banned, "the 1000th failure bans");
    assert!(
        b.banned(&["addr:192.0.2.1".into()], 2800).unwrap(),
        "and the other node sees the ban"
    );
    assert_eq!(b.banned_count(2800).unwrap(), 1);
}

#[test]
fn an_outage_is_an_error_in_bounded_time_and_ends_by_itself() {
    let mut r = Redis::start_new();
    let state = open(&r.url(), "outage:");
    state.put(&[1; 32], &session()).unwrap();
    r.kill();
    let started = Instant::now();
    let e = state.get(&[1; 32]).unwrap_err();
    assert!(e.is_unreachable(), "a server that is down is one to wait for: {e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains(&r.url()), "names the server: {e}");
    assert!(state.ping().is_err());
    r.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The server came back empty (nothing saved): the session is gone, and that is an
        // answer, not an error.
        match state.get(&[1; 32]) {
            Ok(found) => {
                assert!(found.is_none());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("still failing 10 s after the restart: {e}"),
        }
    }
}

fn session() -> portcullis_core::Session {
    portcullis_core::Session {
        user: "ann".into(),
        groups: vec![],
        display_name: None,
        email: None,
        level: portcullis_core::Level::TwoFactor,
        created: 100,
        last_seen: 100,
        client_ip: None,
        factor: None,
    }
}

#[test]
fn tls_with_a_ca_and_an_acl_user_works_and_a_wrong_ca_or_password_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs::certificates(certs.path(), "right");
    let (other_ca, _, _) = certs::certificates(certs.path(), "wrong");
    // Only the application's ACL user, limited to its key prefix.
    let acl = certs.path().join("users.acl");
    std::fs::write(
        &acl,
        "user default off\nuser portcullis on >cache-s3cret ~tls:* +@all\n",
    )
    .unwrap();
    let r = Redis::start_with(&[
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--aclfile",
        acl.to_str().unwrap(),
    ]);
    let password = certs.path().join("redis.pass");
    std::fs::write(&password, "cache-s3cret\n").unwrap();
    let tls = StateConfig {
        username: "portcullis".into(),
        password_file: Some(password.clone()),
        ca_file: Some(ca),
        ..config(&format!("rediss://127.0.0.1:{}/0", r.port), "tls:")
    };
    let resolve = |p: &Path| p.to_path_buf();
    let state = RedisState::open(&tls, &resolve).unwrap();
    state.put(&[2; 32], &session()).unwrap();
    assert_eq!(state.get(&[2; 32]).unwrap().unwrap().user, "ann");
    // A CA that did not sign the server's certificate: a clear error at once, not a hang.
    let started = Instant::now();
    let wrong = StateConfig {
        ca_file: Some(other_ca),
        ..tls.clone()
    };
    let e = RedisState::open(&wrong, &resolve).unwrap_err();
    assert!(
        !e.is_unreachable(),
        "an untrusted server is refused, not waited for: {e:?}"
    );
    let e = e.to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A wrong password says so.
    std::fs::write(&password, "not it\n").unwrap();
    let e = RedisState::open(&tls, &resolve).unwrap_err();
    assert!(
        !e.is_unreachable(),
        "a wrong password is refused, not waited for: {e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("WRONGPASS") || e.to_lowercase().contains("password"), "{e}");
}

#[test]
fn a_session_ended_through_one_node_is_announced_to_the_others_at_once() {
    let r = Redis::start_new();
    let (a, b) = (open(&r.url(), "watch:"), open(&r.url(), "watch:"));
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heard.clone();
    a.watch(std::sync::Arc::new(move |what: Revocation<'_>| {
        log.lock().unwrap().push(format!("{what:?}"))
    }))
    .unwrap();
    b.put(&[5; 32], &session()).unwrap();
    b.delete(&[5; 32]).unwrap();
    b.put(&[6; 32], &session()).unwrap();
    b.delete_user("ann").unwrap();
    b.announce_user("bo").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while heard.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let expected = [
        Revocation::Session(&[5; 32]),
        Revocation::Session(&[6; 32]),
        Revocation::User("ann"),
        Revocation::User("bo"),
    ]
    .map(|r| format!("{r:?}"));
    assert_eq!(*heard.lock().unwrap(), expected);
}

/// Redis Sentinel: the primary is asked of the sentinels, and when it dies they promote its
/// replica, which the store finds by itself: the failed requests were refused, the next ones
/// work, and what was written before the failover is still there.
#[test]
fn through_sentinel_the_store_follows_a_failover_to_the_promoted_replica() {
    use portcullis_core::session::{Level, Session};
    let mut primary = Redis::start_new();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let sentinel = Redis::start_sentinel(primary.port);
    let config = StateConfig {
        backend: StateKind::Redis,
        master_name: "mymaster".into(),
        sentinels: vec![format!("127.0.0.1:{}", sentinel.port)],
        key_prefix: "ha:".into(),
        timeout: 1,
        ..StateConfig::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        match RedisState::open(&config, &|p: &Path| p.to_path_buf()) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("sentinel not ready: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let session = |user: &str| Session {
        user: user.into(),
        groups: vec![],
        display_name: None,
        email: None,
        level: Level::TwoFactor,
        created: 1_900_000_000,
        last_seen: 1_900_000_000,
        client_ip: None,
        factor: None,
    };
    // Another node listens for revocations, across the failover too.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<[u8; 32]>::new()));
    let other = RedisState::open(&config, &|p: &Path| p.to_path_buf()).unwrap();
    let sink = heard.clone();
    other
        .watch(std::sync::Arc::new(move |what| {
            if let Revocation::Session(h) = what {
                sink.lock().unwrap().push(*h);
            }
        }))
        .unwrap();
    state.put(&[1; 32], &session("before")).unwrap();
    // Replicated before the primary goes.
    let synced = Instant::now();
    while !replica.log().contains("MASTER <-> REPLICA sync: Finished") && synced.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    primary.kill();
    let started = Instant::now();
    let mut refused = 0;
    let healed = loop {
        match state.put(&[2; 32], &session("after")) {
            Ok(()) => break started.elapsed(),
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("no failover after 20 s: {e}\n{}", sentinel.log()),
        }
    };
    eprintln!("failover: {refused} refusals, service back after {healed:?}");
    assert!(refused > 0, "the primary was killed: something must have been refused");
    assert_eq!(state.get(&[1; 32]).unwrap().map(|s| s.user), Some("before".into()));
    assert_eq!(state.get(&[2; 32]).unwrap().map(|s| s.user), Some("after".into()));
    assert!(sentinel.log().contains("+switch-master"), "{}", sentinel.log());
    // A logout after the failover reaches the other node, subscribed to the new primary.
    let told = Instant::now();
    while told.elapsed() < Duration::from_secs(10) && !heard.lock().unwrap().contains(&[2; 32]) {
        let _ = state.delete(&[2; 32]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        heard.lock().unwrap().contains(&[2; 32]),
        "the other node heard no revocation after the failover"
    );
    eprintln!("revocations heard again {:?} after service came back", told.elapsed());
}

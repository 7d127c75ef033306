//! The Auth API client against the stand-in (tests/standin.py), which verifies every
//! signature: what each scripted answer of Duo's becomes for the core.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

#[path = "standin_harness/mod.rs"]
mod standin_harness;

use portcullis_core::clock::SystemClock;
use portcullis_core::push::{Preauth, PushError, PushService, PushStatus};
use portcullis_duo::{DuoClient, Settings};
use standin_harness::{IKEY, PASSCODE, SKEY, StandIn};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client(s: &StandIn, skey: &str, call_timeout: Duration) -> DuoClient {
    client_at(&s.api_host(), s, skey, call_timeout)
}

fn client_at(host: &str, s: &StandIn, skey: &str, call_timeout: Duration) -> DuoClient {
    DuoClient::new(
        Settings {
            api_host: host.to_string(),
            ikey: IKEY.into(),
            username: "{user}".into(),
            push_info: true,
            service_name: "gw.example".into(),
            call_timeout,
            retries: 3,
        },
        zeroize::Zeroizing::new(skey.as_bytes().to_vec()),
        Some(&s.ca_file()),
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn decided(c: &DuoClient, txid: &str) -> PushStatus {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match c.status(txid, Duration::from_secs(2)).unwrap() {
            PushStatus::Waiting if Instant::now() < end => {}
            other => return other,
        }
    }
}

#[test]
fn the_keys_are_checked_and_a_wrong_secret_key_is_refused() {
    let s = StandIn::start_new();
    let c = client(&s, SKEY, Duration::from_secs(5));
    let time = c.check().unwrap();
    assert!((time - portcullis_core::clock::Clock::now(&SystemClock)).abs() < 5);
    c.ping().unwrap();
    assert!(c.offset().abs() < 5, "offset {}", c.offset());
    let wrong = client(&s, "not the key", Duration::from_secs(5));
    assert!(matches!(wrong.check(), Err(PushError::Refused(m)) if m.contains("40103")));
    assert_eq!(s.bad_signatures(), 1, "only the wrong key's request was refused");
}

#[test]
fn preauth_answers_become_the_cores_and_outages_are_unreachable() {
    let s = StandIn::start_new();
    let c = client(&s, SKEY, Duration::from_secs(3));
    assert_eq!(
        c.preauth("alice", Some("192.0.2.7".parse().unwrap())).unwrap(),
        Preauth::Push {
            device: "DPFZRS9FB0D46QFTM891".into(),
            name: "iOS (XXX-XXX-0100)".into()
        }
    );
    assert!(matches!(c.preauth("enroll-bob", None).unwrap(), Preauth::Enroll(u) if u.starts_with("https://")));
    assert_eq!(c.preauth("bypass-carol", None).unwrap(), Preauth::Allow);
    assert!(matches!(c.preauth("denied-dave", None).unwrap(), Preauth::Deny(_)));
    // Refusals and answers that cannot be read deny; server errors are outages.
    assert!(matches!(c.preauth("fail-erin", None), Err(PushError::Refused(_))));
    assert!(matches!(c.preauth("badjson-frank", None), Err(PushError::Refused(_))));
    assert!(matches!(c.preauth("error-gina", None), Err(PushError::Unreachable(_))));
    // 429 with Retry-After: 1, twice, then an answer: bounded back-off gets there.
    let t = Instant::now();
    assert_eq!(c.preauth("ratelimit-hal", None).unwrap(), Preauth::Allow);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "waited as told: {:?}",
        t.elapsed()
    );
    // Slower than the call timeout: out of reach, in about the timeout.
    let t = Instant::now();
    assert!(matches!(c.preauth("slow-ivy", None), Err(PushError::Unreachable(_))));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = client_at(&format!("localhost:{closed}"), &s, SKEY, Duration::from_secs(3));
    assert!(matches!(nowhere.preauth("alice", None), Err(PushError::Unreachable(_))));
    assert_eq!(s.bad_signatures(), 0);
}

#[test]
fn a_push_is_approved_denied_or_waits_and_unknown_answers_deny() {
    let s = StandIn::start_new();
    let c = client(&s, SKEY, Duration::from_secs(5));
    let ip = Some("192.0.2.7".parse().unwrap());
    let tx = c.push("alice", "DPFZRS9FB0D46QFTM891", ip).unwrap();
    assert_eq!(decided(&c, &tx), PushStatus::Allowed);
    let tx = c.push("deny-bob", "D", ip).unwrap();
    assert!(matches!(decided(&c, &tx), PushStatus::Denied(_)));
    let tx = c.push("weird-carol", "D", ip).unwrap();
    assert!(matches!(decided(&c, &tx), PushStatus::Denied(m) if m.contains("unknown result")));
    let tx = c.push("statusfail-dave", "D", ip).unwrap();
    assert!(matches!(
        c.status(&tx, Duration::from_secs(1)),
        Err(PushError::Refused(_))
    ));
    // A person who has not answered yet: waiting, until they approve.
    let tx = c.push("manual-erin", "D", ip).unwrap();
    assert_eq!(c.status(&tx, Duration::from_secs(2)).unwrap(), PushStatus::Waiting);
    s.approve("manual-erin");
    assert_eq!(decided(&c, &tx), PushStatus::Allowed);
    // What the push shows: the service's name and the client's address.
    let sent = &s.stats()["push_params"]["alice"][0];
    assert_eq!(sent["pushinfo"], "host=gw.example&client=192.0.2.7", "{sent}");
    assert_eq!(sent["async"], "1");
    assert_eq!(s.bad_signatures(), 0);
}

#[test]
fn a_passcode_is_checked_with_duo_and_works_once() {
    let s = StandIn::start_new();
    let c = client(&s, SKEY, Duration::from_secs(5));
    assert!(!c.passcode("alice", "111111", None).unwrap());
    assert!(c.passcode("alice", PASSCODE, None).unwrap());
    assert!(!c.passcode("alice", PASSCODE, None).unwrap(), "used up");
    assert_eq!(s.all_pushes(), 0, "a passcode pushes nobody");
}

#[test]
fn the_secret_key_is_not_in_the_debug_text() {
    let s = StandIn::start_new();
    let c = client(&s, SKEY, Duration::from_secs(5));
    let text = format!("{c:?}");
    assert!(!text.contains(SKEY) && text.contains("redacted"), "{text}");
}

//! The PostgreSQL directory against a real PostgreSQL: the Directory conformance suite,
//! one counter taken once by two nodes (two pools, 1,000 trials), schema versions, an outage that is an
//! error in bounded time and ends by itself.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

mod certs;
mod pg;
mod ports;

use pg::Postgres;
use portcullis_core::config::{SslMode, StoreConfig, StoreKind};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::{Directory, StoreError};
use portcullis_otp::{Algorithm, Secret};
use portcullis_store::postgres::PostgresStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config(url: &str) -> StoreConfig {
    StoreConfig {
        backend: StoreKind::Postgres,
        url: url.to_string(),
        sslmode: SslMode::Disable,
        timeout: 2,
        ..StoreConfig::default()
    }
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(&config(url), &|p: &Path| p.to_path_buf()).unwrap()
}

fn hotp_user(name: &str) -> User {
    let mut u = User::new(name, FirstFactor::None);
    u.tokens.push(Token::new(
        TokenKind::Oath,
        Step::Event,
        Secret::from_bytes(vec![9; 20]),
        Algorithm::Sha1,
        6,
    ));
    u
}

#[test]
fn the_postgres_directory_keeps_the_contract() {
    let pg = Postgres::start_new();
    let store = open(&pg.database("contract"));
    portcullis_core::store::check_directory_contract(&store);
    // Everything a user holds survives the round trip.
    let mut u = hotp_user("carol");
    u.first_factor = FirstFactor::Hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    u.groups = vec!["staff".into(), "admins".into()];
    u.display_name = Some("Carol C".into());
    u.email = Some("carol@example.com".into());
    u.failures = 3;
    u.locked = true;
    u.duo = true;
    u.tokens[0].counter = 41;
    u.tokens[0].last_code = Some(zeroize::Zeroizing::new("123456".into()));
    u.tokens[0].last_ip = Some("192.0.2.7".into());
    u.tokens[0].last_used = Some(1_700_000_000);
    u.scratch = vec![
        portcullis_core::model::ScratchHash("h1".into()),
        portcullis_core::model::ScratchHash("h2".into()),
    ];
    u.app_passwords = vec![portcullis_core::model::AppPassword {
        label: "phone".into(),
        hash: "$argon2id$x".into(),
        created: 1_700_000_001,
    }];
    u.passkeys = vec![portcullis_core::model::Passkey {
        id: vec![1, 2, 3],
        label: "laptop".into(),
        data: "{\"cred\":1}".into(),
        counter: 7,
        backup_eligible: true,
        backup_state: false,
        discoverable: true,
        created: 1_700_000_002,
        last_used: Some(1_700_000_003),
    }];
    store.create(&u).unwrap();
    let got = store.user("carol").unwrap().unwrap();
    assert_eq!(format!("{got:?}"), format!("{u:?}"));
    assert_eq!(got.passkeys, u.passkeys);
    assert_eq!(store.passkey_owner(&[1, 2, 3]).unwrap().as_deref(), Some("carol"));
    assert_eq!(store.passkey_owner(&[9]).unwrap(), None);
    // One credential, one owner: the store refuses a second.
    let mut dave = User::new("dave", FirstFactor::None);
    store.create(&dave).unwrap();
    dave.passkeys = u.passkeys.clone();
    let taken = store.update("dave", &mut |d| {
        d.passkeys = dave.passkeys.clone();
        true
    });
    assert!(matches!(taken, Err(StoreError::Exists(_))), "{taken:?}");
    assert!(store.user("dave").unwrap().unwrap().passkeys.is_empty());
    assert_eq!(store.schema_version().unwrap(), 3);
}

#[test]
fn two_nodes_accept_one_counter_once() {
    let pg = Postgres::start_new();
    let url = pg.database("race");
    let (a, b) = (open(&url), open(&url));
    a.create(&hotp_user("dave")).unwrap();
    // Each trial, both nodes try to take counter n at the same moment, as two gateways
    // verifying one HOTP code would: exactly one may.
    let trials = 1000;
    let mut won = [0u32; 2];
    for n in 0..trials {
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = [&a, &b]
                .into_iter()
                .map(|node| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let mut took = false;
                        node.update("dave", &mut |u| {
                            took = u.tokens[0].counter == n;
                            if took {
                                u.tokens[0].counter += 1;
                            }
                            took
                        })
                        .unwrap();
                        took
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|t| **t).count(), 1, "trial {n}: {results:?}");
        for (i, took) in results.iter().enumerate() {
            won[i] += u32::from(*took);
        }
    }
    assert_eq!(b.user("dave").unwrap().unwrap().tokens[0].counter, trials);
    // Both nodes won some: the race was real, not one node always first.
    assert!(won.iter().all(|w| *w > 0), "{won:?}");
}

#[test]
fn a_newer_schema_is_refused_with_its_version() {
    let pg = Postgres::start_new();
    let url = pg.database("newer");
    drop(open(&url));
    pg.sql("ALTER DATABASE newer OWNER TO postgres");
    let out = std::process::Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "newer",
            "-p",
            &pg.port.to_string(),
        ])
        .args(["-c", "UPDATE portcullis_schema SET version = 99"])
        .status()
        .unwrap();
    assert!(out.success());
    let e = PostgresStore::open(&config(&url), &|p: &Path| p.to_path_buf())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema version 99 is newer than this portcullis knows (3); upgrade portcullis"),
        "{e}"
    );
}

#[test]
fn an_outage_is_an_error_in_bounded_time_and_ends_by_itself() {
    let mut pg = Postgres::start_new();
    let url = pg.database("outage");
    let store = open(&url);
    store.create(&hotp_user("erin")).unwrap();
    pg.stop();
    let started = Instant::now();
    let e = store.user("erin").unwrap_err();
    assert!(e.is_unreachable(), "a server that is down is one to wait for: {e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains(&url), "names the database: {e}");
    pg.start();
    // The pool reconnects: no restart of the process.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.user("erin") {
            Ok(u) => {
                assert!(u.is_some());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("still failing after the restart: {e}"),
        }
    }
}

#[test]
fn a_wrong_address_or_password_file_says_what_is_wrong() {
    let pg = Postgres::start_new();
    let mut c = config(&format!("postgres://postgres@127.0.0.1:{}/nowhere", pg.port));
    let e = PostgresStore::open(&c, &|p: &Path| p.to_path_buf())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("does not exist"), "{e}");
    c.password_file = Some(PathBuf::from("/nonexistent/pg.pass"));
    let e = PostgresStore::open(&c, &|p: &Path| p.to_path_buf())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[store] password_file") && e.contains("no such file"), "{e}");
}

#[test]
fn tls_with_verify_full_and_a_password_file_works_and_a_wrong_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs::certificates(certs.path(), "right");
    let (other_ca, _, _) = certs::certificates(certs.path(), "wrong");
    // The server's key must be the postgres user's and private.
    let server_files = tempfile::tempdir().unwrap();
    std::fs::set_permissions(server_files.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (cert_at, key_at) = (
        server_files.path().join("server.pem"),
        server_files.path().join("server.key"),
    );
    std::fs::copy(&cert, &cert_at).unwrap();
    std::fs::copy(&key, &key_at).unwrap();
    std::fs::set_permissions(&key_at, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(
        std::process::Command::new("chown")
            .arg("postgres")
            .arg(&key_at)
            .arg(&cert_at)
            .status()
            .unwrap()
            .success()
    );
    // Plain TCP is refused for the application's role, TLS with a password is required.
    let pg = Postgres::start_with(
        "hostnossl all app 127.0.0.1/32 reject\nhostssl all app 127.0.0.1/32 scram-sha-256",
        &format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'",
            cert_at.display(),
            key_at.display()
        ),
    );
    pg.sql("CREATE ROLE app LOGIN PASSWORD 'db s3cret'");
    pg.sql("CREATE DATABASE tls OWNER app");
    let password = certs.path().join("pg.pass");
    std::fs::write(&password, "db s3cret\n").unwrap();
    let url = format!("postgres://app@127.0.0.1:{}/tls", pg.port);
    let resolve = |p: &Path| p.to_path_buf();
    let tls = StoreConfig {
        sslmode: SslMode::VerifyFull,
        ca_file: Some(ca.clone()),
        password_file: Some(password.clone()),
        ..config(&url)
    };
    let store = PostgresStore::open(&tls, &resolve).unwrap();
    store.create(&hotp_user("fay")).unwrap();
    assert!(store.user("fay").unwrap().is_some());
    // Without TLS the server refuses (so the store above spoke TLS).
    let plain = StoreConfig {
        password_file: Some(password.clone()),
        ..config(&url)
    };
    let e = PostgresStore::open(&plain, &resolve).unwrap_err().to_string();
    assert!(e.contains("no encryption") || e.contains("rejects connection"), "{e}");
    // A CA that did not sign the server's certificate: a clear error at once, not a hang.
    let started = Instant::now();
    let wrong = StoreConfig {
        ca_file: Some(other_ca),
        ..tls.clone()
    };
    let e = PostgresStore::open(&wrong, &resolve).unwrap_err();
    assert!(
        !e.is_unreachable(),
        "an untrusted server is refused, not waited for: {e:?}"
    );
    let e = e.to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A wrong password says so.
    std::fs::write(&password, "not it\n").unwrap();
    let e = PostgresStore::open(&tls, &resolve).unwrap_err();
    assert!(
        !e.is_unreachable(),
        "a wrong password is refused, not waited for: {e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("password authentication failed"), "{e}");
}

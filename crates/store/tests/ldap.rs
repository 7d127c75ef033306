//! The LDAP first-factor source against a real slapd (tests/ldap_server): the password
//! source contract, one canonical name for uid, e-mail and case, RFC 4515 escaping, groups
//! by filter and by memberOf, TLS verified both ways, outages bounded in time and healed.
#![allow(clippy::unwrap_used)] // test code: a panic is a failure report

#[path = "ldap_server/mod.rs"]
mod ldap_server;
mod ports;

use ldap_server::{Slapd, black_hole};
use portcullis_core::config::Config;
use portcullis_core::factor::{PasswordSource, check_password_source_contract};
use portcullis_store::ldap::LdapSource;
use ports::free_port;
use std::path::Path;
use std::time::{Duration, Instant};

/// A source on `url` over `s` with `extra` lines in `[ldap]`.
fn source(s: &Slapd, url: &str, extra: &str) -> Result<LdapSource, portcullis_core::StoreError> {
    let pw = s.dir().join(format!("service-{}.pass", free_port()));
    std::fs::write(&pw, format!("{}\n", s.service_password())).unwrap();
    let text = format!(
        "[ldap]\nurl = {url:?}\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = {:?}\nbase_dn = \"ou=people,dc=example,dc=com\"\ntimeout = 2\n{extra}",
        s.ca_file(),
        s.service_dn(),
        pw,
    );
    let config = Config::parse(&text, Path::new("/test/portcullis.toml")).unwrap_or_else(|e| panic!("{e}"));
    LdapSource::open(&config.ldap, &|p| p.to_path_buf())
}

fn ldaps(s: &Slapd) -> LdapSource {
    // Groups live outside ou=people.
    source(s, &s.ldaps_url(), "group_base_dn = \"ou=groups,dc=example,dc=com\"\n").unwrap()
}

#[test]
fn an_ldap_server_keeps_the_password_source_contract() {
    let s = Slapd::start_new();
    let src = ldaps(&s);
    check_password_source_contract(&src, "bob", "bob pw", &|| {
        // modifyTimestamp counts seconds, and a search is reused for a second.
        std::thread::sleep(Duration::from_millis(1100));
        s.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: changed pw\n",
            s.user_dn("bob")
        ));
        std::thread::sleep(Duration::from_millis(1100));
    });
}

#[test]
fn uid_mail_and_case_are_one_person_and_filter_injection_finds_nobody() {
    let s = Slapd::start_new();
    let src = ldaps(&s);
    for typed in ["alice", "alice@example.com", "ALICE", "Alice@Example.com"] {
        assert_eq!(src.canonical(typed).unwrap().as_deref(), Some("alice"), "{typed}");
    }
    for typed in ["*", "*)(uid=*", "alice)(|(uid=*", "\\2a", "al*", "alice\0", "nobody"] {
        assert_eq!(src.canonical(typed).unwrap(), None, "{typed:?}");
        assert_eq!(src.check(typed, "alice pw").unwrap(), None, "{typed:?}");
    }
    // Two entries share the mail: neither is picked.
    assert_eq!(src.canonical("twin@example.com").unwrap(), None);
    assert_eq!(src.canonical("twin1").unwrap().as_deref(), Some("twin1"));
    // Outside base_dn.
    assert_eq!(src.canonical("dave").unwrap(), None);
    // The password is checked by binding as the entry found; an empty one never binds.
    assert_eq!(src.check("alice", "alice pw").unwrap(), Some(true));
    assert_eq!(src.check("alice", "bob pw").unwrap(), Some(false));
    assert_eq!(src.check("alice", "").unwrap(), Some(false));
    // check takes the canonical name only: an e-mail address is resolved first.
    assert_eq!(src.check("alice@example.com", "alice pw").unwrap(), None);
}

#[test]
fn groups_come_by_filter_or_by_member_of_with_name_and_mail() {
    let s = Slapd::start_new();
    let alice = ldaps(&s).profile("alice").unwrap().unwrap();
    assert!(alice.groups.contains(&"admins".to_string()), "{alice:?}");
    assert!(alice.groups.contains(&"staff".to_string()), "{alice:?}");
    assert!(alice.groups.contains(&s.group_dn("admins")), "{alice:?}");
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert!(alice.display_name.is_some(), "{alice:?}");
    let bob = ldaps(&s).profile("bob").unwrap().unwrap();
    assert!(!bob.groups.contains(&"admins".to_string()), "{bob:?}");
    let by_attr = source(&s, &s.ldaps_url(), "member_of_attribute = \"memberOf\"\n").unwrap();
    let alice2 = by_attr.profile("alice").unwrap().unwrap();
    let mut a = alice.groups.clone();
    let mut b = alice2.groups.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "memberOf gives the same groups");
    assert_eq!(ldaps(&s).profile("nobody").unwrap(), None);
}

#[test]
fn starttls_works_a_foreign_ca_is_refused_and_failover_takes_the_next_server() {
    let s = Slapd::start_new();
    let tls = source(&s, &s.url(), "start_tls = true\n").unwrap();
    assert_eq!(tls.check("bob", "bob pw").unwrap(), Some(true));

    let other = s.other_ca();
    let pw = s.dir().join("svc.pass");
    std::fs::write(&pw, s.service_password()).unwrap();
    let config = Config::parse(
        &format!(
            "[ldap]\nurl = {:?}\nca_file = {other:?}\nbind_dn = {:?}\nbind_password_file = {pw:?}\nbase_dn = \"dc=example,dc=com\"\ntimeout = 2\n",
            s.ldaps_url(),
            s.service_dn()
        ),
        Path::new("/t.toml"),
    )
    .unwrap();
    let wrong = LdapSource::open(&config.ldap, &|p| p.to_path_buf()).unwrap();
    let e = wrong.check("bob", "bob pw").unwrap_err().to_string();
    assert!(e.contains(&s.ldaps_url()) && e.contains("ca_file"), "{e}");

    // A server that refuses connections first, then the real one.
    let closed = format!("ldaps://127.0.0.1:{}", free_port());
    let both = source(&s, &format!("{closed} {}", s.ldaps_url()), "").unwrap();
    assert_eq!(both.check("bob", "bob pw").unwrap(), Some(true));
    // A wrong service password is an error naming the account, not "wrong password".
    let config = Config::parse(
        &format!(
            "[ldap]\nurl = {:?}\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = {:?}\nbase_dn = \"dc=example,dc=com\"\n",
            s.ldaps_url(),
            s.ca_file(),
            s.service_dn(),
            s.dir().join("nope.pass")
        ),
        Path::new("/t.toml"),
    )
    .unwrap();
    std::fs::write(s.dir().join("nope.pass"), "not it\n").unwrap();
    let e = LdapSource::open(&config.ldap, &|p| p.to_path_buf())
        .unwrap()
        .check("bob", "bob pw")
        .unwrap_err()
        .to_string();
    assert!(e.contains("service account") && !e.contains("not it"), "{e}");
}

#[test]
fn a_stopped_or_hung_server_is_an_error_within_the_timeout_and_service_returns() {
    let mut s = Slapd::start_new();
    let src = ldaps(&s);
    assert_eq!(src.check("bob", "bob pw").unwrap(), Some(true));
    s.stop();
    std::thread::sleep(Duration::from_millis(1100)); // past the reuse of the last search
    let started = Instant::now();
    assert!(src.check("bob", "bob pw").is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    s.start();
    // The pooled connection died with the server: a new one is made.
    assert_eq!(src.check("bob", "bob pw").unwrap(), Some(true));

    let hole = black_hole();
    for url in [hole.url(), hole.ldaps_url()] {
        let hung = source(
            &s,
            &url,
            if url.starts_with("ldap://") {
                "start_tls = true\n"
            } else {
                ""
            },
        )
        .unwrap();
        let started = Instant::now();
        let e = hung.check("bob", "bob pw").unwrap_err().to_string();
        let took = started.elapsed();
        eprintln!("{url}: refused after {took:?}: {e}");
        assert!(took < Duration::from_secs(5), "{url}: {took:?}");
    }
    // A hung server first in the list: its time runs out and the next one answers.
    let failover = source(&s, &format!("{} {}", hole.ldaps_url(), s.ldaps_url()), "").unwrap();
    let started = Instant::now();
    assert_eq!(failover.check("bob", "bob pw").unwrap(), Some(true));
    eprintln!("past a hung first server after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_token_kept_in_an_attribute_is_read_and_others_have_none() {
    let s = Slapd::start_new();
    let src = source(&s, &s.ldaps_url(), "token_attribute = \"portcullisOTP\"\n").unwrap();
    let carol = src.profile("carol").unwrap().unwrap().token.expect("carol's token");
    assert_eq!(
        carol.secret,
        portcullis_otp::Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap()
    );
    assert_eq!(src.profile("bob").unwrap().unwrap().token, None);
}

#[test]
fn the_service_password_file_is_read_again_when_it_changes() {
    let mut s = Slapd::start_new();
    let pw = s.dir().join("rotating.pass");
    std::fs::write(&pw, format!("{}\n", s.service_password())).unwrap();
    let text = format!(
        "[ldap]\nurl = {:?}\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = {pw:?}\nbase_dn = \"ou=people,dc=example,dc=com\"\ntimeout = 2\n",
        s.ldaps_url(),
        s.ca_file(),
        s.service_dn()
    );
    let config = Config::parse(&text, Path::new("/t.toml")).unwrap();
    let src = LdapSource::open(&config.ldap, &|p| p.to_path_buf()).unwrap();
    assert_eq!(src.check("bob", "bob pw").unwrap(), Some(true));
    // A new password in the file is used for the next connection (a restart drops the
    // pooled ones): here a wrong one, so the search fails, naming the account.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&pw, "rotated wrongly\n").unwrap();
    s.stop();
    s.start();
    let e = src.check("bob", "bob pw").unwrap_err().to_string();
    assert!(e.contains("service account"), "{e}");
    std::fs::write(&pw, format!("{}\n", s.service_password())).unwrap();
    assert_eq!(src.check("bob", "bob pw").unwrap(), Some(true));
}

//! The slapd harness itself (tests/ldap_server), checked with the ldap-utils programs:
//! TLS both ways, binds, the seed, ACLs, memberOf, restarts, modifications, a hung server.
#![allow(clippy::unwrap_used)] // test code: a panic is a failure report

#[path = "ldap_server/mod.rs"]
mod ldap_server;
mod ports;

use ldap_server::{CAROL_OTP, Slapd, black_hole};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `command`: exit code, stdout, stderr.
fn run(command: &mut Command) -> (i32, String, String) {
    let out = command.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `ldapwhoami -x` against `url` as `dn` (`-ZZ`: StartTLS required).
fn whoami(s: &Slapd, url: &str, starttls: bool, dn: &str, password: &str) -> (i32, String, String) {
    let mut c = s.tool("ldapwhoami");
    c.args(["-x", "-H", url, "-D", dn, "-w", password]);
    if starttls {
        c.arg("-ZZ");
    }
    run(&mut c)
}

/// `ldapsearch -LLL` over StartTLS as `dn` under the base DN.
fn search(s: &Slapd, dn: &str, password: &str, filter: &str, attrs: &[&str]) -> (i32, String, String) {
    search_in(s, s.base_dn(), dn, password, filter, attrs)
}

/// `ldapsearch -LLL` over StartTLS as `dn` under `base`.
fn search_in(s: &Slapd, base: &str, dn: &str, password: &str, filter: &str, attrs: &[&str]) -> (i32, String, String) {
    run(s
        .tool("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-ZZ", "-H", &s.url()])
        .args(["-D", dn, "-w", password, "-b", base, filter])
        .args(attrs))
}

/// The `dn:` lines of an LDIF, sorted.
fn dns(ldif: &str) -> Vec<String> {
    let mut v: Vec<String> = ldif
        .lines()
        .filter_map(|l| l.strip_prefix("dn: ").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The values of `attr` in an LDIF, sorted.
fn values(ldif: &str, attr: &str) -> Vec<String> {
    let prefix = format!("{attr}: ");
    let mut v: Vec<String> = ldif
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn starts_quickly() {
    let t = Instant::now();
    let s = Slapd::start_new();
    let took = t.elapsed();
    eprintln!("slapd started and seeded in {took:?}");
    assert!(took < Duration::from_secs(5), "slapd took {took:?} to start");
    assert!(s.log().contains("slapd starting"), "{}", s.log());
}

#[test]
fn service_account_binds_over_starttls_and_ldaps() {
    let s = Slapd::start_new();
    let expected = format!("dn:{}\n", s.service_dn());
    let (code, out, err) = whoami(&s, &s.url(), true, s.service_dn(), s.service_password());
    assert_eq!((code, out.as_str()), (0, expected.as_str()), "{err}");
    let (code, out, err) = whoami(&s, &s.ldaps_url(), false, s.service_dn(), s.service_password());
    assert_eq!((code, out.as_str()), (0, expected.as_str()), "{err}");
    // The certificate names localhost too.
    let localhost = format!("ldaps://localhost:{}", s.ldaps_port());
    let (code, out, err) = whoami(&s, &localhost, false, s.service_dn(), s.service_password());
    assert_eq!((code, out.as_str()), (0, expected.as_str()), "{err}");
    // The rootdn binds as well.
    let (code, out, err) = whoami(&s, &s.url(), true, s.admin_dn(), s.admin_password());
    assert_eq!((code, out), (0, format!("dn:{}\n", s.admin_dn())), "{err}");
}

#[test]
fn users_bind_with_their_password_only() {
    let s = Slapd::start_new();
    let alice = s.user_dn("alice");
    let (code, out, err) = whoami(&s, &s.url(), true, &alice, "alice pw");
    assert_eq!((code, out), (0, format!("dn:{alice}\n")), "{err}");
    let (code, out, err) = whoami(&s, &s.url(), true, &alice, "bob pw");
    assert_eq!(code, 49, "{out}{err}");
    assert!(err.contains("Invalid credentials"), "{err}");
    for (uid, password) in ldap_server::USERS {
        let dn = if *uid == "dave" {
            format!("uid=dave,ou=elsewhere,{}", s.base_dn())
        } else {
            s.user_dn(uid)
        };
        let (code, out, err) = whoami(&s, &s.ldaps_url(), false, &dn, password);
        assert_eq!((code, out), (0, format!("dn:{dn}\n")), "{uid}: {err}");
    }
    // Stored hashed, as a directory would: base64 of "{SSHA}...".
    let stored = s.search("(uid=alice)", &["userPassword"]);
    assert_eq!(values(&stored, "userPassword:").len(), 1, "{stored}");
    assert!(values(&stored, "userPassword:")[0].starts_with("e1NTSEF9"), "{stored}");
}

#[test]
fn service_account_searches_but_never_reads_passwords() {
    let s = Slapd::start_new();
    let (sd, sp) = (s.service_dn(), s.service_password());
    let (code, out, err) = search(&s, sd, sp, "(mail=twin@example.com)", &["uid"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dns(&out), [s.user_dn("twin1"), s.user_dn("twin2")], "{out}");
    let (code, out, err) = search(&s, sd, sp, "(uid=alice)", &["*", "userPassword"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dns(&out), [s.user_dn("alice")], "{out}");
    assert_eq!(values(&out, "cn"), ["Alice Liddell"], "{out}");
    assert_eq!(values(&out, "displayName"), ["Alice"], "{out}");
    assert_eq!(values(&out, "mail"), ["alice@example.com"], "{out}");
    assert!(!out.to_lowercase().contains("userpassword"), "{out}");
    // The admin does see it (so the search above could have shown it).
    let admin = s.search("(uid=alice)", &["userPassword"]);
    assert!(admin.contains("userPassword:: "), "{admin}");
    // Filtering on it does not leak it either.
    let (code, out, err) = search(&s, sd, sp, "(userPassword=*)", &["dn"]);
    assert_eq!((code, dns(&out)), (0, vec![]), "{out}{err}");
    // dave is outside ou=people, found from the base.
    let (code, out, err) = search(&s, sd, sp, "(uid=dave)", &["dn"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dns(&out), [format!("uid=dave,ou=elsewhere,{}", s.base_dn())]);
}

#[test]
fn carol_has_an_otp_secret_in_the_custom_schema() {
    let s = Slapd::start_new();
    let (code, out, err) = search(
        &s,
        s.service_dn(),
        s.service_password(),
        "(objectClass=portcullisUser)",
        &["portcullisOTP", "objectClass"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(dns(&out), [s.user_dn("carol")], "{out}");
    assert_eq!(values(&out, "portcullisOTP"), [CAROL_OTP], "{out}");
    // Single-valued: a second value is refused.
    let out = run(s
        .tool("ldapmodify")
        .args(["-x", "-H", &s.url(), "-D", s.admin_dn(), "-w", s.admin_password()])
        .arg("-f")
        .arg({
            let f = s.dir().join("second-otp.ldif");
            std::fs::write(
                &f,
                format!(
                    "dn: {}\nchangetype: modify\nadd: portcullisOTP\nportcullisOTP: otpauth://totp/x?secret=AAAA\n",
                    s.user_dn("carol")
                ),
            )
            .unwrap();
            f
        }));
    assert_eq!(out.0, 19, "constraint violation expected: {}{}", out.1, out.2);
}

#[test]
fn groups_show_in_member_of() {
    let s = Slapd::start_new();
    let (sd, sp) = (s.service_dn(), s.service_password());
    let (code, out, err) = search(&s, sd, sp, "(uid=alice)", &["memberOf"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        values(&out, "memberOf"),
        [s.group_dn("admins"), s.group_dn("staff")],
        "{out}"
    );
    let (_, out, _) = search(&s, sd, sp, "(uid=bob)", &["memberOf"]);
    assert_eq!(values(&out, "memberOf"), [s.group_dn("staff")], "{out}");
    let (_, out, _) = search(&s, sd, sp, "(uid=carol)", &["memberOf"]);
    assert_eq!(values(&out, "memberOf"), Vec::<String>::new(), "{out}");
    // The groups themselves.
    let (_, out, _) = search(&s, sd, sp, "(cn=staff)", &["member"]);
    assert_eq!(values(&out, "member"), [s.user_dn("alice"), s.user_dn("bob")], "{out}");
    // A user reads their own entry (as the base of the search), memberOf included...
    let bob = s.user_dn("bob");
    let (code, out, err) = search_in(&s, &bob, &bob, "bob pw", "(objectClass=*)", &["memberOf"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(values(&out, "memberOf"), [s.group_dn("staff")], "{out}");
    // ... and nobody else's.
    let alice = s.user_dn("alice");
    let (code, out, err) = search_in(&s, &alice, &bob, "bob pw", "(objectClass=*)", &["dn"]);
    assert_eq!((code, dns(&out)), (32, vec![]), "{out}{err}");
}

#[test]
fn modify_removing_alice_from_admins_is_visible() {
    let s = Slapd::start_new();
    // A groupOfNames keeps one member: bob replaces alice.
    s.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: member\nmember: {}\n",
        s.group_dn("admins"),
        s.user_dn("bob")
    ));
    let (sd, sp) = (s.service_dn(), s.service_password());
    let (_, out, _) = search(&s, sd, sp, "(uid=alice)", &["memberOf"]);
    assert_eq!(values(&out, "memberOf"), [s.group_dn("staff")], "{out}");
    let (_, out, _) = search(&s, sd, sp, "(uid=bob)", &["memberOf"]);
    assert_eq!(
        values(&out, "memberOf"),
        [s.group_dn("admins"), s.group_dn("staff")],
        "{out}"
    );
}

#[test]
#[should_panic(expected = "ldapmodify")]
fn modify_failure_panics() {
    let s = Slapd::start_new();
    s.modify("dn: uid=nobody,ou=people,dc=example,dc=com\nchangetype: delete\n");
}

#[test]
fn a_client_trusting_another_ca_fails_the_handshake() {
    let s = Slapd::start_new();
    let other = s.other_ca();
    let mut c = s.tool("ldapwhoami");
    c.env("LDAPTLS_CACERT", &other).args([
        "-x",
        "-ZZ",
        "-H",
        &s.url(),
        "-D",
        s.service_dn(),
        "-w",
        s.service_password(),
    ]);
    let (code, out, err) = run(&mut c);
    assert_ne!(code, 0, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("ldap_start_tls: Connect error"), "{err}");
    let mut c = s.tool("ldapwhoami");
    c.env("LDAPTLS_CACERT", &other).args([
        "-x",
        "-H",
        &s.ldaps_url(),
        "-D",
        s.service_dn(),
        "-w",
        s.service_password(),
    ]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 255, "{out}{err}");
    assert!(err.contains("Can't contact LDAP server"), "{err}");
    // The same client with the right CA gets through.
    let (code, _, err) = whoami(&s, &s.ldaps_url(), false, s.service_dn(), s.service_password());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn stop_and_start_keep_ports_and_data() {
    let mut s = Slapd::start_new();
    let (url, ldaps) = (s.url(), s.ldaps_url());
    s.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: alice@new.example.com\n",
        s.user_dn("alice")
    ));
    s.stop();
    let (code, out, err) = whoami(&s, &url, false, s.service_dn(), s.service_password());
    assert_eq!(code, 255, "{out}{err}");
    assert!(err.contains("Can't contact LDAP server"), "{err}");
    s.start();
    assert_eq!(s.url(), url);
    assert_eq!(s.ldaps_url(), ldaps);
    let (code, _, err) = whoami(&s, &url, true, &s.user_dn("alice"), "alice pw");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = whoami(&s, &ldaps, false, s.service_dn(), s.service_password());
    assert_eq!(code, 0, "{err}");
    let out = s.search("(uid=alice)", &["mail"]);
    assert_eq!(values(&out, "mail"), ["alice@new.example.com"], "{out}");
    let (_, out, _) = search(&s, s.service_dn(), s.service_password(), "(uid=alice)", &["memberOf"]);
    assert_eq!(values(&out, "memberOf").len(), 2, "{out}");
}

#[test]
fn anonymous_may_only_bind() {
    let s = Slapd::start_new();
    let (code, out, err) =
        run(s
            .tool("ldapsearch")
            .args(["-x", "-LLL", "-H", &s.url(), "-b", s.base_dn(), "(uid=alice)", "dn"]));
    assert!(dns(&out).is_empty(), "{out}");
    assert_eq!(code, 50, "{err}");
    assert!(err.contains("Insufficient access"), "{err}");
}

#[test]
fn a_black_hole_accepts_and_never_answers() {
    let hole = black_hole();
    let s = Slapd::start_new();
    let t = Instant::now();
    let mut c = s.tool("ldapwhoami");
    c.env("LDAPTIMEOUT", "1").args([
        "-x",
        "-H",
        &hole.url(),
        "-D",
        s.service_dn(),
        "-w",
        s.service_password(),
    ]);
    let (code, out, err) = run(&mut c);
    let took = t.elapsed();
    assert_ne!(code, 0, "{out}");
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}: {err}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
    // A raw connection is accepted and nothing ever comes back.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", hole.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    std::io::Write::write_all(&mut stream, b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00").unwrap();
    let mut buf = [0u8; 16];
    let e = loop {
        match std::io::Read::read(&mut stream, &mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other.unwrap_err(),
        }
    };
    assert!(
        matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        "{e}"
    );
}

//! Issue 16: the LDAP first factor end to end, against a real slapd (tests/ldap_server):
//! `user add --ldap`, portal and Basic logins with the LDAP password and a code, one
//! identity for uid, e-mail and case, group rules from LDAP groups that follow a change on
//! the server, and an LDAP outage that is a 503, never an open door, healed by itself.

use crate::harness::*;
use crate::ldap_server::Slapd;
use crate::postgres::within;
use std::time::Duration;

/// `/admin/` for the LDAP group `admins` only.
const RULES: &str = "
[[access.rules]]
path = \"^/admin/\"
groups = \"admins\"
policy = \"two_factor\"

[[access.rules]]
path = \"^/admin/\"
policy = \"deny\"
";

/// A configuration on `s` (ldaps://, its CA, the service account) with the rules above.
fn ldap_env(s: &Slapd) -> Env {
    let env = Env::new(RULES);
    let pw = env.path().join("ldap.pass");
    std::fs::write(&pw, format!("{}\n", s.service_password())).unwrap();
    for (key, value) in [
        ("url", format!("{:?}", s.ldaps_url())),
        ("ca_file", format!("{:?}", s.ca_file())),
        ("bind_dn", format!("{:?}", s.service_dn())),
        ("bind_password_file", format!("{pw:?}")),
        ("base_dn", "\"ou=people,dc=example,dc=com\"".into()),
        ("group_base_dn", "\"ou=groups,dc=example,dc=com\"".into()),
        ("timeout", "2".into()),
    ] {
        env.set("ldap", key, &value);
    }
    env.set("session", "refresh", "2");
    env
}

/// Issue 16: an unknown name and a wrong password take the same time (the unknown one
/// searches and binds as the known one does), so timing does not tell who exists.
// Timing wants a quiet machine: scripts/test runs it alone, after the parallel pass.
#[test]
#[ignore = "a timing comparison: scripts/test runs it alone (--ignored)"]
fn an_unknown_name_and_a_wrong_ldap_password_take_the_same_time() {
    let s = Slapd::start_new();
    let env = ldap_env(&s);
    // Every try is refused; none may be answered by a ban instead.
    env.set("regulation", "max_retries", "0");
    env.ok(&["user", "add", "bob", "--ldap", "--no-terminal-qr"], None);
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let gw = env.serve();
    let try_once = |user: &str| {
        let token = data_encoding::BASE64.encode(format!("{user}:guess123456").as_bytes());
        let request = format!(
            "GET /api/authz/auth-request HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Original-URL: http://127.0.0.1/app\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
        );
        let started = std::time::Instant::now();
        let r = raw_http(gw.port, request.as_bytes());
        assert_eq!(r.status, 401, "{user}: {}", r.body);
        started.elapsed()
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Interleaved, each after the same pause (a first request after a pause is slower),
    // bob's 1.1 s apart: past the reuse of his last search.
    for i in 0..21 {
        std::thread::sleep(Duration::from_millis(550));
        wrong.push(try_once("bob"));
        std::thread::sleep(Duration::from_millis(550));
        unknown.push(try_once(&format!("nobody{i}")));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (u, w) = (median(&mut unknown), median(&mut wrong));
    let ratio = u.as_secs_f64() / w.as_secs_f64();
    eprintln!("median refusal: unknown name {u:?}, wrong LDAP password {w:?}, ratio {ratio:.2}");
    assert!((0.8..=1.25).contains(&ratio), "unknown {u:?} vs wrong password {w:?}");
}

/// Issue 16: a token kept in LDAP (`token_attribute`) verifies an oathtool code, once: the
/// replay state is in the portcullis store and outlives a restart.
#[test]
fn a_token_kept_in_ldap_verifies_an_oathtool_code_once_even_after_a_restart() {
    let s = Slapd::start_new();
    let env = ldap_env(&s);
    env.set("ldap", "token_attribute", "\"portcullisOTP\"");
    env.ok(&["user", "add", "carol", "--ldap", "--no-token"], None);
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let gw = env.serve();
    settle(8);
    let code = crate::import::oathtool(&["--totp", "-b", "JBSWY3DPEHPK3PXP"]);
    let creds = format!("carol:carol pw{code}");
    let r = ask(&gw, "/app", &["-u", &creds]);
    assert_eq!(
        (r.status, r.header("remote-user")),
        (200, Some("carol")),
        "{}",
        gw.log_text()
    );
    // From another client (told by the trusted proxy on loopback): the code is spent.
    assert_eq!(
        ask(&gw, "/app", &["-u", &creds, "-H", "X-Real-IP: 127.0.0.2"]).status,
        401
    );
    assert!(gw.log_text().contains("replayed"), "{}", gw.log_text());
    drop(gw);
    let gw = env.serve();
    assert_eq!(
        ask(&gw, "/app", &["-u", &creds, "-H", "X-Real-IP: 127.0.0.2"]).status,
        401,
        "replayed after a restart"
    );
    assert!(gw.log_text().contains("replayed"), "{}", gw.log_text());
    // Nothing was written to LDAP.
    assert!(
        s.search("(uid=carol)", &["portcullisOTP"])
            .contains("secret=JBSWY3DPEHPK3PXP")
    );
}

/// The password step alone: the portal's answer to `user` and `password`.
fn password_step(b: &Browser, gw: &Server, user: &str, password: &str) -> Reply {
    let page = b.get(&gw.url("/login?rd=http%3A%2F%2F127.0.0.1%2Fapp"), &[]);
    b.post(
        &gw.url("/login"),
        &[
            ("csrf", &page.csrf()),
            ("rd", "http://127.0.0.1/app"),
            ("username", user),
            ("password", password),
        ],
    )
}

/// Issue 16: `[ldap] auto_enroll`: a member of an allowed group who is not in portcullis
/// yet enrolls at their first login (password, the key once, a confirming code); others
/// and wrong passwords get nothing, and nobody is added for them.
#[test]
fn auto_enroll_walks_an_allowed_member_through_enrollment_at_first_login_and_no_one_else() {
    let s = Slapd::start_new();
    let env = ldap_env(&s);
    env.set("ldap", "auto_enroll", "true");
    env.set("ldap", "auto_enroll_groups", "[\"staff\"]");
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let gw = env.serve();
    // twin1 is in no allowed group; alice is, but the password is wrong.
    for (user, password) in [("twin1", "twin1 pw"), ("alice", "bob pw"), ("nobody", "x")] {
        let r = password_step(&Browser::new(&env, user), &gw, user, password);
        assert_ne!(r.status, 303, "{user}: {}", r.body);
    }
    let list = env.ok(&["user", "list"], None);
    assert!(!list.contains("twin1") && !list.contains("alice"), "{list}");

    // bob, by e-mail: straight from the password to his own enrollment link.
    let b = Browser::new(&env, "bob");
    let r = password_step(&b, &gw, "bob@example.com", "bob pw");
    assert_eq!(r.status, 303, "{}\n{}", r.body, gw.log_text());
    let link = gw.url(r.header("location").unwrap_or_default());
    assert!(link.contains("/enroll/"), "{link}");
    assert!(
        b.cookie("portcullis_session").is_none(),
        "no session before a second factor"
    );
    let start = b.get(&link, &[]);
    assert!(start.body.contains("Show my key"), "{}", start.body);
    let shown = b.post(&link, &[("csrf", &start.csrf()), ("reveal", "1")]);
    let secret = shown_key(&shown.body);
    settle(8);
    let r = b.post(&link, &[("csrf", &shown.csrf()), ("code", &code_now(&env, &secret))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(env.ok(&["user", "list"], None).contains("bob"));
    // Enrolled: a normal two-factor login now, as "bob" the server's name for him.
    let r = Browser::new(&env, "bob2").login(
        &gw,
        "bob",
        "bob pw",
        &code_next_step(&env, &secret),
        "http://127.0.0.1/app",
    );
    assert_eq!(r.status, 303, "{}", r.body);
    // With a token, the password alone no longer leads to a new key.
    let r = password_step(&Browser::new(&env, "bob3"), &gw, "bob", "bob pw");
    assert!(
        !r.header("location").unwrap_or_default().contains("/enroll/"),
        "{:?}",
        r.header("location")
    );
}

fn ask(gw: &Server, path: &str, extra: &[&str]) -> Reply {
    let mut args = vec!["-H".to_string(), format!("X-Original-URL: http://127.0.0.1{path}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(gw.url("/api/authz/auth-request"));
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn ldap_passwords_one_identity_group_rules_that_follow_the_server_and_outages_that_refuse() {
    let mut s = Slapd::start_new();
    let env = ldap_env(&s);
    // Added by e-mail, stored under the server's name for her.
    let out = env.ok(
        &["user", "add", "alice@example.com", "--ldap", "--no-terminal-qr"],
        None,
    );
    let alice = secret_of(&uri_in(&out));
    let bob = secret_of(&uri_in(
        &env.ok(&["user", "add", "bob", "--ldap", "--no-terminal-qr"], None),
    ));
    let list = env.ok(&["user", "list"], None);
    assert!(list.contains("alice") && !list.contains("alice@example.com"), "{list}");
    let missing = env.run(&["user", "add", "nobody-here", "--ldap", "--no-terminal-qr"], None);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("in LDAP"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let gw = env.serve();
    settle(8);

    // The portal, signed in by e-mail: the session is alice's, in the LDAP group admins.
    let browser = Browser::new(&env, "alice");
    let page = "http://127.0.0.1/admin/x";
    let code = code_now(&env, &alice);
    let r = browser.login(&gw, "alice@example.com", "alice pw", &code, page);
    assert_eq!(r.status, 303, "{}\n{}", r.body, gw.log_text());
    let cookie = format!(
        "Cookie: portcullis_session={}",
        browser.cookie("portcullis_session").unwrap()
    );
    let r = ask(&gw, "/admin/x", &["-H", &cookie]);
    assert_eq!(
        (r.status, r.header("remote-user")),
        (200, Some("alice")),
        "{}",
        gw.log_text()
    );
    // The same code under another spelling of her name is the same user's spent code.
    let thief = Browser::new(&env, "thief");
    let r = thief.login(&gw, "ALICE", "alice pw", &code, page);
    assert_ne!(r.status, 303, "a code replayed under another spelling was accepted");
    assert!(gw.log_text().contains("replayed"), "{}", gw.log_text());
    // A wrong LDAP password is refused like any other.
    let r = Browser::new(&env, "guess").login(&gw, "alice", "not it", &code_next_step(&env, &alice), page);
    assert_ne!(r.status, 303);
    assert!(
        gw.log_text().contains("wrong_password") || gw.log_text().contains("wrong password"),
        "{}",
        gw.log_text()
    );

    // Basic: the LDAP password and the code in one; bob is not in admins.
    let bob_code = code_now(&env, &bob);
    let basic = ["-u", &format!("bob:bob pw{bob_code}")];
    let r = ask(&gw, "/app", &basic);
    assert_eq!(
        (r.status, r.header("remote-user")),
        (200, Some("bob")),
        "{}",
        gw.log_text()
    );
    assert_ne!(ask(&gw, "/admin/x", &basic).status, 200, "bob is not in admins");
    assert_eq!(
        ask(&gw, "/app", &["-u", &format!("bob:alice pw{bob_code}")]).status,
        401
    );

    // Taken out of admins on the server: her session loses /admin/ within the refresh.
    s.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: member\nmember: {}\n",
        s.group_dn("admins"),
        s.user_dn("bob")
    ));
    let took = within(Duration::from_secs(8), || {
        ask(&gw, "/admin/x", &["-H", &cookie]).status != 200
    });
    assert!(took.is_some(), "alice kept /admin/ after leaving the group");
    eprintln!("group removal in LDAP took effect after {took:?}");
    assert_eq!(ask(&gw, "/app", &["-H", &cookie]).status, 200, "the rest is still hers");

    // slapd stopped: a password that must be checked is a 503, never a 401 or a 200.
    s.stop();
    std::thread::sleep(Duration::from_millis(1100));
    let wrong = ["-u", "bob:guess123456"];
    let r = ask(&gw, "/app", &wrong);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        gw.log_text().contains(&s.ldaps_url()),
        "the log names the server: {}",
        gw.log_text()
    );
    s.start();
    let healed = within(Duration::from_secs(5), || ask(&gw, "/app", &wrong).status == 401);
    assert!(healed.is_some(), "no recovery after slapd came back");
    assert!(!gw.log_text().contains("bob pw") && !gw.log_text().contains("alice pw"));
}

/// A group name with a comma (an LDAP DN always has one; a cn may) is not passed on in the
/// comma-separated `Remote-Groups`: the application would split it into other groups. Here
/// bob's group `cn=x\,admins` would have put him in `admins` for the application.
#[test]
fn ldap_group_names_with_commas_never_reach_the_application_as_other_groups() {
    let s = Slapd::start_new();
    s.modify(&format!(
        "dn: cn=x\\,admins,ou=groups,dc=example,dc=com\nchangetype: add\nobjectClass: groupOfNames\n\
         cn: x,admins\nmember: {}\n",
        s.user_dn("bob")
    ));
    let env = ldap_env(&s);
    let bob = secret_of(&uri_in(
        &env.ok(&["user", "add", "bob", "--ldap", "--no-terminal-qr"], None),
    ));
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let gw = env.serve();
    settle(5);
    let basic = ["-u", &format!("bob:bob pw{}", code_now(&env, &bob))];
    let r = ask(&gw, "/app", &basic);
    assert_eq!(r.status, 200, "{}", gw.log_text());
    assert_eq!(r.header("remote-groups"), Some("staff"), "{:?}", r.headers);
    // portcullis's own rules see the group whole: not admins.
    assert_eq!(ask(&gw, "/admin/x", &basic).status, 403);
}

/// Apache on an LDAP configuration: the FastCGI authorizer in Basic mode (the gateway binds
/// to LDAP) and mod_authnz_external running `portcullis check` (a process of its own, run
/// as www-data, that opens LDAP itself) share spent codes. A login by e-mail is decided as
/// the user LDAP names (one spent code under either name); Apache's `REMOTE_USER` stays the
/// name typed, and only the FastCGI side can add the canonical one (`PORTCULLIS_USER`).
#[test]
fn apache_fastcgi_basic_and_external_check_on_ldap_share_spent_codes_and_one_identity() {
    use crate::apache::{basic, gateway, start_apache};
    let s = Slapd::start_new();
    let env = ldap_env(&s);
    // `portcullis check` runs as www-data: the CA and the service password file go in the
    // test directory, which `start_apache` opens to www-data (the slapd directory is root's
    // and may be 0700: the check then fails closed, exit 2, "ca_file: ... Permission denied").
    let ca = env.path().join("ldap-ca.pem");
    std::fs::copy(s.ca_file(), &ca).unwrap();
    env.set("ldap", "ca_file", &format!("{ca:?}"));
    let alice = secret_of(&uri_in(
        &env.ok(&["user", "add", "alice", "--ldap", "--no-terminal-qr"], None),
    ));
    let bob = secret_of(&uri_in(
        &env.ok(&["user", "add", "bob", "--ldap", "--no-terminal-qr"], None),
    ));
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let (dav, ext) = (apache.url("/dav/who.cgi"), apache.url("/ext/who.cgi"));
    assert_eq!(curl(&[&dav]).status, 401);
    settle(10);

    // FastCGI Basic: bob's LDAP password and his code, checked by the gateway.
    let code = code_now(&env, &bob);
    let r = basic("bob", &format!("bob pw{code}"), &dav, &[]);
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.body, apache.error_log(), gw.log_text());
    assert!(
        r.body.contains("user=[bob]") && r.body.contains("auth=[Basic]"),
        "{}",
        r.body
    );
    assert!(gw.log_text().contains("user=\"bob\""), "{}", gw.log_text());
    // The same code through the check process, from another address: spent.
    let other = ["--interface", "127.0.0.2"];
    let r = basic("bob", &format!("bob pw{code}"), &ext, &other);
    assert_eq!(r.status, 401, "{}\n{}", r.body, apache.error_log());
    assert!(
        apache
            .error_log()
            .lines()
            .any(|l| l.contains("reason=\"replayed\"") && l.contains("user=\"bob\"")),
        "{}",
        apache.error_log()
    );
    // A wrong LDAP password through the check process, with a code nobody spent.
    let next = code_next_step(&env, &bob);
    let r = basic("bob", &format!("alice pw{next}"), &ext, &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        apache
            .error_log()
            .lines()
            .any(|l| l.contains("reason=\"wrong_password\"") && l.contains("user=\"bob\"")),
        "{}",
        apache.error_log()
    );

    // By e-mail through the check process (it searched LDAP as www-data): the decision is
    // alice's. Apache still makes the typed name REMOTE_USER: mod_authnz_external's pipe
    // protocol has no way to answer another name (the FastCGI side adds PORTCULLIS_USER).
    let code = code_now(&env, &alice);
    let r = basic("alice@example.com", &format!("alice pw{code}"), &ext, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(
        apache
            .error_log()
            .lines()
            .any(|l| l.contains("result=\"success\"") && l.contains("user=\"alice\"")),
        "{}",
        apache.error_log()
    );
    assert!(r.body.contains("user=[alice@example.com]"), "{}", r.body);
    assert!(
        !gw.log_text().contains("user=\"alice\""),
        "the check process decided alone: {}",
        gw.log_text()
    );
    // Her code is spent for the gateway, under either name.
    assert_eq!(basic("alice", &format!("alice pw{code}"), &dav, &other).status, 401);
    assert!(
        gw.log_text()
            .lines()
            .any(|l| l.contains("reason=\"replayed\"") && l.contains("user=\"alice\"")),
        "{}",
        gw.log_text()
    );
    // FastCGI Basic by e-mail: the application gets her name in PORTCULLIS_USER.
    let env_cgi = apache.dir.join("site/dav/env.cgi");
    std::fs::write(
        &env_cgi,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nprintf 'remote=[%s] portcullis=[%s] groups=[%s]\\n' \"$REMOTE_USER\" \"$PORTCULLIS_USER\" \"$PORTCULLIS_GROUPS\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&env_cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let code = code_next_step(&env, &alice);
    let r = basic(
        "alice@example.com",
        &format!("alice pw{code}"),
        &apache.url("/dav/env.cgi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(
        r.body
            .contains("remote=[alice@example.com] portcullis=[alice] groups=[admins,staff]"),
        "{}",
        r.body
    );
    assert!(!apache.error_log().contains("alice pw") && !gw.log_text().contains("alice pw"));
}

/// pam_portcullis.so on an LDAP configuration: the module opens no LDAP connection inside
/// sshd and asks the gateway over `[pam] socket`, which checks the LDAP password and the
/// code of a `combined` answer; without the socket it fails closed and says what to set.
#[test]
fn pam_on_ldap_asks_the_gateway_for_a_combined_ldap_password_and_code_and_fails_closed_without_it() {
    use crate::pam::{LogSocket, Service, module, pamtester, require_root, service_text, unique};
    require_root();
    require_tool("pamtester");
    let s = Slapd::start_new();
    let env = ldap_env(&s);
    let bob = secret_of(&uri_in(
        &env.ok(&["user", "add", "bob", "--ldap", "--no-terminal-qr"], None),
    ));
    env.loopback_portal(free_port());
    let log = LogSocket::new(env.path());
    let svc = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} config={} combined log_socket={}",
            module().display(),
            env.config().display(),
            log.path.display()
        )),
    );
    settle(8);
    let rhost = Some("192.0.2.1");

    // No [pam] socket: the module does not open LDAP (nor the store) itself, whatever the
    // answer: it refuses before, saying what to set.
    let code = code_now(&env, &bob);
    assert!(
        !pamtester(&svc.name, "bob", rhost, &format!("bob pw{code}")),
        "LDAP opened inside the PAM module"
    );
    let lines = log.drain();
    assert!(
        lines.len() == 1
            && lines[0].contains("result=\"error\" reason=\"store_error\"")
            && lines[0].contains("or [ldap], pam_portcullis asks the gateway: set [pam] socket"),
        "{lines:#?}"
    );

    // With the socket the gateway decides: bob's LDAP password, then his code, in one answer.
    let socket = env.path().join("pam.sock");
    env.set("pam", "socket", &format!("{:?}", socket.display().to_string()));
    let gw = env.serve();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pamtester(&svc.name, "bob", rhost, &format!("bob pw{code}")),
        "the LDAP password and the code: {:#?}\n{}",
        log.drain(),
        gw.log_text()
    );
    assert!(
        !pamtester(&svc.name, "bob", rhost, &format!("bob pw{code}")),
        "the same code again"
    );
    // A wrong LDAP password with a code nobody spent.
    let next = code_next_step(&env, &bob);
    assert!(
        !pamtester(&svc.name, "bob", rhost, &format!("alice pw{next}")),
        "a wrong LDAP password"
    );
    assert_eq!(
        log.reasons(),
        ["code", "replayed", "wrong_password"],
        "the module's own log lines"
    );
    // The gateway made those decisions (with the LDAP bind), and logged no password.
    let text = gw.log_text();
    assert!(
        text.lines()
            .any(|l| l.contains("reason=\"wrong_password\"") && l.contains("user=\"bob\"")),
        "{text}"
    );
    assert!(!text.contains("bob pw") && !text.contains("alice pw"), "{text}");
}

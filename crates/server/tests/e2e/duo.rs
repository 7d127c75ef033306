//! Duo push through the real gateway against the Auth API stand-in (which verifies every
//! signature and counts pushes): HTTP Basic `password,push` with linger, concurrent
//! logins joining one push, no push for wrong passwords or for requests that carry only
//! a cookie (an expired session's background requests), the portal without JavaScript,
//! failmode closed and open, `portcullis check`, and `portcullis duo check`.

use crate::duo_standin::{PASSCODE, StandIn};
use crate::harness::*;

/// A config whose users approve with the stand-in (`extra` goes into `[duo]`), on a
/// loopback portal, with Basic approvals lingering 30 s.
fn env_for(s: &StandIn, extra: &str) -> Env {
    let env = Env::new(&s.config_section(extra));
    env.loopback_portal(free_port());
    env.set("otp", "linger", "30");
    env
}

fn add_duo_user(env: &Env, name: &str) {
    env.ok(
        &["user", "add", name, "--password-stdin", "--duo", "--no-terminal-qr"],
        Some("pw\n"),
    );
}

fn basic(gw: &Server, user: &str, secret: &str) -> Reply {
    curl(&[
        "--max-time",
        "40",
        "-u",
        &format!("{user}:{secret}"),
        "-H",
        "X-Original-URL: http://127.0.0.1/dav/file",
        &gw.url("/api/authz/auth-request"),
    ])
}

#[test]
fn basic_password_push_is_approved_once_and_lingers_and_a_wrong_password_pushes_nobody() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "alice");
    let gw = env.serve();
    let wrong = basic(&gw, "alice", "nope,push");
    assert_eq!(wrong.status, 401);
    assert_eq!(s.pushes("alice"), 0, "no push before the password is right");
    let ok = basic(&gw, "alice", "pw,push");
    assert_eq!(ok.status, 200, "{}\n{}", ok.body, gw.log_text());
    assert_eq!(ok.header("remote-user"), Some("alice"));
    assert_eq!(s.pushes("alice"), 1);
    // A WebDAV client resends its credentials with every request: the approval lingers.
    for _ in 0..3 {
        assert_eq!(basic(&gw, "alice", "pw,push").status, 200);
    }
    assert_eq!(s.pushes("alice"), 1, "not pushed again within the linger time");
    // Duo-only: the password alone pushes too (duo_unix's autopush), once.
    assert_eq!(basic(&gw, "alice", "pw").status, 200);
    assert_eq!(s.pushes("alice"), 2);
    // A Duo passcode instead of a push, used once.
    assert_eq!(basic(&gw, "alice", &format!("pw,{PASSCODE}")).status, 200);
    assert_eq!(s.stats()["passcodes"]["alice"], 1);
    assert_eq!(s.pushes("alice"), 2, "a passcode pushes nobody");
    let log = gw.log_text();
    assert!(log.contains("method=\"basic-push\""), "{log}");
    assert!(
        !log.contains("pw,push") && !log.contains(PASSCODE),
        "no secret in the log"
    );
    assert_eq!(s.bad_signatures(), 0);
}

#[test]
fn a_denied_push_is_refused_counted_and_a_banned_user_is_not_pushed_again() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    env.set("regulation", "max_retries", "3");
    add_duo_user(&env, "deny-bob");
    let gw = env.serve();
    for _ in 0..3 {
        assert_eq!(basic(&gw, "deny-bob", "pw,push").status, 401);
    }
    assert_eq!(s.pushes("deny-bob"), 3);
    // Banned now: refused without a push (the recipe's unanswered pushes locked the
    // Duo account; here portcullis stops asking).
    assert_eq!(basic(&gw, "deny-bob", "pw,push").status, 401);
    assert_eq!(s.pushes("deny-bob"), 3, "a banned user is not pushed");
    let show = env.ok(&["user", "show", "deny-bob"], None);
    assert!(show.contains("duo push:     yes"), "{show}");
    let log = gw.log_text();
    assert!(
        log.contains("reason=\"not_approved\"") && log.contains("reason=\"banned\""),
        "{log}"
    );
}

#[test]
fn concurrent_logins_of_one_user_and_client_join_one_push() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "manual-carol");
    let gw = env.serve();
    let url = gw.url("/api/authz/auth-request");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "40"])
                .args([
                    "-u",
                    "manual-carol:pw,push",
                    "-H",
                    "X-Original-URL: http://127.0.0.1/dav/f",
                    &url,
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // All four wait on one push; the person approves it once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.pushes("manual-carol") == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.approve("manual-carol");
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", gw.log_text());
    }
    assert_eq!(s.pushes("manual-carol"), 1, "one push for one user and client");
}

#[test]
fn requests_with_only_a_cookie_or_nothing_never_push() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "alice");
    let gw = env.serve();
    // An expired session's background requests (XHR, static files), a forged cookie,
    // nothing at all: the usual redirect or 401, never a push or a preauth.
    for path in ["/api/data.json", "/static/app.js", "/favicon.ico"] {
        for cookie in ["portcullis_session=expired0000000000000000000000000000000000000", ""] {
            let mut args = vec![
                "-H".to_string(),
                format!("X-Original-URL: http://127.0.0.1{path}"),
                "-H".to_string(),
                "X-Requested-With: XMLHttpRequest".to_string(),
            ];
            if !cookie.is_empty() {
                args.extend(["-b".to_string(), cookie.to_string()]);
            }
            args.push(gw.url("/api/authz/auth-request"));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(curl(&refs).status, 401, "{path}");
            let fa = curl(&[
                "-H",
                "X-Forwarded-Proto: http",
                "-H",
                "X-Forwarded-Host: 127.0.0.1",
                "-H",
                &format!("X-Forwarded-Uri: {path}"),
                &gw.url("/api/authz/forward-auth"),
            ]);
            assert!(matches!(fa.status, 302 | 401), "{}", fa.status);
        }
    }
    // The waiting page itself (a GET) sends none either.
    let b = Browser::new(&env, "nobody");
    b.get(&gw.url("/login/push?poll=1"), &[]);
    let stats = s.stats();
    assert_eq!(s.all_pushes(), 0, "{stats}");
    assert!(stats["preauth"].as_object().is_none_or(|m| m.is_empty()), "{stats}");
}

/// Follows the portal without JavaScript: the password, then the waiting page's own
/// reloads (`poll=1`) until it sends the browser on.
fn portal_push_login(b: &Browser, gw: &Server, user: &str, rd: &str) -> Reply {
    let _ = std::fs::remove_file(&b.jar);
    let page = b.get(&gw.url(&format!("/login?rd={}", urlencode(rd))), &[]);
    let r = b.post(
        &gw.url("/login"),
        &[
            ("csrf", &page.csrf()),
            ("rd", rd),
            ("username", user),
            ("password", "pw"),
        ],
    );
    if r.status != 303 || !r.header("location").unwrap_or("").contains("/login/push") {
        return r;
    }
    let waiting = b.get(&gw.url(&format!("/login/push?rd={}", urlencode(rd))), &[]);
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    assert!(waiting.body.contains("Push sent to"), "{}", waiting.body);
    assert!(
        waiting.body.contains("http-equiv=\"refresh\""),
        "reloads itself without JavaScript"
    );
    for _ in 0..20 {
        let r = b.get(&gw.url(&format!("/login/push?rd={}&poll=1", urlencode(rd))), &[]);
        if r.status != 200 || !r.body.contains("Push sent to") {
            return r;
        }
    }
    panic!("still waiting after 20 polls");
}

#[test]
fn the_portal_without_javascript_signs_in_on_approval_and_says_deny_enroll_and_outage() {
    let mut s = StandIn::start_new();
    let env = env_for(&s, "");
    for u in ["alice", "deny-bob", "enroll-carol"] {
        add_duo_user(&env, u);
    }
    let gw = env.serve();
    let rd = gw.url("/");
    let b = Browser::new(&env, "alice");
    let done = portal_push_login(&b, &gw, "alice", &rd);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), Some(rd.as_str()));
    let session = b.cookie("portcullis_session").expect("a session");
    let check = curl(&[
        "-b",
        &format!("portcullis_session={session}"),
        "-H",
        "X-Original-URL: http://127.0.0.1/wiki/",
        &gw.url("/api/authz/auth-request"),
    ]);
    assert_eq!(check.status, 200, "a two-factor session");
    assert_eq!(check.header("remote-user"), Some("alice"));
    assert_eq!(s.pushes("alice"), 1);
    let denied = portal_push_login(&Browser::new(&env, "bob"), &gw, "deny-bob", &rd);
    assert_eq!(denied.status, 401);
    assert!(denied.body.contains("Not approved"), "{}", denied.body);
    let enroll = portal_push_login(&Browser::new(&env, "carol"), &gw, "enroll-carol", &rd);
    assert_eq!(enroll.status, 403);
    assert!(enroll.body.contains("Enroll with Duo first") && enroll.body.contains("https://enroll.example/"));
    // failmode = "closed" (the default): Duo out of reach is no login, and says so.
    s.stop();
    let down = portal_push_login(&Browser::new(&env, "alice2"), &gw, "alice", &rd);
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("Duo cannot be reached"));
    assert_eq!(
        basic(&gw, "alice", "pw,push").status,
        503,
        "Basic: an outage is a 503, never an open door"
    );
}

#[test]
fn failmode_open_lets_the_login_on_when_duo_is_out_of_reach_and_says_so_loudly() {
    let mut s = StandIn::start_new();
    let env = env_for(&s, "failmode = \"open\"");
    add_duo_user(&env, "alice");
    let gw = env.serve();
    s.stop();
    assert_eq!(
        basic(&gw, "alice", "nope,push").status,
        401,
        "the password still counts"
    );
    let ok = basic(&gw, "alice", "pw,push");
    assert_eq!(ok.status, 200, "{}", gw.log_text());
    let log = gw.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("warning=") && l.contains("basic-push"))
        .unwrap_or_else(|| panic!("no WARN line for the skipped push:\n{log}"));
    assert!(line.contains("WARN") && line.contains("failmode"), "{line}");
}

#[test]
fn apache_check_waits_for_the_push_and_duo_check_tests_the_keys() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "alice");
    // `portcullis check` without a gateway (mod_authnz_external's pipe): user and secret
    // on two lines; exit 0 once the push is approved.
    let check = |input: &str| {
        use std::io::Write;
        let mut c = env
            .command(&["check"])
            .env("IP", "192.0.2.7")
            .env("URI", "/dav/file")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = check("alice\npw,push\n");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = check("alice\nwrong,push\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.pushes("alice"), 1);
    let said = env.ok(&["duo", "check"], None);
    assert!(
        said.contains("accepts the keys") && said.contains("clock offset"),
        "{said}"
    );
    // A wrong secret key: exit 1, and the message says which setting to look at.
    std::fs::write(s.skey_file().with_extension("wrong"), "not-the-key\n").unwrap();
    env.set(
        "duo",
        "secret_key_file",
        &format!("{:?}", s.skey_file().with_extension("wrong").display().to_string()),
    );
    let out = env.run(&["duo", "check"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("integration_key and the secret key"));
    assert_eq!(s.bad_signatures(), 1);
}

/// pam_portcullis.so under pamtester, `combined`, through the gateway's `[pam] socket`:
/// `password,push` (and the password alone for a Duo-only user) pushes and waits longer
/// than the module's own timeout; a wrong password pushes nobody.
#[test]
fn pam_combined_pushes_through_the_gateway_and_waits_for_the_person() {
    use crate::pam::{LogSocket, Service, module, pamtester, require_root, service_text, unique};
    require_root();
    require_tool("pamtester");
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "alice");
    add_duo_user(&env, "manual-bob");
    let socket = env.path().join("pam.sock");
    env.set("pam", "socket", &format!("{:?}", socket.display().to_string()));
    let gw = env.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the PAM socket: the gateway's user and group");
    let log = LogSocket::new(env.path());
    let svc = Service::new(
        unique("portcullis-duo-"),
        &service_text(&format!(
            "{} config={} combined timeout=2 log_socket={}",
            module().display(),
            env.config().display(),
            log.path.display()
        )),
    );
    let rhost = Some("192.0.2.1");
    assert!(!pamtester(&svc.name, "alice", rhost, "wrong,push"));
    assert_eq!(s.pushes("alice"), 0, "no push for a wrong password");
    assert!(
        pamtester(&svc.name, "alice", rhost, "pw,push"),
        "{:#?}\n{}",
        log.drain(),
        gw.log_text()
    );
    assert!(
        pamtester(&svc.name, "alice", rhost, "pw"),
        "Duo-only: the password alone pushes"
    );
    assert_eq!(s.pushes("alice"), 2);
    // A person who takes longer than the module's timeout=2 to approve.
    let approver = {
        let port = s.port;
        let ca = s.ca_file();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(4));
            std::process::Command::new("curl")
                .args(["-sS", "-X", "POST", "--cacert"])
                .arg(&ca)
                .arg(format!("https://localhost:{port}/stand-in/approve?username=manual-bob"))
                .output()
                .unwrap()
        })
    };
    let started = std::time::Instant::now();
    assert!(
        pamtester(&svc.name, "manual-bob", rhost, "pw,push"),
        "{:#?}",
        log.drain()
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    approver.join().unwrap();
    assert_eq!(log.reasons(), ["wrong_password", "push", "push", "push"]);
    assert!(!gw.log_text().contains("pw,push"));
}

/// Apache's mod_authnz_fcgi in front (the shipped snippets): a WebDAV-style Basic client
/// approves once with `password,push` and lingers; the cookie-mode pages and their static
/// files, asked for without a session, push nobody (the recipe's push storms).
#[test]
fn apache_fastcgi_basic_pushes_once_and_static_files_without_a_session_push_nobody() {
    let s = StandIn::start_new();
    let env = env_for(&s, "");
    add_duo_user(&env, "alice");
    let (gw, fcgi) = crate::apache::gateway(&env);
    let apache = crate::apache::start_apache(&env, fcgi);
    for _ in 0..3 {
        for path in ["/index.html", "/who.cgi", "/favicon.ico"] {
            let r = curl(&["-H", "X-Requested-With: XMLHttpRequest", &apache.url(path)]);
            assert_eq!(r.status, 302, "{path}: {}", apache.error_log());
        }
    }
    assert_eq!(s.all_pushes(), 0, "no push without credentials that ask for one");
    let dav = apache.url("/dav/who.cgi");
    assert_eq!(crate::apache::basic("alice", "nope,push", &dav, &[]).status, 401);
    let r = crate::apache::basic("alice", "pw,push", &dav, &[]);
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.body, apache.error_log(), gw.log_text());
    assert!(r.body.contains("user=[alice]"), "{}", r.body);
    for _ in 0..3 {
        assert_eq!(crate::apache::basic("alice", "pw,push", &dav, &[]).status, 200);
    }
    assert_eq!(s.pushes("alice"), 1, "one push, then the approval lingers");
}

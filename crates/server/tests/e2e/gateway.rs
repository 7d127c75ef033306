//! The gateway on its own: HTTP Basic with password+code and linger, session fixation and
//! expiry, Traefik/Caddy forward-auth, one-page login, return-URL validation, health and
//! metrics.

use crate::harness::*;

fn basic(gw: &Server, user: &str, secret: &str, interface: &str) -> Reply {
    curl(&[
        "--interface",
        interface,
        "-u",
        &format!("{user}:{secret}"),
        "-H",
        "X-Original-URL: http://127.0.0.1/dav/file",
        &gw.url("/api/authz/auth-request"),
    ])
}

#[test]
fn http_basic_password_plus_code_with_linger_honoured_and_expired() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("carol", "pw", &[]));
    env.loopback_portal(free_port());
    env.set("otp", "linger", "4");
    // 127.0.0.2 must be a trusted proxy here so that X-Original-URL counts from it too.
    env.set("server", "trusted_proxies", "[\"127.0.0.0/8\"]");
    let gw = env.serve();
    settle(12);
    let code = code_now(&env, &secret);
    let ok = basic(&gw, "carol", &format!("pw{code}"), "127.0.0.1");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("remote-user"), Some("carol"));
    // Clients resend the same header: accepted within the linger time, from the same address.
    assert_eq!(basic(&gw, "carol", &format!("pw{code}"), "127.0.0.1").status, 200);
    // From another address it is a replay.
    let other = basic(&gw, "carol", &format!("pw{code}"), "127.0.0.2");
    assert_eq!(other.status, 401);
    assert!(
        other
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic realm="))
    );
    // Wrong password with the right code: refused, same answer.
    assert_eq!(basic(&gw, "carol", &format!("px{code}"), "127.0.0.1").status, 401);
    // After the linger time the same code is refused even from the same address.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(basic(&gw, "carol", &format!("pw{code}"), "127.0.0.1").status, 401);
    let log = gw.log_text();
    assert!(log.contains("method=\"basic\""), "{log}");
    assert!(
        !log.contains(&format!("pw{code}")),
        "the password+code never reaches the log"
    );
}

#[test]
fn every_login_step_gets_a_new_session_and_expiry_kills_it() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("dave", "pw", &[]));
    env.loopback_portal(free_port());
    // Seconds of margin between the steps and the checks, even on a loaded machine.
    env.set("session", "absolute", "12");
    // A rule one factor satisfies: a surviving one-factor id would get 200 there.
    let text = std::fs::read_to_string(env.config()).unwrap()
        + "\n[[access.rules]]\npath = \"^/one/\"\npolicy = \"one_factor\"\n";
    std::fs::write(env.config(), text).unwrap();
    let gw = env.serve();
    let b = Browser::new(&env, "dave");
    let page = b.get(&gw.url("/login"), &[]);
    assert!(
        b.cookie("portcullis_session").is_none(),
        "no session before the password"
    );
    let r = b.post(
        &gw.url("/login"),
        &[("csrf", &page.csrf()), ("username", "dave"), ("password", "pw")],
    );
    assert_eq!(r.status, 303);
    let first = b.cookie("portcullis_session").unwrap();
    settle(5);
    let page = b.get(&gw.url("/login/code"), &[]);
    let r = b.post(
        &gw.url("/login/code"),
        &[("csrf", &page.csrf()), ("code", &code_now(&env, &secret))],
    );
    assert_eq!(r.status, 303);
    let second = b.cookie("portcullis_session").unwrap();
    assert_ne!(first, second, "the code step must issue a new session id");
    let check = |id: &str| {
        curl(&[
            "-H",
            &format!("Cookie: portcullis_session={id}"),
            "-H",
            "X-Original-URL: http://127.0.0.1/one/x",
            &gw.url("/api/authz/auth-request"),
        ])
        .status
    };
    assert_eq!(check(&second), 200);
    assert_eq!(
        check(&first),
        401,
        "the one-factor id died when the second step replaced it"
    );
    std::thread::sleep(std::time::Duration::from_secs(13));
    assert_eq!(check(&second), 401, "absolute expiry ends the session server-side");
}

#[test]
fn forward_auth_redirects_browsers_with_the_forwarded_url_and_challenges_others() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("erin", "pw", &[]));
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"*.example.com\", \"127.0.0.1\"]");
    let gw = env.serve();
    let fa = gw.url("/api/authz/forward-auth");
    let forwarded = [
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: app.example.com",
        "-H",
        "X-Forwarded-Uri: /docs/a?b=1&c=2",
        "-H",
        "X-Forwarded-Method: GET",
    ];
    let mut args = forwarded.to_vec();
    args.extend(["-H", "Accept: text/html", &fa]);
    let r = curl(&args);
    assert_eq!(r.status, 302);
    let expected = format!(
        "{}?rd={}",
        gw.url("/login"),
        urlencode("https://app.example.com/docs/a?b=1&c=2")
    );
    assert_eq!(r.header("location"), Some(expected.as_str()));
    // A non-browser client gets a Basic challenge instead of a login page.
    let mut args = forwarded.to_vec();
    args.push(&fa);
    let r = curl(&args);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    // After login the browser is sent back to the forwarded URL, and the session is accepted.
    settle(5);
    let b = Browser::new(&env, "erin");
    let r = b.login(
        &gw,
        "erin",
        "pw",
        &code_now(&env, &secret),
        "https://app.example.com/docs/a?b=1&c=2",
    );
    assert_eq!(r.header("location"), Some("https://app.example.com/docs/a?b=1&c=2"));
    let mut args = forwarded.to_vec();
    args.push(&fa);
    let r = b.get(&fa, &args[..args.len() - 1]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("remote-user"), Some("erin"));

    // Return URLs that leave the protected domains land on the default page.
    for evil in [
        "//evil.com/x",
        "/\\evil.com",
        "/%09/evil.com",
        "https://good.example.com.evil/",
        "https://evilexample.com/",
        "https://good.example.com@evil.com/",
        "javascript:alert(1)",
        "https://app.example.com/\r\nSet-Cookie: x=1",
        "http://127.0.0.1.evil.com/",
    ] {
        let r = b.get(&gw.url(&format!("/login?rd={}", urlencode(evil))), &[]);
        assert_eq!(r.status, 303, "{evil}");
        assert_eq!(r.header("location"), Some(gw.url("/").as_str()), "{evil:?} escaped");
    }
    let r = b.get(
        &gw.url(&format!("/login?rd={}", urlencode("https://deep.app.example.com/ok"))),
        &[],
    );
    assert_eq!(r.header("location"), Some("https://deep.app.example.com/ok"));
}

#[test]
fn one_page_login_scratch_codes_health_and_metrics() {
    let env = Env::new("");
    env.add_user("fay", "pw", &[]);
    let scratch = env.ok(&["user", "scratch", "fay"], None);
    let code = scratch
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_string();
    env.loopback_portal(free_port());
    env.set("server", "two_step", "false");
    let metrics_port = free_port();
    env.set("server", "metrics_listen", &format!("\"127.0.0.1:{metrics_port}\""));
    let gw = env.serve();
    let b = Browser::new(&env, "fay");
    let page = b.get(&gw.url("/login"), &[]);
    assert!(
        page.body.contains("autocomplete=\"one-time-code\""),
        "one page asks for the code too"
    );
    // Without the CSRF token the form is refused.
    let r = b.post(
        &gw.url("/login"),
        &[("username", "fay"), ("password", "pw"), ("code", &code)],
    );
    assert_eq!(r.status, 401);
    let r = b.post(
        &gw.url("/login"),
        &[
            ("csrf", &page.csrf()),
            ("username", "fay"),
            ("password", "pw"),
            ("code", &code),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(gw.url("/").as_str()));
    let health = curl(&[&gw.url("/api/health")]);
    assert_eq!((health.status, health.body.as_str()), (200, "{\"status\":\"ok\"}"));
    // Issue 9.5: metrics live on their own listener, never on the portal.
    assert_eq!(curl(&[&gw.url("/metrics")]).status, 404, "metrics on the public portal");
    let m = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]).body;
    for needle in [
        "portcullis_auth_successes_total 2",
        "portcullis_sessions 1",
        "portcullis_request_duration_seconds_bucket",
        "portcullis_bans_total 0",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }
    // Where a login without a return address lands: who is signed in, and sign-out
    // (it was an empty 404).
    let home = b.get(&gw.url("/"), &[]);
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(
        home.body
            .contains("Signed in as <strong>fay</strong> with password and code"),
        "{}",
        home.body
    );
    let out = b.post(&gw.url("/logout"), &[("csrf", &home.csrf())]);
    assert_eq!(out.status, 200, "{}", out.body);
    let home = b.get(&gw.url("/"), &[]);
    assert_eq!(home.status, 303, "signed out: / sends to the login page");
    assert!(
        home.header("location").unwrap().contains("/login?rd="),
        "{:?}",
        home.headers
    );
}

#[test]
fn regulation_bans_an_address_with_the_same_answer_as_a_wrong_code() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("gus", "pw", &[]));
    env.add_user("hal", "pw", &[]);
    env.loopback_portal(free_port());
    env.set("regulation", "max_retries", "3");
    env.set("lockout", "max_failures", "0");
    let gw = env.serve();
    // Three wrong passwords for three different users from one address ban the address.
    for user in ["hal", "nobody", "hal"] {
        let b = Browser::new(&env, "x");
        assert_eq!(b.login(&gw, user, "wrong", "000000", "").status, 401);
    }
    settle(5);
    let b = Browser::new(&env, "gus");
    let r = b.login(&gw, "gus", "pw", &code_now(&env, &secret), "");
    assert_eq!(r.status, 401, "the banned address is refused");
    assert!(r.body.contains("not correct"), "a ban looks like any wrong credential");
    assert!(gw.log_text().contains("banned=true"));
    // Another address is not affected.
    let mut other = Browser::new(&env, "gus2");
    other.interface = Some("127.0.0.3");
    settle(5);
    // (The code above was not accepted, so the same step's code is still fresh.)
    let r = other.login(&gw, "gus", "pw", &code_now(&env, &secret), "");
    assert_eq!(r.status, 303, "{}", r.body);
}

#[test]
fn fail2ban_filter_matches_real_log_lines_and_cannot_be_tricked_by_user_names() {
    require_tool("fail2ban-regex");
    let env = Env::new("");
    env.add_user("ivy", "pw", &[]);
    env.loopback_portal(free_port());
    env.set("regulation", "max_retries", "0");
    let gw = env.serve();
    let tricky = "x client=10.6.6.6 result=\"failure\" rhost=10.6.6.6";
    for user in ["ivy", tricky, "nobody", "ivy"] {
        let b = Browser::new(&env, "f2b");
        assert_eq!(b.login(&gw, user, "wrong", "000000", "").status, 401);
    }
    let log = env.path().join("gateway.log");
    std::fs::copy(&gw.log, &log).unwrap();
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/fail2ban/filter.d/portcullis.conf"
    );
    let out = std::process::Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(&log)
        .arg(filter)
        .output()
        .unwrap();
    let ips = String::from_utf8_lossy(&out.stdout).into_owned();
    let ips: Vec<&str> = ips.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        ips,
        vec!["127.0.0.1"; 4],
        "every failure matched once, always the real client: {ips:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("password=") && !text.contains("wrong\""),
        "no secrets in the log"
    );
    let jail = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/fail2ban/jail.d/portcullis.conf"
    ))
    .unwrap();
    assert!(jail.contains("filter   = portcullis"));
}

#[test]
fn json_log_lines_are_one_object_each() {
    let env = Env::new("");
    env.add_user("jo", "pw", &[]);
    env.loopback_portal(free_port());
    env.set("server", "log_format", "\"json\"");
    let gw = env.serve();
    let b = Browser::new(&env, "jo");
    assert_eq!(b.login(&gw, "jo\"\n{\"x\":1}", "wrong", "000000", "").status, 401);
    let log = gw.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("portcullis::audit"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(
        line.contains("\"client\":\"127.0.0.1\"") && line.contains("\"result\":\"failure\""),
        "{line}"
    );
    assert_eq!(
        log.lines().filter(|l| l.contains("portcullis::audit")).count(),
        1,
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.trim() == "{\"x\":1}\"" || l.starts_with("{\"x\"")),
        "the user name stays inside one line: {log}"
    );
}

#[test]
fn app_passwords_let_a_basic_client_in_without_a_code_until_revoked() {
    let env = Env::new("");
    env.add_user("lee", "pw", &[]);
    let out = env.ok(&["user", "app-password", "add", "lee", "phone-caldav"], None);
    let app_pw = out.lines().last().unwrap().trim().to_string();
    assert_eq!(app_pw.len(), 24, "{out}");
    assert!(
        env.ok(&["user", "app-password", "list", "lee"], None)
            .contains("phone-caldav")
    );
    let dup = env.run(&["user", "app-password", "add", "lee", "phone-caldav"], None);
    assert_eq!(dup.status.code(), Some(2));
    env.loopback_portal(free_port());
    env.set("otp", "linger", "0");
    let gw = env.serve();
    let r = basic(&gw, "lee", &app_pw, "127.0.0.1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("remote-user"), Some("lee"));
    assert!(gw.log_text().contains("method=\"basic-app-password\""));
    // It is not a portal password.
    let b = Browser::new(&env, "lee");
    assert_eq!(b.login(&gw, "lee", &app_pw, "000000", "").status, 401);
    env.ok(&["user", "app-password", "remove", "lee", "phone-caldav"], None);
    assert_eq!(basic(&gw, "lee", &app_pw, "127.0.0.1").status, 401, "revoked");
}

#[test]
fn a_trusted_network_skips_the_second_factor_like_pam_access() {
    let env = Env::new("");
    env.add_user("max", "pw", &[]);
    env.loopback_portal(free_port());
    std::fs::write(
        env.config(),
        std::fs::read_to_string(env.config()).unwrap()
            + "\n[[access.rules]]\nnetworks = \"127.0.0.0/30\"\npolicy = \"one_factor\"\n",
    )
    .unwrap();
    let gw = env.serve();
    let rd = gw.url("/");
    let b = Browser::new(&env, "lan");
    let page = b.get(&gw.url("/login"), &[]);
    let r = b.post(
        &gw.url("/login"),
        &[
            ("csrf", &page.csrf()),
            ("rd", &rd),
            ("username", "max"),
            ("password", "pw"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(rd.as_str()),
        "no code page from the trusted network"
    );
    let check = b.get(
        &gw.url("/api/authz/auth-request"),
        &["-H", "X-Original-URL: http://127.0.0.1/x"],
    );
    assert_eq!(check.status, 200);
    // From outside the network (as the trusted proxy reports it) the same one-factor
    // session is not enough.
    let r = b.get(
        &gw.url("/api/authz/auth-request"),
        &[
            "-H",
            "X-Original-URL: http://127.0.0.1/x",
            "-H",
            "X-Forwarded-For: 192.0.2.44",
        ],
    );
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn user_lock_reaches_live_sessions_and_lingering_basic_clients_within_the_refresh_interval() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("fay", "pw", &[]));
    env.loopback_portal(free_port());
    env.set("session", "refresh", "2");
    env.set("otp", "linger", "120");
    let gw = env.serve();
    settle(12);
    // A Basic client (password+code, resent like WebDAV clients do) and a browser session.
    let header = format!("pw{}", code_now(&env, &secret));
    assert_eq!(basic(&gw, "fay", &header, "127.0.0.1").status, 200);
    let next_step = env
        .ok(
            &["otp", "code", "--secret", &secret, "--time", &(now() + 30).to_string()],
            None,
        )
        .trim()
        .to_string();
    let b = Browser::new(&env, "fay");
    assert_eq!(b.login(&gw, "fay", "pw", &next_step, "").status, 303);
    let session = b.cookie("portcullis_session").unwrap();
    let cookie_check = || auth_request(&gw, &session).status;
    assert_eq!(cookie_check(), 200);

    // Past the refresh interval both are checked again in full, and a user in good
    // standing notices nothing: the resent header is still within its linger time.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(basic(&gw, "fay", &header, "127.0.0.1").status, 200);
    assert_eq!(cookie_check(), 200);

    // Locked from the command line (another process): both are refused within the interval,
    // long before the session or the linger time would have run out.
    env.ok(&["user", "lock", "fay"], None);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(basic(&gw, "fay", &header, "127.0.0.1").status, 401);
    assert_eq!(cookie_check(), 401);
    // Unlocking does not bring the ended session back.
    env.ok(&["user", "unlock", "fay"], None);
    assert_eq!(cookie_check(), 401);
    assert!(!gw.log_text().contains(&header));
}

/// Issue 13.7: a new password (`user passwd`, from another process) ends the sessions made
/// with the old one within the refresh interval, and a session stored by the gateway does
/// not come back after a restart either. The new password's login works.
#[test]
fn a_password_change_ends_existing_sessions() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("gus", "old pw", &[]));
    env.loopback_portal(free_port());
    env.set("session", "refresh", "2");
    env.set("session", "store", "\"sqlite\"");
    let gw = env.serve();
    settle(12);
    let b = Browser::new(&env, "gus");
    assert_eq!(b.login(&gw, "gus", "old pw", &code_now(&env, &secret), "").status, 303);
    let session = b.cookie("portcullis_session").unwrap();
    let check = |gw: &Server| auth_request(gw, &session).status;
    assert_eq!(check(&gw), 200);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(check(&gw), 200, "a refresh alone ends nothing");
    env.ok(&["user", "passwd", "gus", "--password-stdin"], Some("new pw\n"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(check(&gw), 401, "the old password's session ended");
    // The portal's own pages agree: the login page is shown, not skipped.
    let page = b.get(&gw.url("/login"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    drop(gw);
    let gw = env.serve();
    assert_eq!(check(&gw), 401, "not back after a restart");
    let b2 = Browser::new(&env, "gus2");
    let next = env
        .ok(
            &["otp", "code", "--secret", &secret, "--time", &(now() + 30).to_string()],
            None,
        )
        .trim()
        .to_string();
    assert_eq!(b2.login(&gw, "gus", "new pw", &next, "").status, 303);
}

/// Issue 13.2: two gateways on one SQLite store (two machines' worth of `serve`, one
/// truth): a login made on one is honoured by the other (the session is read through from
/// the store), and a logout on one ends it on the other within the refresh interval.
#[test]
fn two_gateways_on_one_store_share_logins_and_logouts() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("hal", "pw-hal", &[]));
    env.set("session", "refresh", "2");
    env.set("session", "store", "\"sqlite\"");
    let (first_port, second_port) = (free_port(), free_port());
    env.loopback_portal(second_port);
    let second = env.serve();
    env.loopback_portal(first_port);
    let first = env.serve();
    settle(12);
    let b = Browser::new(&env, "hal");
    assert_eq!(
        b.login(&first, "hal", "pw-hal", &code_now(&env, &secret), "").status,
        303
    );
    let session = b.cookie("portcullis_session").unwrap();
    let check = auth_request;
    let there = check(&second, &session);
    assert_eq!(there.status, 200, "a login on the first gateway holds on the second");
    assert_eq!(there.header("Remote-User"), Some("hal"), "{:?}", there.headers);
    assert_eq!(check(&second, "not-a-session").status, 401);
    assert_eq!(b.logout_at(&first.url("")).status, 200, "signed out");
    assert_eq!(check(&first, &session).status, 401, "logged out where it was made");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        check(&second, &session).status,
        401,
        "and, after the refresh interval, on the other"
    );
}

/// nginx's `auth_request` subrequest for `http://127.0.0.1/x` with the session cookie `session`.
fn auth_request(gw: &Server, session: &str) -> Reply {
    curl(&[
        "-H",
        &format!("Cookie: portcullis_session={session}"),
        "-H",
        "X-Original-URL: http://127.0.0.1/x",
        &gw.url("/api/authz/auth-request"),
    ])
}

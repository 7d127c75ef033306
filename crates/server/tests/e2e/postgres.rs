//! Gateways on one PostgreSQL database (issue 15): every node and the CLI see the same
//! users, a code accepted on one node is spent on all, a lock from the CLI holds on all.

use crate::harness::*;
use crate::pg::Postgres;

#[test]
fn two_gateways_on_one_postgres_share_users_spent_codes_and_locks() {
    let pg = Postgres::start_new();
    let url = pg.database("gateways");
    let (a, b) = (Env::new(""), Env::new(""));
    for env in [&a, &b] {
        env.on_postgres(&url);
        env.loopback_portal(free_port());
    }
    let secret = secret_of(&a.add_user("alice", "pw", &[]));
    let check = b.ok(&["config", "check"], None);
    assert!(check.contains(&format!("postgres store at {url}, 1 user")), "{check}");
    let (ga, gb) = (a.serve(), b.serve());
    settle(5);
    let code = code_now(&a, &secret);
    let r = Browser::new(&a, "on-a").login(&ga, "alice", "pw", &code, &ga.url("/"));
    assert_eq!(r.status, 303, "node A: {}", r.body);
    // The same code on node B: spent.
    let r = Browser::new(&b, "on-b").login(&gb, "alice", "pw", &code, &gb.url("/"));
    assert_ne!(r.status, 303, "node B accepted a code node A had accepted");
    // A lock from the CLI holds on both nodes.
    a.ok(&["user", "lock", "alice"], None);
    let next = code_next_step(&a, &secret);
    for (env, gw) in [(&a, &ga), (&b, &gb)] {
        let r = Browser::new(env, "locked").login(gw, "alice", "pw", &next, &gw.url("/"));
        assert_ne!(r.status, 303, "a locked user signed in on {}", gw.url(""));
    }
    b.ok(&["user", "unlock", "alice"], None);
    assert!(b.ok(&["user", "list"], None).contains("alice"));
}

#[test]
fn a_database_outage_refuses_logins_with_503_and_service_returns_by_itself() {
    let mut pg = Postgres::start_new();
    let env = Env::new("");
    env.on_postgres(&pg.database("outage"));
    env.set("store", "timeout", "2");
    env.loopback_portal(free_port());
    let secret = secret_of(&env.add_user("bob", "pw", &[]));
    let gw = env.serve();
    assert_eq!(curl(&[&gw.url("/api/health")]).status, 200);
    pg.stop();
    let health = curl(&[&gw.url("/api/health")]);
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "{\"status\":\"unavailable\"}")
    );
    settle(5);
    let r = Browser::new(&env, "down").login(&gw, "bob", "pw", &code_now(&env, &secret), &gw.url("/"));
    assert_eq!(r.status, 503, "{}", r.body);
    let auth = curl(&[
        "-H",
        &format!("X-Original-URL: {}", gw.url("/app")),
        "-u",
        "bob:pw123456",
        &gw.url("/api/authz/auth-request"),
    ]);
    assert_eq!(auth.status, 503, "a Basic check with the database down: {}", auth.body);
    assert!(
        gw.log_text().contains("outage") || gw.log_text().contains("database"),
        "{}",
        gw.log_text()
    );
    pg.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        settle(3);
        let r = Browser::new(&env, "back").login(&gw, "bob", "pw", &code_now(&env, &secret), &gw.url("/"));
        if r.status == 303 {
            assert_eq!(curl(&[&gw.url("/api/health")]).status, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no service 10 s after the database came back: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Two gateways' configurations on the database at `url` with their state in `redis`,
/// each with its own loopback portal.
pub fn two_nodes(url: &str, redis: &crate::redis_server::Redis) -> (Env, Env) {
    let (a, b) = (Env::new(""), Env::new(""));
    for env in [&a, &b] {
        env.on_postgres(url);
        env.on_redis(&redis.url());
        env.loopback_portal(free_port());
        env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    }
    (a, b)
}

/// Waits up to `limit` for `ok`; how long it took.
pub fn within(limit: std::time::Duration, ok: impl Fn() -> bool) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if ok() {
            return Some(started.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[test]
fn two_gateways_on_postgres_and_redis_share_sessions_logouts_locks_and_bans() {
    let pg = Postgres::start_new();
    let redis = crate::redis_server::Redis::start_new();
    // At the default refresh (60 s): revocations must come by Redis, not by re-reading.
    let (a, b) = two_nodes(&pg.database("shared"), &redis);
    let secret = secret_of(&a.add_user("ann", "pw", &[]));
    let (ga, gb) = (a.serve(), b.serve());
    let page = "http://127.0.0.1/app";
    let ask = |gw: &Server, browser: &Browser| {
        browser.get(
            &gw.url("/api/authz/auth-request"),
            &["-H", &format!("X-Original-URL: {page}")],
        )
    };
    // Signed in through A, the session works on B at once.
    settle(5);
    let browser = Browser::new(&a, "ann");
    let r = browser.login(&ga, "ann", "pw", &code_now(&a, &secret), page);
    assert_eq!(r.status, 303, "{}", r.body);
    let on_b = ask(&gb, &browser);
    assert_eq!(
        (on_b.status, on_b.header("remote-user")),
        (200, Some("ann")),
        "a session made on A, used on B"
    );
    // Signed out on A: B refuses within a second (told through Redis).
    assert_eq!(browser.logout_at(&ga.url("")).status, 200);
    let took = within(std::time::Duration::from_secs(1), || ask(&gb, &browser).status == 401);
    assert!(took.is_some(), "B still lets a signed-out session in after 1 s");
    eprintln!("logout on A refused on B after {took:?}");
    // Locked by the CLI: both nodes refuse within about a second.
    let browser = Browser::new(&a, "ann-again");
    settle(5);
    let r = browser.login(&ga, "ann", "pw", &code_next_step(&a, &secret), page);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(ask(&gb, &browser).status, 200);
    b.ok(&["user", "lock", "ann"], None);
    for gw in [&ga, &gb] {
        let took = within(std::time::Duration::from_secs(1), || ask(gw, &browser).status == 401);
        assert!(took.is_some(), "{} still lets a locked user in after 1 s", gw.url(""));
        eprintln!("lock from the CLI refused on {} after {took:?}", gw.url(""));
    }
    a.ok(&["user", "unlock", "ann"], None);
    // Wrong codes on A ban the address on B too (shared regulation; the account lockout,
    // which would refuse as well, is off here so that only the ban can).
    for env in [&a, &b] {
        env.set("lockout", "max_failures", "0");
    }
    drop((ga, gb));
    let (ga, gb) = (a.serve(), b.serve());
    let basic = |gw: &Server, code: &str| {
        curl(&[
            "-u",
            &format!("ann:pw{code}"),
            "-H",
            &format!("X-Original-URL: {page}"),
            &gw.url("/api/authz/auth-request"),
        ])
    };
    for _ in 0..5 {
        assert_eq!(basic(&ga, "000000").status, 401);
    }
    settle(3);
    let good = basic(&gb, &code_now(&b, &secret));
    assert_eq!(good.status, 401, "B let in an address A had banned");
    // An enrollment link made by the CLI opens on either node.
    let invite = a.ok(&["user", "invite", "ann"], None);
    let token = invite
        .split_whitespace()
        .find_map(|w| w.split("/enroll/").nth(1))
        .unwrap_or_else(|| panic!("no link in {invite}"))
        .to_string();
    let page_b = curl(&[&gb.url(&format!("/enroll/{token}"))]);
    assert_eq!(page_b.status, 200, "{}", page_b.body);
    assert!(page_b.body.contains("Show my key"), "{}", page_b.body);
    assert!(
        gb.log_text().contains("reason=\"banned\""),
        "refused as banned: {}",
        gb.log_text()
    );
}

#[test]
fn a_redis_outage_is_503_for_sessions_and_logins_never_401_or_200_and_heals() {
    let pg = Postgres::start_new();
    let mut redis = crate::redis_server::Redis::start_new();
    let env = Env::new("");
    env.on_postgres(&pg.database("redis_outage"));
    env.on_redis(&redis.url());
    env.set("state", "timeout", "2");
    env.set("session", "refresh", "1");
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let secret = secret_of(&env.add_user("cy", "pw", &[]));
    let gw = env.serve();
    let page = "http://127.0.0.1/app";
    settle(5);
    let browser = Browser::new(&env, "cy");
    assert_eq!(
        browser.login(&gw, "cy", "pw", &code_now(&env, &secret), page).status,
        303
    );
    let ask = || {
        browser.get(
            &gw.url("/api/authz/auth-request"),
            &["-H", &format!("X-Original-URL: {page}")],
        )
    };
    assert_eq!(ask().status, 200);
    redis.kill();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the refresh interval
    for _ in 0..3 {
        assert_eq!(ask().status, 503, "a session check with Redis down");
    }
    assert_eq!(curl(&[&gw.url("/api/health")]).status, 503);
    let home = browser.get(&gw.url("/"), &[]);
    assert_eq!(
        home.status, 503,
        "the portal says try again, not 'sign in': {}",
        home.body
    );
    let r = Browser::new(&env, "new").login(&gw, "cy", "pw", &code_next_step(&env, &secret), page);
    assert_eq!(r.status, 503, "a login with Redis down: {}", r.body);
    redis.start();
    // Redis came back empty (nothing saved): the session is gone, and that is a 401 now.
    let healed = within(std::time::Duration::from_secs(8), || ask().status == 401);
    assert!(healed.is_some(), "no service after Redis came back");
    assert_eq!(curl(&[&gw.url("/api/health")]).status, 200);
}

#[test]
fn store_migrate_copies_sqlite_and_users_file_users_once_and_oathtool_codes_work_there() {
    require_tool("oathtool");
    let pg = Postgres::start_new();
    let url = pg.database("migrated");
    // From the embedded store: a TOTP user with a password, an HOTP user.
    let from = Env::new("");
    let totp = secret_of(&from.add_user("tess", "pw", &[]));
    let hotp = secret_of(&from.add_user("hank", "pw", &["--hotp"]));
    let migrate = |env: &Env| env.run(&["store", "migrate", "--to", &url, "--no-tls"], None);
    let out = migrate(&from);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 users to"), "{out:?}");
    let again = migrate(&from);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 copied, 2 already there"),
        "{again:?}"
    );
    // From a live mod_authn_otp users file.
    let file = Env::new("");
    std::fs::write(
        file.path().join("otp-users.txt"),
        "HOTP/E dora 1234 3132333435363738393031323334353637383930\n",
    )
    .unwrap();
    file.set("store", "backend", "\"mod_authn_otp\"");
    file.set("store", "path", "\"otp-users.txt\"");
    file.set("session", "store", "\"memory\"");
    assert!(migrate(&file).status.success());
    // On PostgreSQL, codes computed by oathtool verify.
    let on_pg = Env::new("");
    on_pg.on_postgres(&url);
    let oathtool = |args: &[&str]| {
        let out = std::process::Command::new("oathtool").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    settle(3);
    assert_eq!(
        on_pg.verify("tess", Some("pw"), &oathtool(&["--totp", "-b", &totp])).0,
        0
    );
    assert_eq!(
        on_pg
            .verify("hank", Some("pw"), &oathtool(&["--hotp", "-b", &hotp, "-c", "0"]))
            .0,
        0
    );
    assert_eq!(
        on_pg
            .verify(
                "dora",
                Some("1234"),
                &oathtool(&["--hotp", "3132333435363738393031323334353637383930", "-c", "0"])
            )
            .0,
        0
    );
    // Used there since the copy: a new migrate leaves it and says so.
    let conflict = migrate(&from);
    assert_eq!(conflict.status.code(), Some(2));
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains("2 users differ") && err.contains("tess") && err.contains("hank"),
        "{err}"
    );
    assert!(err.contains("newer state is never overwritten"), "{err}");
    // store check on both.
    let check = on_pg.ok(&["store", "check"], None);
    assert!(
        check.contains(&format!("directory: postgres at {url}: answers in")) && check.contains("3 users"),
        "{check}"
    );
    assert!(
        from.ok(&["store", "check"], None)
            .contains("state: in the sqlite store")
    );
}

#[test]
fn behind_one_nginx_upstream_over_two_gateways_a_session_survives_a_node_and_a_logout_reaches_all() {
    let pg = Postgres::start_new();
    let redis = crate::redis_server::Redis::start_new();
    let (a, b) = two_nodes(&pg.database("behind_nginx"), &redis);
    let secret = secret_of(&a.add_user("ivy", "pw", &["--group", "staff"]));
    let (ga, gb) = (a.serve(), b.serve());
    let d = a.path().join("nginx").display().to_string();
    let nginx = crate::nginx::start_nginx_over(
        &a,
        &[ga.port, gb.port],
        &format!(
            "    server {{\n        listen 127.0.0.1:{{front}};\n        include {d}/portcullis-authrequest.conf;\n        location /app/ {{\n            include {d}/portcullis-protect.conf;\n            proxy_pass http://127.0.0.1:{{back}};\n        }}\n    }}\n"
        ),
    );
    let app = nginx.url("/app/page");
    settle(5);
    let browser = Browser::new(&a, "ivy");
    let r = browser.login(&ga, "ivy", "pw", &code_now(&a, &secret), &app);
    assert_eq!(r.status, 303, "{}", r.body);
    // Round robin over both nodes: every request is let in with the identity.
    for _ in 0..6 {
        let r = browser.get(&app, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("user=[ivy]") && r.body.contains("groups=[staff]"),
            "{}",
            r.body
        );
    }
    // The node that made the session goes away: the other one carries on.
    drop(ga);
    for _ in 0..4 {
        assert_eq!(browser.get(&app, &[]).status, 200, "the session died with its node");
    }
    // Signed out through the remaining node: refused behind nginx within a second.
    assert_eq!(browser.logout_at(&gb.url("")).status, 200);
    let took = within(std::time::Duration::from_secs(1), || {
        browser.get(&app, &[]).status == 302
    });
    assert!(took.is_some(), "still let in after signing out");
}

#[test]
fn a_gateway_started_before_its_engines_waits_for_them_and_a_refusal_is_an_error_at_once() {
    let mut pg = Postgres::start_new();
    let mut redis = crate::redis_server::Redis::start_new();
    let env = Env::new("");
    let url = pg.database("late");
    env.on_postgres(&url);
    env.on_redis(&redis.url());
    env.loopback_portal(free_port());
    env.set("store", "timeout", "1");
    env.set("state", "timeout", "1");
    let secret = secret_of(&env.add_user("lou", "pw", &[]));
    pg.stop();
    redis.kill();
    let mut gw = env.start_serving();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        gw.exited_within(std::time::Duration::ZERO).is_none(),
        "it gave up: {}",
        gw.log_text()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err(),
        "nothing is served before the store answers"
    );
    assert!(gw.log_text().contains("waiting for it"), "{}", gw.log_text());
    pg.start();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err(),
        "served with PostgreSQL up but Redis down"
    );
    redis.start();
    let started = std::time::Instant::now();
    gw.wait_listening(std::time::Duration::from_secs(8));
    eprintln!("serving {:?} after Redis came up", started.elapsed());
    settle(5);
    let r = Browser::new(&env, "lou").login(&gw, "lou", "pw", &code_now(&env, &secret), &gw.url("/"));
    assert_eq!(r.status, 303, "{}", r.body);
    drop(gw);
    // A database that refuses (here: it does not exist) is no reason to wait.
    env.set(
        "store",
        "url",
        &format!("{:?}", url.replace("/late", "/no_such_database")),
    );
    let mut gw = env.start_serving();
    let status = gw.exited_within(std::time::Duration::from_secs(10));
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}: {}",
        gw.log_text()
    );
    assert!(gw.log_text().contains("no_such_database"), "{}", gw.log_text());
}

#[test]
fn a_lock_or_a_revoked_app_password_stops_cached_basic_credentials_on_every_node_at_once() {
    let pg = Postgres::start_new();
    let redis = crate::redis_server::Redis::start_new();
    // At the default refresh (60 s): what stops the cached credentials is the announcement.
    let (a, b) = two_nodes(&pg.database("basic_nodes"), &redis);
    let secret = secret_of(&a.add_user("bea", "pw", &[]));
    let (ga, gb) = (a.serve(), b.serve());
    let basic = |gw: &Server, password: &str| {
        curl(&[
            "-u",
            &format!("bea:{password}"),
            "-H",
            "X-Original-URL: http://127.0.0.1/app",
            &gw.url("/api/authz/auth-request"),
        ])
        .status
    };
    settle(5);
    let code = code_now(&a, &secret);
    let credentials = format!("pw{code}");
    assert_eq!(basic(&gb, &credentials), 200);
    assert_eq!(basic(&gb, &credentials), 200, "resent within its linger time");
    a.ok(&["user", "lock", "bea"], None);
    let took = within(std::time::Duration::from_secs(1), || basic(&gb, &credentials) == 401);
    assert!(
        took.is_some(),
        "node B still takes a locked user's cached Basic credentials after 1 s"
    );
    eprintln!("a lock from the CLI stopped cached Basic credentials on B after {took:?}");
    a.ok(&["user", "unlock", "bea"], None);
    let added = a.ok(&["user", "app-password", "add", "bea", "webdav"], None);
    let app = added
        .lines()
        .skip_while(|l| !l.contains("shown once"))
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("no app password in {added}"))
        .to_string();
    assert_eq!(basic(&ga, &app), 200);
    assert_eq!(basic(&ga, &app), 200);
    b.ok(&["user", "app-password", "remove", "bea", "webdav"], None);
    let took = within(std::time::Duration::from_secs(1), || basic(&ga, &app) == 401);
    assert!(took.is_some(), "node A still takes a revoked app password after 1 s");
    eprintln!("a revoked app password was refused on A after {took:?}");
}

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

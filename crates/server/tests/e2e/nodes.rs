//! Two gateways on one PostgreSQL database and one Redis (issue 15), raced: one code sent
//! to both nodes at the same moment is accepted by exactly one of them.

use crate::harness::*;
use crate::pg::Postgres;
use crate::postgres::two_nodes;
use crate::redis_server::Redis;
use portcullis_otp::{Algorithm, Secret, hotp, totp};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The page the forward-auth requests ask about (`two_nodes` protects 127.0.0.1).
const PAGE: &str = "http://127.0.0.1/app";
/// The session cookie (the default name).
const SESSION: &str = "portcullis_session";

/// A connection to a gateway, opened before its request is written, so that two racing
/// requests are released with their connections already accepted. Every step is bounded.
struct Conn(TcpStream);

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let addr = (std::net::Ipv4Addr::LOCALHOST, port).into();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn(s))
    }

    /// Writes one request (it says `Connection: close`) and reads the whole answer.
    fn send(mut self, request: &[u8]) -> std::io::Result<Reply> {
        self.0.write_all(request)?;
        let mut buf = Vec::new();
        self.0.read_to_end(&mut buf)?;
        let reply = parse_reply(&String::from_utf8_lossy(&buf));
        if reply.status == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no HTTP answer: {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        Ok(reply)
    }
}

/// An HTTP/1.1 request for the gateway on `port` with `headers` (whole lines) and, for a
/// POST, a form body.
fn request(port: u16, method: &str, path: &str, headers: &[String], form: Option<&str>) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    match form {
        Some(body) => r.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => r.push_str("\r\n"),
    }
    r.into_bytes()
}

/// nginx's `auth_request` to the gateway on `port` about `PAGE`, with `headers`.
fn auth_request(port: u16, headers: &[String]) -> Vec<u8> {
    let mut all = vec![format!("X-Original-URL: {PAGE}")];
    all.extend_from_slice(headers);
    request(port, "GET", "/api/authz/auth-request", &all, None)
}

/// One exchange on a new connection.
fn exchange(port: u16, request: &[u8]) -> std::io::Result<Reply> {
    Conn::open(port)?.send(request)
}

/// The headers of a Basic client at `ip` (told by the trusted proxy on loopback, as nginx
/// does with `X-Real-IP`) sending `user` and `secret` (password immediately followed by the
/// code).
fn basic_from(ip: &str, user: &str, secret: &str) -> Vec<String> {
    let token = data_encoding::BASE64.encode(format!("{user}:{secret}").as_bytes());
    vec![format!("X-Real-IP: {ip}"), format!("Authorization: Basic {token}")]
}

/// `Cookie: name=value; …` from `name=value` pairs.
fn cookie_header(cookies: &[String]) -> String {
    format!("Cookie: {}", cookies.join("; "))
}

/// The `name=value` of each cookie a reply sets.
fn set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next().map(str::to_string))
        .collect()
}

/// Sends `a` to one node and `b` to the other at the same moment: each thread opens its
/// connection, then both are released by one barrier to write their requests. The answers,
/// in that order.
fn at_once(a: (u16, &[u8]), b: (u16, &[u8])) -> [std::io::Result<Reply>; 2] {
    let gun = Barrier::new(2);
    let fire = |(port, req): (u16, &[u8])| {
        let conn = Conn::open(port);
        gun.wait();
        conn?.send(req)
    };
    std::thread::scope(|s| {
        let (ta, tb) = (s.spawn(|| fire(a)), s.spawn(|| fire(b)));
        [ta.join().unwrap(), tb.join().unwrap()]
    })
}

/// The 20-byte key (hex) of test user number `i`: a different key for every user.
fn key_hex(i: usize) -> String {
    format!(
        "{:08x}{:032x}",
        i + 1,
        0x5eed_0000_0000_0000_0000_0000_0000_0000_u128 + i as u128
    )
}

fn key(i: usize) -> Secret {
    Secret::from_hex(&key_hex(i)).unwrap()
}

/// Imports mod_authn_otp users-file `lines` (`TYPE USER PIN KEY`) into `env`'s store in
/// one `portcullis import`. Their first factor is a users-file PIN, compared as it is, so
/// a trial costs the gateways and the stores, not an argon2 hash per request (the race is
/// over the code; a slow password check in front of it would only spread the requests).
fn import_users_file(env: &Env, name: &str, lines: &str) {
    let path = env.path().join(name);
    std::fs::write(&path, lines).unwrap();
    let out = env.ok(&["import", "--format", "mod_authn_otp", path.to_str().unwrap()], None);
    assert!(out.contains("imported, 0 skipped"), "{out}");
}

/// The trials of each kind of race: 100 × PORTCULLIS_RACE_TRIALS (4 unless set, as the
/// other races), so 400 TOTP, 400 HOTP and 400 scratch-code trials by default.
fn race_trials() -> usize {
    let scale: usize = std::env::var("PORTCULLIS_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(4);
    100 * scale
}

/// How the trials of one kind went.
struct Tally {
    what: &'static str,
    wins: [usize; 2],
    started: Instant,
}

impl Tally {
    fn new(what: &'static str) -> Tally {
        Tally {
            what,
            wins: [0, 0],
            started: Instant::now(),
        }
    }

    /// Asserts that exactly one of the two answers is `win` and the other `lose` (a
    /// refusal, never a second acceptance, a 5xx or a dropped connection); counts the
    /// winner; returns which answer won (0 or 1) and that answer.
    fn judge(&mut self, trial: usize, answers: [std::io::Result<Reply>; 2], win: u16, lose: u16) -> (usize, Reply) {
        let statuses: Vec<String> = answers
            .iter()
            .map(|r| match r {
                Ok(r) => r.status.to_string(),
                Err(e) => format!("error {e}"),
            })
            .collect();
        let what = self.what;
        let [a, b] = answers;
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            _ => panic!("{what}, trial {trial}: a request failed: {statuses:?}"),
        };
        let (winner, reply, other) = match (a.status, b.status) {
            (x, y) if (x, y) == (win, lose) => (0, a, b),
            (x, y) if (x, y) == (lose, win) => (1, b, a),
            _ => panic!(
                "{what}, trial {trial}: answers {statuses:?}, want one {win} and one {lose}\nfirst: {:?} {}\nsecond: {:?} {}",
                a.headers, a.body, b.headers, b.body
            ),
        };
        assert!(
            other.header("remote-user").is_none(),
            "{what}, trial {trial}: a refusal named a user"
        );
        self.wins[winner] += 1;
        (winner, reply)
    }

    fn report(&self) {
        let n = self.wins[0] + self.wins[1];
        let took = self.started.elapsed();
        eprintln!(
            "{}: {n} trials, exactly one acceptance in each (node A won {}, node B won {}), {:.1?} ({:.1} ms a trial)",
            self.what,
            self.wins[0],
            self.wins[1],
            took,
            took.as_secs_f64() * 1000.0 / n.max(1) as f64
        );
    }
}

/// Issue 15: the same code sent to both nodes at the same moment is accepted once — a TOTP
/// code and an HOTP counter over HTTP Basic on the forward-auth endpoint, a scratch code at
/// the portal's code step (Basic splits password+code at the token's code length, so an
/// 8-digit scratch code is a Basic credential only beside an 8-digit token). Each trial
/// asserts one acceptance and one 401.
///
/// The two requests come from two clients (X-Real-IP 192.0.2.1 to node A, 192.0.2.2 to
/// node B): Basic's linger (`[otp] linger`, kept on the token in the shared directory) lets
/// the client that sent an accepted code resend it, to any node, so from one address two
/// acceptances would be the designed behaviour; from another address never.
#[test]
fn one_code_sent_to_both_nodes_at_once_is_accepted_exactly_once() {
    let pg = Postgres::start_new();
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&pg.database("races"), &redis);
    for env in [&a, &b] {
        // Every trial's loser is a failure: neither a lockout nor a ban may end the run.
        env.set("lockout", "max_failures", "0");
        env.set("regulation", "max_retries", "0");
    }
    let n = race_trials();
    let setup = Instant::now();
    // TOTP: a code is good once per step, so each trial has a user (and secret) of its own.
    let mut lines: String = (0..n).map(|i| format!("HOTP/T30 t{i} pw {}\n", key_hex(i))).collect();
    lines.push_str(&format!("HOTP/E hotp pw {}\n", key_hex(n)));
    import_users_file(&a, "otp-users.txt", &lines);
    // Scratch codes: users with 10 each (as `user scratch` makes them; every stored hash is
    // checked on every attempt), imported from google-authenticator files, which carry
    // them; no password.
    const PER_USER: usize = 10;
    let scratch = |j: usize| format!("{}", 10_000_000 + j * 7919);
    for u in 0..n.div_ceil(PER_USER) {
        let file = a.path().join(format!("ga-{u}"));
        let secret = data_encoding::BASE32_NOPAD.encode(key(n + 1 + u).as_bytes());
        let codes: String = (u * PER_USER..(u + 1) * PER_USER).map(|j| scratch(j) + "\n").collect();
        std::fs::write(&file, format!("{secret}\n\" TOTP_AUTH\n{codes}")).unwrap();
        a.ok(
            &[
                "import",
                "--format",
                "google-authenticator",
                "--user",
                &format!("s{u}"),
                file.to_str().unwrap(),
            ],
            None,
        );
    }
    let (ga, gb) = (a.serve(), b.serve());
    let ports = (ga.port, gb.port);
    eprintln!(
        "{} users imported and two gateways started in {:.1?}",
        n + 1 + n.div_ceil(PER_USER),
        setup.elapsed()
    );
    let (ip_a, ip_b) = ("192.0.2.1", "192.0.2.2");

    let mut tally = Tally::new("TOTP over Basic");
    for i in 0..n {
        let code = totp(&key(i), now(), 30, 6, Algorithm::Sha1);
        let user = format!("t{i}");
        let secret = format!("pw{}", code.as_str());
        let ra = auth_request(ports.0, &basic_from(ip_a, &user, &secret));
        let rb = auth_request(ports.1, &basic_from(ip_b, &user, &secret));
        let (_, won) = tally.judge(i, at_once((ports.0, &ra), (ports.1, &rb)), 200, 401);
        assert_eq!(won.header("remote-user"), Some(user.as_str()));
    }
    tally.report();

    let mut tally = Tally::new("HOTP over Basic");
    let mut last = (String::new(), 0);
    for c in 0..n {
        let secret = format!("pw{}", hotp(&key(n), c as u64, 6, Algorithm::Sha1).as_str());
        let ra = auth_request(ports.0, &basic_from(ip_a, "hotp", &secret));
        let rb = auth_request(ports.1, &basic_from(ip_b, "hotp", &secret));
        let (winner, won) = tally.judge(c, at_once((ports.0, &ra), (ports.1, &rb)), 200, 401);
        assert_eq!(won.header("remote-user"), Some("hotp"));
        last = (secret, winner);
    }
    tally.report();
    // Why two addresses: the last winner's client resending its code to the node that
    // refused it is let in (linger), the loser's client on the winner's node still is not.
    let (secret, winner) = last;
    let [winner_ip, loser_ip] = if winner == 0 { [ip_a, ip_b] } else { [ip_b, ip_a] };
    let [winner_node, loser_node] = if winner == 0 {
        [ports.0, ports.1]
    } else {
        [ports.1, ports.0]
    };
    let resend = |port: u16, ip: &str| {
        exchange(port, &auth_request(port, &basic_from(ip, "hotp", &secret)))
            .unwrap()
            .status
    };
    assert_eq!(
        resend(loser_node, winner_ip),
        200,
        "the winner's resend on the other node"
    );
    assert_eq!(
        resend(winner_node, loser_ip),
        401,
        "the loser's resend on the winner's node"
    );

    // Scratch codes at the portal: a browser on each node passes the password step (a
    // session of one step each), then both send the same scratch code to the code page.
    let portal = |port: u16| {
        let page = exchange(port, &request(port, "GET", "/login", &[], None)).unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        (set_cookies(&page), page.csrf())
    };
    let (csrf_a, csrf_b) = (portal(ports.0), portal(ports.1));
    let named = |port: u16, (cookies, csrf): &(Vec<String>, String), user: &str| {
        let form = format!("csrf={}&rd=&username={user}&password=", urlencode(csrf));
        let r = exchange(
            port,
            &request(port, "POST", "/login", &[cookie_header(cookies)], Some(&form)),
        )
        .unwrap();
        assert_eq!(r.status, 303, "the password step of {user}: {}", r.body);
        let mut jar = cookies.clone();
        jar.extend(set_cookies(&r).into_iter().filter(|c| c.starts_with(SESSION)));
        jar
    };
    let mut tally = Tally::new("scratch code at the portal");
    for j in 0..n {
        let user = format!("s{}", j / PER_USER);
        let form = |csrf: &str| format!("csrf={}&rd=&code={}", urlencode(csrf), scratch(j));
        let ra = request(
            ports.0,
            "POST",
            "/login/code",
            &[cookie_header(&named(ports.0, &csrf_a, &user))],
            Some(&form(&csrf_a.1)),
        );
        let rb = request(
            ports.1,
            "POST",
            "/login/code",
            &[cookie_header(&named(ports.1, &csrf_b, &user))],
            Some(&form(&csrf_b.1)),
        );
        let (_, won) = tally.judge(j, at_once((ports.0, &ra), (ports.1, &rb)), 303, 401);
        assert!(
            set_cookies(&won).iter().any(|c| c.starts_with(SESSION)),
            "the winner got no two-factor session: {:?}",
            won.headers
        );
    }
    tally.report();
    for (gw, node) in [(&ga, "A"), (&gb, "B")] {
        let log = gw.log_text();
        assert!(
            !log.contains("ERROR") && !log.contains("panicked"),
            "node {node} logged an error:\n{log}"
        );
    }
}

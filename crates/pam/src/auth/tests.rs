//! The module's decisions through a fake PAM handle and a real SQLite store with a fixed clock.

use super::*;
use crate::worker::Lookup;
use crate::worker::StoreChecker;
use portcullis_core::clock::FixedClock;
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::password::hash_password;
use portcullis_core::{Directory, Rejection};
use portcullis_otp::{Algorithm, Secret, totp};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[derive(Default)]
struct FakePam {
    user: Option<String>,
    rhost: Option<String>,
    answers: Vec<String>,
    prompts: Vec<String>,
    authtok: Option<String>,
    logs: Vec<String>,
}

impl PamHandle for FakePam {
    fn user(&mut self) -> Option<String> {
        self.user.clone()
    }
    fn rhost(&self) -> Option<String> {
        self.rhost.clone()
    }
    fn prompt(&mut self, echo: bool, text: &str) -> Option<Zeroizing<String>> {
        assert!(!echo, "codes are asked without echo");
        self.prompts.push(text.to_string());
        if self.answers.is_empty() {
            None
        } else {
            Some(Zeroizing::new(self.answers.remove(0)))
        }
    }
    fn authtok(&self) -> Option<Zeroizing<String>> {
        self.authtok.clone().map(Zeroizing::new)
    }
    fn set_authtok(&mut self, value: &str) -> bool {
        self.authtok = Some(value.to_string());
        true
    }
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("portcullis.toml"),
            "[store]\nbackend = \"sqlite\"\npath = \"portcullis.db\"\n[lockout]\nmax_failures = 3\n",
        )
        .unwrap();
        let store = portcullis_store::SqliteStore::open(&dir.path().join("portcullis.db")).unwrap();
        let mut alice = User::new("alice", FirstFactor::Hash(hash_password("pw").unwrap()));
        alice.tokens.push(Token::new(
            TokenKind::Oath,
            Step::Time(30),
            Secret::from_base32(SECRET).unwrap(),
            Algorithm::Sha1,
            6,
        ));
        let mut carol = User::new("carol", FirstFactor::None);
        carol.tokens = alice.tokens.clone();
        store.create(&alice).unwrap();
        store.create(&carol).unwrap();
        store.create(&User::new("bob", FirstFactor::None)).unwrap();
        World { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = vec![format!("config={}", self.config().display())];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
}

fn code(at: i64) -> String {
    totp(&Secret::from_base32(SECRET).unwrap(), at, 30, 6, Algorithm::Sha1).to_string()
}

fn fixed_clock(options: &Options) -> Box<dyn FnOnce() -> Result<Box<dyn Checker>, String> + Send> {
    let source = options.source.clone();
    let timeout = options.timeout;
    Box::new(move || StoreChecker::open_with_clock(&source, timeout, &|| Box::new(FixedClock(NOW))))
}

fn run(world_args: &[String], pam: &mut FakePam) -> PamStatus {
    authenticate(pam, world_args, fixed_clock)
}

fn pam(user: &str, answers: &[&str]) -> FakePam {
    FakePam {
        user: Some(user.into()),
        rhost: Some("203.0.113.9".into()),
        answers: answers.iter().map(|s| s.to_string()).collect(),
        ..FakePam::default()
    }
}

#[test]
fn right_code_passes_then_the_same_code_is_a_replay() {
    let w = World::new();
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Success);
    assert_eq!(p.prompts, vec!["One-time code: "]);
    assert_eq!(
        p.logs,
        vec!["auth client=203.0.113.9 result=\"success\" reason=\"code\" user=\"alice\""]
    );
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("reason=\"replayed\""), "{:?}", p.logs);
}

#[test]
fn wrong_code_fails_and_counts_towards_the_shared_lockout() {
    let w = World::new();
    for _ in 0..3 {
        let mut p = pam("alice", &["000000"]);
        assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure);
        assert!(
            p.logs[0].contains("result=\"failure\" reason=\"wrong_code\""),
            "{:?}",
            p.logs
        );
    }
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("reason=\"locked\""), "{:?}", p.logs);
}

#[test]
fn tokenless_and_unknown_users_fail_unless_nullok() {
    let w = World::new();
    for user in ["bob", "nobody"] {
        let mut p = pam(user, &["123456"]);
        assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure, "{user}");
        assert_eq!(p.prompts.len(), 1, "a prompt either way, so names cannot be probed");
        let mut p = pam(user, &[]);
        assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Success, "{user}");
        assert!(p.prompts.is_empty());
        assert!(p.logs[0].contains("reason=\"nullok\""));
    }
    // nullok never lets an enrolled user skip the code.
    let mut p = pam("alice", &["000000"]);
    assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Failure);
}

#[test]
fn trusted_network_skips_the_code_only_from_inside() {
    let w = World::new();
    let args = w.args(&["trusted_networks=192.168.1.0/24,10.0.0.0/8"]);
    let mut p = pam("alice", &[]);
    p.rhost = Some("10.9.8.7".into());
    assert_eq!(run(&args, &mut p), PamStatus::Success);
    assert!(p.prompts.is_empty());
    assert!(p.logs[0].contains("client=10.9.8.7 result=\"success\" reason=\"trusted_network\""));
    for outside in [Some("192.168.2.1"), Some("lan.example"), None] {
        let mut p = pam("alice", &["000000"]);
        p.rhost = outside.map(str::to_string);
        assert_eq!(run(&args, &mut p), PamStatus::Failure, "{outside:?}");
    }
}

#[test]
fn use_first_pass_takes_the_earlier_token_and_never_prompts() {
    let w = World::new();
    let mut p = pam("alice", &[]);
    p.authtok = Some(code(NOW));
    assert_eq!(run(&w.args(&["use_first_pass"]), &mut p), PamStatus::Success);
    assert!(p.prompts.is_empty());
    let mut p = pam("alice", &["never asked"]);
    assert_eq!(run(&w.args(&["use_first_pass"]), &mut p), PamStatus::Failure);
    assert!(p.prompts.is_empty());
    // try_first_pass falls back to asking.
    let mut p = pam("alice", &[&code(NOW + 30)]);
    assert_eq!(run(&w.args(&["try_first_pass"]), &mut p), PamStatus::Success);
    assert_eq!(p.prompts.len(), 1);
}

#[test]
fn combined_checks_password_and_code_and_forwards_the_password() {
    let w = World::new();
    let mut p = pam("alice", &[&format!("wrong{}", code(NOW))]);
    assert_eq!(run(&w.args(&["combined"]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("reason=\"wrong_password\""), "{:?}", p.logs);
    assert_eq!(p.prompts, vec!["Password and one-time code: "]);
    let mut p = pam("alice", &[&format!("pw{}", code(NOW))]);
    assert_eq!(run(&w.args(&["combined"]), &mut p), PamStatus::Success, "{:?}", p.logs);
    assert_eq!(p.authtok.as_deref(), Some("pw"));
    let mut p = pam("alice", &["pw1"]);
    assert_eq!(run(&w.args(&["combined"]), &mut p), PamStatus::Failure);
    // From a trusted network combined mode still wants the password, just not the code.
    let args = w.args(&["combined", "trusted_networks=10.0.0.0/8"]);
    let mut p = pam("alice", &["pw"]);
    p.rhost = Some("10.0.0.1".into());
    assert_eq!(run(&args, &mut p), PamStatus::Success, "{:?}", p.logs);
    let mut p = pam("alice", &["nope"]);
    p.rhost = Some("10.0.0.1".into());
    assert_eq!(run(&args, &mut p), PamStatus::Failure);
}

/// Regression (issue 10.2): combined mode from a trusted network accepted an empty answer
/// for a user without a password: a login from the user name alone.
#[test]
fn a_user_without_a_password_never_passes_on_a_trusted_network_without_a_code() {
    let w = World::new();
    let args = w.args(&["combined", "trusted_networks=10.0.0.0/8"]);
    for (user, answer) in [("carol", ""), ("bob", ""), ("carol", "x")] {
        let mut p = pam(user, &[answer]);
        p.rhost = Some("10.0.0.1".into());
        assert_eq!(
            run(&args, &mut p),
            PamStatus::Failure,
            "{user} {answer:?}: {:?}",
            p.logs
        );
    }
    // The code alone is her one factor there.
    let mut p = pam("carol", &[&code(NOW)]);
    p.rhost = Some("10.0.0.1".into());
    assert_eq!(run(&args, &mut p), PamStatus::Success, "{:?}", p.logs);
    assert!(p.logs[0].contains("reason=\"code\""), "{:?}", p.logs);
}

#[test]
fn missing_config_or_store_fails_closed_even_with_nullok() {
    let w = World::new();
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(
        run(&["config=/nonexistent/portcullis.toml".into(), "nullok".into()], &mut p),
        PamStatus::Failure
    );
    assert!(
        p.logs[0].contains("result=\"error\" reason=\"store_error\""),
        "{:?}",
        p.logs
    );
    std::fs::remove_file(w.dir.path().join("portcullis.db")).unwrap();
    let mut p = pam("nobody", &[]);
    assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("does not exist"), "{:?}", p.logs);
    assert!(!w.dir.path().join("portcullis.db").exists(), "no empty store created");
}

#[test]
fn networked_stores_go_through_the_gateway_socket_and_fail_closed_without_it() {
    let w = World::new();
    let config = w.config();
    std::fs::write(
        &config,
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://db.invalid/p\"\nsslmode = \"disable\"\n[session]\nstore = \"memory\"\n",
    )
    .unwrap();
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("set [pam] socket"), "{:?}", p.logs);
    // A socket nobody listens on, then one that answers what is not portcullis's.
    let socket = w.dir.path().join("pam.sock");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[pam]\nsocket = {:?}\n", socket.display().to_string()),
    )
    .unwrap();
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("the gateway does not answer"), "{:?}", p.logs);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let liar = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        conn.read_to_end(&mut Vec::new()).unwrap();
        conn.write_all(b"ok\n").unwrap();
    });
    let mut p = pam("alice", &[&code(NOW)]);
    assert_eq!(run(&w.args(&["nullok"]), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("not portcullis's"), "{:?}", p.logs);
    liar.join().unwrap();
}

#[test]
fn a_store_that_does_not_answer_times_out_and_fails() {
    struct Hang;
    impl Checker for Hang {
        fn lookup(&mut self, _: &str) -> Result<Lookup, String> {
            std::thread::sleep(Duration::from_secs(30));
            Ok(Lookup::NoToken)
        }
        fn check(&mut self, _: &Check) -> Result<Answer, String> {
            Ok(Answer::Accepted)
        }
    }
    let mut p = pam("alice", &["123456"]);
    let started = std::time::Instant::now();
    let v = authenticate(&mut p, &["timeout=1".into(), "nullok".into()], |_| {
        Box::new(|| Ok(Box::new(Hang) as Box<dyn Checker>))
    });
    assert_eq!(v, PamStatus::Failure);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(p.logs[0].contains("reason=\"store_timeout\""), "{:?}", p.logs);
}

#[test]
fn bad_options_and_missing_user_fail_closed() {
    let mut p = pam("alice", &[]);
    assert_eq!(run(&["nulok".into()], &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("bad_option"));
    let w = World::new();
    let mut p = pam("alice", &[]);
    p.user = None;
    assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure);
}

#[test]
fn user_names_cannot_forge_log_fields() {
    let w = World::new();
    let mut p = pam("x\" client=10.6.6.6 result=\"failure", &["1"]);
    assert_eq!(run(&w.args(&[]), &mut p), PamStatus::Failure);
    assert!(
        p.logs[0].starts_with("auth client=203.0.113.9 result=\"failure\""),
        "{:?}",
        p.logs
    );
    assert!(
        p.logs[0].ends_with(r#"user="x\" client=10.6.6.6 result=\"failure""#),
        "{:?}",
        p.logs
    );
}

#[test]
fn pam_oath_users_file_via_usersfile_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.oath");
    let hex = Secret::from_base32(SECRET).unwrap().to_hex();
    std::fs::write(&path, format!("HOTP/T30/6 carol - {}\n", hex.as_str())).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let args = |w: &Path| {
        vec![
            format!("usersfile={}", w.display()),
            "window=1".into(),
            "digits=6".into(),
        ]
    };
    let mut p = pam("carol", &[&code(NOW - 30)]);
    assert_eq!(run(&args(&path), &mut p), PamStatus::Success, "{:?}", p.logs);
    let text = std::fs::read_to_string(&path).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields[..4], ["HOTP/T30/6", "carol", "-", hex.as_str()], "{text}");
    assert!(
        text.contains(&format!("{}\t", hex.as_str())),
        "tab-separated state: {text}"
    );
    assert_eq!(fields[5], code(NOW - 30), "LASTOTP written in pam_oath's place: {text}");
    let mut p = pam("carol", &[&code(NOW - 30)]);
    assert_eq!(run(&args(&path), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains("replayed"), "{:?}", p.logs);
    // window=1 is ±1 step, checked on a user with no step used yet (so a refusal is for
    // the window, not a replay): two steps back and two ahead are outside, one ahead inside.
    let fresh = dir.path().join("fresh.oath");
    std::fs::write(&fresh, format!("HOTP/T30/6 dora - {}\n", hex.as_str())).unwrap();
    std::fs::set_permissions(&fresh, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut p = pam("dora", &[&code(NOW - 60)]);
    assert_eq!(run(&args(&fresh), &mut p), PamStatus::Failure);
    assert!(p.logs[0].contains(Rejection::Expired.label()), "{:?}", p.logs);
    let mut p = pam("dora", &[&code(NOW + 60)]);
    assert_eq!(run(&args(&fresh), &mut p), PamStatus::Failure, "{:?}", p.logs);
    let mut p = pam("dora", &[&code(NOW + 30)]);
    assert_eq!(run(&args(&fresh), &mut p), PamStatus::Success, "{:?}", p.logs);
}

/// Regression (issue 10.4): `usersfile=` ignored the PIN of a users.oath line, so the bare
/// code passed where pam_oath wants PIN then code.
#[test]
fn usersfile_lines_with_a_pin_need_the_pin_before_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.oath");
    let hex = Secret::from_base32(SECRET).unwrap().to_hex();
    std::fs::write(&path, format!("HOTP/T30 pinuser 4711 {}\n", hex.as_str())).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let args = vec![format!("usersfile={}", path.display()), "window=1".into()];
    let mut p = pam("pinuser", &[&code(NOW)]);
    assert_eq!(
        run(&args, &mut p),
        PamStatus::Failure,
        "the bare code passed: {:?}",
        p.logs
    );
    let mut p = pam("pinuser", &[&format!("1234{}", code(NOW))]);
    assert_eq!(
        run(&args, &mut p),
        PamStatus::Failure,
        "a wrong PIN passed: {:?}",
        p.logs
    );
    assert!(p.logs[0].contains("wrong_password"), "{:?}", p.logs);
    let mut p = pam("pinuser", &[&format!("4711{}", code(NOW))]);
    assert_eq!(run(&args, &mut p), PamStatus::Success, "{:?}", p.logs);
    assert_eq!(p.authtok, None, "the PIN is not handed to later modules");
}

/// A push user (a gateway that has `[duo]` says so): the module hands the whole answer over,
/// waits the push's time on top of `timeout=`, and gives later modules the password alone.
#[test]
fn a_push_users_whole_answer_goes_to_the_gateway_and_later_modules_get_the_password() {
    /// What each check carried: the password, the code, the push's extra wait.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, Option<String>, Option<Duration>)>>>;
    struct Pusher(Seen);
    impl Checker for Pusher {
        fn lookup(&mut self, _: &str) -> Result<Lookup, String> {
            Ok(Lookup::Push {
                first_factor: true,
                timeout: 60,
            })
        }
        fn check(&mut self, c: &Check) -> Result<Answer, String> {
            let text = |v: &Option<Zeroizing<String>>| v.as_ref().map(|s| s.to_string());
            self.0.lock().unwrap().push((text(&c.password), text(&c.code), c.push));
            Ok(Answer::Accepted)
        }
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut p = pam("alice", &["hunter2,push"]);
    let v = authenticate(&mut p, &["combined".into()], move |_| {
        Box::new(move || Ok(Box::new(Pusher(s)) as Box<dyn Checker>))
    });
    assert_eq!(v, PamStatus::Success, "{:?}", p.logs);
    assert_eq!(
        p.authtok.as_deref(),
        Some("hunter2"),
        "later modules see the password alone"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.as_slice(),
        [(Some("hunter2,push".into()), None, Some(Duration::from_secs(75)))],
        "the whole answer, with the push's time to wait"
    );
    assert!(p.logs[0].contains("reason=\"push\""), "{:?}", p.logs);
}

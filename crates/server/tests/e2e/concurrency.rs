//! Several processes verifying one code against one store at the same moment: exactly one
//! of them may accept it.

use crate::harness::*;

#[test]
fn one_code_is_accepted_once_across_processes_sqlite() {
    one_code_once_across_processes(&Env::new(""), "sqlite");
}

/// Regression-style check for issue 15: processes sharing one PostgreSQL database (as
/// gateways on several machines would) accept one code once.
#[test]
fn one_code_is_accepted_once_across_processes_postgres() {
    let pg = crate::pg::Postgres::start_new();
    let env = Env::new("");
    env.on_postgres(&pg.database("race"));
    one_code_once_across_processes(&env, "postgres");
}

fn one_code_once_across_processes(env: &Env, what: &str) {
    let uri = env.add_user("race", "pw", &["--hotp"]);
    let s = secret_of(&uri);
    let rounds: u64 = std::env::var("PORTCULLIS_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .map_or(20, |t: u64| t * 5);
    for round in 0..rounds {
        let code = env.ok(
            &[
                "otp",
                "code",
                "--secret",
                &s,
                "--type",
                "hotp",
                "--counter",
                &round.to_string(),
            ],
            None,
        );
        let runs: Vec<Vec<String>> = (0..6)
            .map(|_| vec!["verify".into(), "race".into(), code.trim().into()])
            .collect();
        one_winner_rest_replays(&race(env, &runs), &format!("{what}, round {round}"));
        env.ok(&["user", "unlock", "race"], None);
    }
}

/// One trial's worth of racing processes on a live users file, released at once: twelve
/// give u1 the same HOTP code (one must win, the rest be refused as replays), three readers
/// show a user, and one other user verifies its own code (which must not be lost).
fn race_on_users_file(env: &Env, secret_b32: &str, counter: u64, other: &str, other_code: &str, what: &str) {
    let code = env.ok(
        &[
            "otp",
            "code",
            "--secret",
            secret_b32,
            "--type",
            "hotp",
            "--counter",
            &counter.to_string(),
        ],
        None,
    );
    let mut runs: Vec<Vec<String>> = (0..12)
        .map(|_| vec!["verify".into(), "u1".into(), code.trim().into()])
        .collect();
    runs.extend((0..3).map(|_| vec!["user".to_string(), "show".into(), "f1".into()]));
    runs.push(vec!["verify".into(), other.into(), other_code.into()]);
    let results = race(env, &runs);
    one_winner_rest_replays(&results[..12], what);
    for (code, out) in &results[12..] {
        assert_eq!(*code, 0, "{what}: a reader or the other user failed: {out}");
    }
}

/// Regression (issue 10.1): in the pam_oath dialect readers deleted the lock file a writer
/// held, so two writers ran at once and one code was accepted several times (and other
/// users' replay state could be rolled back). Both dialects, a large file, many processes.
fn one_code_once_on_a_live_users_file(backend: &str) {
    let env = Env::new("");
    let key_hex = "3132333435363738393031323334353637383930";
    let secret_b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let mut text = format!("HOTP u1 - {key_hex} 0\n");
    for i in 0..2000 {
        text.push_str(&format!("HOTP f{i} - {key_hex}{:04x} 0\n", i % 65536));
    }
    let path = env.path().join("users.txt");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.set("store", "backend", &format!("\"{backend}\""));
    env.set("store", "path", &format!("\"{}\"", path.display()));
    // pam_oath's format has no failure count (its configuration must say so); for
    // mod_authn_otp the eleven losers would lock the account, which is not the subject here.
    env.set("lockout", "max_failures", "0");
    // PORTCULLIS_RACE_TRIALS raises the count (.ci/run repeats these races with more).
    let trials: u64 = std::env::var("PORTCULLIS_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(4);
    for t in 0..trials {
        // Each trial, filler user f<t> (whose key is key_hex + t) verifies its first code too.
        let other = format!("f{t}");
        let other_code = hotp_hex(&env, &format!("{key_hex}{t:04x}"), 0);
        race_on_users_file(
            &env,
            secret_b32,
            t,
            &other,
            &other_code,
            &format!("{backend}, trial {t}"),
        );
    }
    // No update was lost: every filler user that verified keeps its advanced counter (a
    // replayed first code is refused), and u1 is at counter `trials`.
    for t in 0..trials {
        let code = hotp_hex(&env, &format!("{key_hex}{t:04x}"), 0);
        let (status, out) = env.verify(&format!("f{t}"), None, &code);
        assert_eq!(
            status, 1,
            "{backend}: f{t}'s used code accepted again (a lost update): {out}"
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let u1 = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("u1"))
        .unwrap();
    assert_eq!(u1.split_whitespace().nth(4), Some(trials.to_string().as_str()), "{u1}");
    assert!(!path.with_extension("txt.lock").exists() || backend == "mod_authn_otp");
}

#[test]
fn one_code_is_accepted_once_on_a_live_pam_oath_file() {
    one_code_once_on_a_live_users_file("pam_oath");
}

#[test]
fn one_code_is_accepted_once_on_a_live_mod_authn_otp_file() {
    one_code_once_on_a_live_users_file("mod_authn_otp");
}

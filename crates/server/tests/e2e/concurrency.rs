//! Several processes verifying one code against one store at the same moment: exactly one
//! of them may accept it.

use crate::harness::*;
use std::process::Stdio;

#[test]
fn one_code_is_accepted_once_across_processes_sqlite() {
    let env = Env::new("");
    let uri = env.add_user("race", "pw", &["--hotp"]);
    let s = secret_of(&uri);
    for round in 0..20u64 {
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
        let code = code.trim();
        let children: Vec<_> = (0..4)
            .map(|_| {
                env.command(&["verify", "race", code])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let accepted = children
            .into_iter()
            .map(|mut c| c.wait().unwrap())
            .filter(|s| s.success())
            .count();
        assert_eq!(accepted, 1, "round {round}: {accepted} processes accepted one code");
        env.ok(&["user", "unlock", "race"], None);
    }
}

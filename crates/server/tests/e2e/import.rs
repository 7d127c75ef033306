//! Taking users over from the tools portcullis replaces: import each format, then verify
//! with a code computed by oathtool; export and use the result as a live users file.

use crate::harness::*;
use std::process::{Command, Stdio};

const KEY_HEX: &str = "3132333435363738393031323334353637383930";
const KEY_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

pub(crate) fn oathtool(args: &[&str]) -> String {
    require_tool("oathtool");
    let out = Command::new("oathtool").args(args).output().unwrap();
    assert!(out.status.success(), "oathtool {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn mod_authn_otp_users_file_imports_and_verifies() {
    let env = Env::new("");
    let file = write(
        &env,
        "otp-users.txt",
        &format!(
            "#\n# Example users file for mod_authn_otp\n#\nHOTP/T30  alice  1234  {KEY_HEX}\nHOTP  barney  -  {KEY_HEX} 21 0 820658 2009-06-12T17:52:32L 192.168.1.1\nHOTP/E/8 fred + {KEY_HEX} 3\n"
        ),
    );
    let out = env.run(&["import", "--format", "mod_authn_otp", &file], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 users imported"),
        "{out:?}"
    );
    // The file was written with the umask's 0644: others could read the secrets.
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{out:?}");
    settle(5);
    let code = oathtool(&["--totp", KEY_HEX]);
    assert_eq!(env.verify("alice", Some("1234"), &code).0, 0, "PIN + oathtool TOTP");
    assert_eq!(env.verify("alice", Some("1234"), &code).0, 1, "replay");
    let c21 = oathtool(&["--counter=21", KEY_HEX]);
    assert_eq!(
        env.verify("barney", Some(""), &c21).0,
        0,
        "event token continues at its counter"
    );
    let c3 = oathtool(&["--counter=3", "--digits=8", KEY_HEX]);
    assert_eq!(env.verify("fred", None, &c3).0, 0);
}

#[test]
fn pam_oath_users_file_imports_and_verifies() {
    let env = Env::new("");
    let file = write(
        &env,
        "users.oath",
        &format!("# pam_oath\nHOTP/T30/6\tcarol\t-\t{KEY_HEX}\nHOTP\tdan\t-\t{KEY_HEX}\t7\n"),
    );
    env.ok(&["import", "--format", "pam_oath", &file], None);
    settle(5);
    assert_eq!(env.verify("carol", None, &oathtool(&["--totp", KEY_HEX])).0, 0);
    assert_eq!(env.verify("dan", None, &oathtool(&["--counter=9", KEY_HEX])).0, 0);
}

#[test]
fn google_authenticator_file_imports_secret_options_scratch_and_password() {
    let env = Env::new("");
    let home = env.path().join("home/erin");
    std::fs::create_dir_all(&home).unwrap();
    let ga = home.join(".google_authenticator");
    std::fs::write(
        &ga,
        format!("{KEY_B32}\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n\"PASSWORD=hunter2\n12345678\n87654321\n"),
    )
    .unwrap();
    // Not erin's home as /etc/passwd has it, so the name is given (see the next test).
    let out = env.run(
        &[
            "import",
            "--format",
            "google-authenticator",
            "--user",
            "erin",
            ga.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported erin"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WINDOW_SIZE"),
        "options that do not carry over are named"
    );
    settle(5);
    let code = oathtool(&["--totp", "--base32", KEY_B32]);
    assert_eq!(env.verify("erin", Some("nope"), &code).0, 1);
    assert_eq!(
        env.verify("erin", Some("hunter2"), &code).0,
        0,
        "mod_authn_google's password becomes the first factor"
    );
    assert_eq!(env.verify("erin", Some("hunter2"), "87654321").0, 0, "scratch code");
    assert_eq!(
        env.verify("erin", Some("hunter2"), "87654321").0,
        1,
        "scratch codes work once"
    );
}

/// Regression (issue 14.6, item 4): a missing file said "cannot tell whose file this is",
/// and a file outside any home directory was imported as the user named like its folder
/// (/tmp/x/.google_authenticator became user `x`).
#[test]
fn google_authenticator_names_a_user_only_from_its_owners_home() {
    let env = Env::new("");
    let folder = env.path().join("x");
    std::fs::create_dir(&folder).unwrap();
    let ga = folder.join(".google_authenticator");
    let ga_arg = ga.to_str().unwrap();

    let out = env.run(&["import", "--format", "google-authenticator", ga_arg], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{ga_arg}: no such file")), "{err}");
    assert!(!err.contains("whose"), "{err}");

    std::fs::write(&ga, format!("{KEY_B32}\n\" TOTP_AUTH\n")).unwrap();
    let out = env.run(&["import", "--format", "google-authenticator", ga_arg], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{ga_arg}: cannot tell whose file this is"))
            && err.contains("/etc/passwd")
            && err.contains("pass --user NAME"),
        "{err}"
    );
    assert!(
        !env.ok(&["user", "list"], None).contains("\nx "),
        "no user named after the folder"
    );

    let out = env.ok(
        &["import", "--format", "google-authenticator", "--user", "xavier", ga_arg],
        None,
    );
    assert!(out.contains("imported xavier: "), "{out}");
}

#[test]
fn apache_2fa_tokens_json_imports_and_verifies() {
    let env = Env::new("");
    let htpasswd = write(&env, "htpasswd", "");
    assert!(
        Command::new("htpasswd")
            .args(["-bB", &htpasswd, "frank", "pw1"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(env.config(), format!("[first_factor]\nhtpasswd = \"{htpasswd}\"\n")).unwrap();
    let file = write(
        &env,
        "tokens.json",
        &format!(
            "{{\n  \"frank\": \"{}\",\n  \"gina\": \"JBSWY3DPEHPK3PXP\"\n}}\n",
            KEY_B32.to_lowercase()
        ),
    );
    env.ok(&["import", "--format", "apache_2fa", &file], None);
    settle(5);
    let code = oathtool(&["--totp", "--base32", KEY_B32]);
    assert_eq!(
        env.verify("frank", Some("wrong"), &code).0,
        1,
        "htpasswd is the first factor"
    );
    assert_eq!(env.verify("frank", Some("pw1"), &code).0, 0);
}

#[test]
fn malformed_files_name_the_line_and_import_nothing() {
    let env = Env::new("");
    let file = write(
        &env,
        "users.oath",
        &format!("HOTP/T30\tok\t-\t{KEY_HEX}\nHOTP/T30\tbad\t-\tzz{KEY_HEX}\n"),
    );
    let out = env.run(&["import", "--format", "pam_oath", &file], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("users.oath:2:") && err.contains("KEY"), "{err}");
    assert!(!err.contains("zz3132"), "the secret is not echoed");
    assert!(!env.ok(&["user", "list"], None).contains("ok "), "nothing imported");

    let json = write(&env, "tokens.json", "{\"a\": \"AAAA\",\n \"b\": }");
    let err = String::from_utf8_lossy(&env.run(&["import", "--format", "apache_2fa", &json], None).stderr).into_owned();
    assert!(err.contains("tokens.json:2:"), "{err}");
}

#[test]
fn export_then_use_as_live_pam_oath_file_and_switch_back() {
    let env = Env::new("");
    let uri = env.add_user("hank", "pw", &["--hotp"]);
    let s = secret_of(&uri);
    let hotp = |c: u32| {
        env.ok(
            &[
                "otp",
                "code",
                "--secret",
                &s,
                "--type",
                "hotp",
                "--counter",
                &c.to_string(),
            ],
            None,
        )
        .trim()
        .to_string()
    };
    assert_eq!(env.verify("hank", None, &hotp(0)).0, 0);
    let out = env.path().join("users.oath");
    let msg = env.run(&["export", "--format", "pam_oath", out.to_str().unwrap()], None);
    assert!(msg.status.success());
    assert!(
        String::from_utf8_lossy(&msg.stderr).contains("argon2"),
        "the lost password is mentioned"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("HOTP\thank\t+\t"), "{text}");

    // The exported file is now the live store, as pam_oath would use it.
    let live = Env::new("");
    std::fs::write(
        live.config(),
        format!(
            "[store]\nbackend = \"pam_oath\"\npath = \"{}\"\n[lockout]\nmax_failures = 0\n",
            out.display()
        ),
    )
    .unwrap();
    assert_eq!(
        live.verify("hank", None, &hotp(0)).0,
        1,
        "counter 0 was used before the export"
    );
    assert_eq!(live.verify("hank", None, &hotp(1)).0, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(&format!("\t2\t{}", hotp(1))),
        "pam_oath's counter and last OTP written: {text}"
    );
    assert!(live.ok(&["user", "list"], None).contains("hank"));
}

#[test]
fn one_code_is_accepted_once_across_processes_users_file() {
    let env = Env::new("");
    let file = env.path().join("otp-users.txt");
    std::fs::write(&file, format!("HOTP racer - {KEY_HEX} 0\n")).unwrap();
    std::fs::write(
        env.config(),
        format!(
            "[store]\nbackend = \"mod_authn_otp\"\npath = \"{}\"\n[lockout]\nmax_failures = 0\n",
            file.display()
        ),
    )
    .unwrap();
    for round in 0..20 {
        let code = oathtool(&[&format!("--counter={round}"), KEY_HEX]);
        let runs: Vec<Vec<String>> = (0..6)
            .map(|_| vec!["verify".into(), "racer".into(), code.clone()])
            .collect();
        one_winner_rest_replays(&race(&env, &runs), &format!("mod_authn_otp, round {round}"));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.split_whitespace().nth(4), Some("20"), "{text}");
}

/// Regression (issue 14.6, item 3): importing a users file that does not exist left
/// `FILE.lock` beside it, and the error did not say plainly that the file was missing.
#[test]
fn a_missing_file_is_named_and_nothing_is_created() {
    let env = Env::new("");
    let dir = env.path().join("old");
    std::fs::create_dir(&dir).unwrap();
    for (format, name) in [
        ("mod_authn_otp", "otp-users.txt"),
        ("pam_oath", "users.oath"),
        ("apache_2fa", "tokens.json"),
        ("google-authenticator", ".google_authenticator"),
    ] {
        let missing = dir.join(name);
        let out = env.run(&["import", "--format", format, missing.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{format}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}: no such file", missing.display())),
            "{format}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{format}: created {left:?}");
    }
}

/// Regression (issue 14.6, item 6): a count of one read "1 users", "1 scratch codes".
#[test]
fn counts_read_right_for_one_and_for_many() {
    let env = Env::new("");
    let one = write(&env, "one.oath", &format!("HOTP/T30\tivy\t-\t{KEY_HEX}\n"));
    let out = env.ok(&["import", "--format", "pam_oath", &one], None);
    assert!(out.contains("1 user imported,"), "{out}");
    let two = write(
        &env,
        "two.oath",
        &format!("HOTP/T30\tjoe\t-\t{KEY_HEX}\nHOTP/T30\tkim\t-\t{KEY_HEX}\n"),
    );
    let out = env.ok(&["import", "--format", "pam_oath", &two], None);
    assert!(out.contains("2 users imported,"), "{out}");
    let ga = write(&env, "ga", &format!("{KEY_B32}\n\" TOTP_AUTH\n12345678\n"));
    let out = env.ok(
        &["import", "--format", "google-authenticator", "--user", "lee", &ga],
        None,
    );
    assert!(out.contains(", 1 scratch code\n"), "{out}");
    assert!(
        env.ok(&["config", "check"], None).contains(", 4 users)"),
        "config check counts too"
    );

    let exported = env.path().join("all.oath");
    let out = env.run(&["export", "--format", "pam_oath", exported.to_str().unwrap()], None);
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("4 users written"), "{stdout}");
    assert!(stderr.contains("lee: not exported: 1 scratch code "), "{stderr}");

    let single = Env::new("");
    single.ok(&["import", "--format", "pam_oath", &one], None);
    assert!(single.ok(&["config", "check"], None).contains(", 1 user)"));
    let exported = single.path().join("one.oath");
    let out = single.ok(&["export", "--format", "pam_oath", exported.to_str().unwrap()], None);
    assert!(out.contains("1 user written"), "{out}");
}

/// Regression (issue 14.6, item 2): a re-import printed "imported jack" for a user it had
/// skipped because one of that name existed; only the summary's count said otherwise.
#[test]
fn a_reimport_names_the_users_it_skips_and_why() {
    let env = Env::new("");
    const OTHER_HEX: &str = "00112233445566778899aabbccddeeff00112233";
    let first = write(&env, "users.oath", &format!("HOTP\tjack\t-\t{KEY_HEX}\t0\n"));
    env.ok(&["import", "--format", "pam_oath", &first], None);
    let again = write(
        &env,
        "again.oath",
        &format!("HOTP\tjack\t-\t{OTHER_HEX}\t0\nHOTP\tmia\t-\t{OTHER_HEX}\t0\n"),
    );
    let out = env.ok(&["import", "--format", "pam_oath", &again], None);
    assert!(!out.contains("imported jack"), "{out}");
    assert!(
        out.contains("skipped jack: a user of that name exists already; pass --replace to replace it"),
        "{out}"
    );
    assert!(out.contains("imported mia: "), "{out}");
    assert!(out.contains("1 user imported, 1 skipped,"), "{out}");
    assert_eq!(
        env.verify("jack", None, &hotp_hex(&env, KEY_HEX, 0)).0,
        0,
        "the skipped user keeps its token"
    );

    let out = env.ok(&["import", "--format", "pam_oath", "--replace", &again], None);
    assert!(
        out.contains("imported jack (replacing the user of that name): "),
        "{out}"
    );
    assert!(out.contains("2 users imported, 0 skipped,"), "{out}");
    assert!(!out.contains("skipped jack"), "{out}");
    assert_eq!(
        env.verify("jack", None, &hotp_hex(&env, OTHER_HEX, 0)).0,
        0,
        "--replace wrote the file's token"
    );
}

/// Regression (issue 14.6, item 1): users whose PIN field is "+" (checked by another
/// provider) were imported without a word while no `[first_factor]` htpasswd/htdigest was
/// set; their logins then failed with "wrong password".
#[test]
fn plus_pin_users_without_an_external_first_factor_are_warned_about() {
    for (format, name, sep) in [
        ("mod_authn_otp", "otp-users.txt", " "),
        ("pam_oath", "users.oath", "\t"),
    ] {
        let env = Env::new("");
        let text: String = [("nick", "+"), ("olga", "+"), ("pete", "-")]
            .iter()
            .map(|(user, pin)| ["HOTP/T30", user, pin, KEY_HEX].join(sep) + "\n")
            .collect();
        let file = write(&env, name, &text);
        let out = env.run(&["import", "--format", format, &file], None);
        assert!(out.status.success(), "{format}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let warning = err
            .lines()
            .find(|l| l.starts_with(&format!("warning: {file}: ")) && l.contains("\"+\""))
            .unwrap_or_else(|| panic!("{format}: no warning naming the file: {err}"));
        assert!(warning.contains("nick, olga is \"+\""), "{format}: {warning}");
        assert!(!warning.contains("pete"), "{format}: {warning}");
        assert!(
            warning.contains(&env.config().display().to_string()) && warning.contains("[first_factor] htpasswd"),
            "{format}: what to set, and where: {warning}"
        );
        settle(5);
        let code = oathtool(&["--totp", KEY_HEX]);
        let (status, said) = env.verify("nick", Some("pw"), &code);
        assert_eq!(status, 1, "{format}: what the warning is about");
        assert!(said.contains("password"), "{format}: {said}");

        // With the htpasswd file set there is nothing to warn about, and the login works.
        let configured = Env::new("");
        let htpasswd = write(&configured, "htpasswd", "");
        assert!(
            Command::new("htpasswd")
                .args(["-bB", &htpasswd, "nick", "pw"])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        );
        configured.set("first_factor", "htpasswd", &format!("\"{htpasswd}\""));
        let file = write(&configured, name, &text);
        let out = configured.run(&["import", "--format", format, &file], None);
        assert!(out.status.success(), "{format}: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("\"+\""),
            "{format}: {out:?}"
        );
        assert_eq!(configured.verify("nick", Some("pw"), &code).0, 0, "{format}");
    }
}

/// Regression (issue 14.6, item 5): `export --format pam_oath` said to check the "+" PIN
/// "with an htpasswd provider", which pam_oath does not have; and the help's example wrote
/// straight over the live /etc/users.oath.
#[test]
fn export_notes_say_what_plus_means_to_each_tool() {
    let env = Env::new("");
    env.add_user("quinn", "pw", &[]);
    let notes = |format: &str, name: &str| {
        let out = env.run(
            &["export", "--format", format, env.path().join(name).to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let pam = notes("pam_oath", "users.oath");
    assert!(
        pam.contains("the PIN field of quinn is \"+\" (argon2 passwords cannot be exported)"),
        "{pam}"
    );
    assert!(
        pam.contains("pam_oath has no password provider of its own") && pam.contains("pam_unix"),
        "{pam}"
    );
    assert!(!pam.contains("htpasswd provider") && !pam.contains("OTPAuth"), "{pam}");
    let apache = notes("mod_authn_otp", "otp-users.txt");
    assert!(apache.contains("OTPAuthPINAuthProvider"), "{apache}");
    assert!(!apache.contains("pam_unix"), "{apache}");

    let help = env.ok(&["export", "--help"], None);
    assert!(
        help.contains("portcullis export --format pam_oath /etc/users.oath.new"),
        "{help}"
    );
    assert!(help.contains("mv /etc/users.oath.new /etc/users.oath"), "{help}");
}

//! The administration and verification commands, as a user runs them.

use crate::harness::*;

#[test]
fn enroll_verify_replay_wrong_password_and_lockout() {
    let env = Env::new("");
    let uri = env.add_user("alice", "s3cret pass", &[]);
    assert!(uri.starts_with("otpauth://totp/portcullis:alice?secret="), "{uri}");
    let secret = secret_of(&uri);
    settle(5);
    let code = code_now(&env, &secret);

    let (rc, out) = env.verify("alice", Some("wrong"), &code);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("wrong password"), "{out}");

    let (rc, out) = env.verify("alice", Some("s3cret pass"), &code);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = env.verify("alice", Some("s3cret pass"), &code);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("replay"), "{out}");

    // Four more wrong codes: with the replay, that is 5 failures, the default limit.
    for _ in 0..4 {
        assert_eq!(env.verify("alice", None, "000000").0, 1);
    }
    let (rc, out) = env.verify("alice", None, "111111");
    assert_eq!(rc, 1);
    assert!(out.contains("locked"), "{out}");
    assert!(env.ok(&["user", "list"], None).contains("locked"));
    env.ok(&["user", "unlock", "alice"], None);
    let list = env.ok(&["user", "list"], None);
    assert!(list.contains("active"), "{list}");

    let (rc, out) = env.verify("nobody", Some("x"), "123456");
    assert_eq!(rc, 1);
    assert!(out.contains("unknown user"), "{out}");
}

#[test]
fn hotp_user_resyncs_and_never_accepts_a_code_twice() {
    let env = Env::new("");
    let uri = env.add_user("bob", "pw", &["--hotp", "--digits", "8"]);
    assert!(
        uri.starts_with("otpauth://hotp/") && uri.contains("digits=8") && uri.contains("counter=0"),
        "{uri}"
    );
    let s = secret_of(&uri);
    let code = |c: u64| {
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
                "--digits",
                "8",
            ],
            None,
        )
        .trim()
        .to_string()
    };
    assert_eq!(env.verify("bob", None, &code(3)).0, 0, "look-ahead finds counter 3");
    assert_eq!(env.verify("bob", None, &code(3)).0, 1);
    assert_eq!(env.verify("bob", None, &code(2)).0, 1, "earlier counters are spent");
    assert_eq!(env.verify("bob", None, &code(4)).0, 0);
}

#[test]
fn lock_and_admin_commands() {
    let env = Env::new("");
    let uri = env.add_user("carol", "pw", &["--group", "admins", "--email", "c@example.com"]);
    let show = env.ok(&["user", "show", "carol"], None);
    assert!(show.contains("admins") && show.contains("c@example.com"), "{show}");
    assert!(!show.contains(&secret_of(&uri)), "show must never print the secret");
    env.ok(&["user", "lock", "carol"], None);
    settle(5);
    let (rc, out) = env.verify("carol", None, &code_now(&env, &secret_of(&uri)));
    assert_eq!(rc, 1);
    assert!(out.contains("locked"), "{out}");
    env.ok(&["user", "unlock", "carol"], None);

    env.ok(&["user", "passwd", "carol", "--password-stdin"], Some("new pw\n"));
    // The old password with a valid code: refused for the password, not the code.
    settle(5);
    let (rc, out) = env.verify("carol", Some("pw"), &code_now(&env, &secret_of(&uri)));
    assert_eq!(rc, 1);
    assert!(out.contains("wrong password"), "{out}");

    let out = env.ok(&["user", "token", "reset", "carol", "--no-terminal-qr"], None);
    let new_uri = uri_in(&out);
    assert_ne!(secret_of(&new_uri), secret_of(&uri));
    settle(5);
    assert_eq!(
        env.verify("carol", Some("new pw"), &code_now(&env, &secret_of(&new_uri)))
            .0,
        0
    );
    assert_eq!(
        env.verify("carol", None, &code_now(&env, &secret_of(&uri))).0,
        1,
        "old token is gone"
    );

    let dup = env.run(&["user", "add", "carol", "--no-password", "--no-terminal-qr"], None);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = env.run(&["user", "add", "bad name", "--no-password"], None);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("spaces"));

    env.ok(&["user", "remove", "carol"], None);
    assert!(!env.ok(&["user", "list"], None).contains("carol"));
    let gone = env.run(&["user", "remove", "carol"], None);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no user named"));
}

#[test]
fn scratch_codes_are_one_time_and_stored_hashed() {
    let env = Env::new("");
    env.add_user("dave", "pw", &[]);
    let out = env.ok(&["user", "scratch", "dave"], None);
    let codes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(codes.len(), 10, "{out}");
    assert_eq!(env.verify("dave", Some("pw"), codes[0]).0, 0);
    assert_eq!(env.verify("dave", Some("pw"), codes[0]).0, 1);
    assert_eq!(env.verify("dave", Some("pw"), codes[1]).0, 0);
    let db = std::fs::read(env.path().join("portcullis.db")).unwrap();
    let text = String::from_utf8_lossy(&db);
    assert!(!text.contains(codes[2]), "scratch codes must not be stored in clear");
}

#[test]
fn otp_tools_match_rfc_vectors() {
    let env = Env::new("");
    // RFC 6238 Appendix B, SHA1 at T=59 and SHA256 at T=1111111109.
    let s1 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(
        env.ok(&["otp", "code", "--secret", s1, "--time", "59", "--digits", "8"], None)
            .trim(),
        "94287082"
    );
    let s256 = "3132333435363738393031323334353637383930313233343536373839303132";
    let out = env.ok(
        &[
            "otp",
            "code",
            "--hex",
            "--secret",
            s256,
            "--time",
            "1111111109",
            "--digits",
            "8",
            "--algorithm",
            "sha256",
        ],
        None,
    );
    assert_eq!(out.trim(), "68084774");
    // RFC 4226 Appendix D, counter 9.
    let out = env.ok(
        &[
            "otp",
            "code",
            "--hex",
            "--secret",
            "3132333435363738393031323334353637383930",
            "--type",
            "hotp",
            "--counter",
            "9",
        ],
        None,
    );
    assert_eq!(out.trim(), "520489");
    let out = env.ok(&["otp", "secret", "--secret", "jbsw y3dp ehpk 3pxp"], None);
    assert!(out.contains("hex:    48656c6c6f21deadbeef"), "{out}");
    let uri = env.ok(
        &[
            "otp",
            "uri",
            "--secret",
            "JBSWY3DPEHPK3PXP",
            "--account",
            "alice@example.com",
            "--issuer",
            "ACME Co",
        ],
        None,
    );
    assert_eq!(
        uri.trim(),
        "otpauth://totp/ACME%20Co:alice%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
    );
    let bad = env.run(&["otp", "code", "--secret", "JBSWY3DP0HPK3PXP"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("position 9"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn config_errors_name_file_and_line() {
    let env = Env::new("[otp]\nwindow = 50");
    let out = env.run(&["config", "check"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The template has its own [otp] section, so the duplicate table is the first error.
    let text = std::fs::read_to_string(env.config()).unwrap();
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[otp]")
        .last()
        .unwrap()
        .0
        + 1;
    assert!(
        err.contains(&format!("portcullis.toml:{line}:")) && err.contains("duplicate"),
        "{err}"
    );

    let env = Env::new("");
    std::fs::write(env.config(), "[store]\nbackend = \"sqlite\"\n[otp]\nwindow = 50\n").unwrap();
    let err = String::from_utf8_lossy(&env.run(&["config", "check"], None).stderr).into_owned();
    assert!(err.contains("portcullis.toml:4: otp.window = 50"), "{err}");
    std::fs::write(env.config(), "[otp]\nwindw = 1\n").unwrap();
    let err = String::from_utf8_lossy(&env.run(&["verify", "x", "123456"], None).stderr).into_owned();
    assert!(err.contains("portcullis.toml:2:1") && err.contains("windw"), "{err}");
    std::fs::write(env.config(), "").unwrap();
    assert!(env.ok(&["config", "check"], None).contains("OK"));
}

#[test]
fn config_check_reports_every_error_with_its_line() {
    let env = Env::new("");
    std::fs::write(
        env.config(),
        "[otp]\nwindow = 50\n\n[server]\nheader_timeout = 0\n\n[proxy]\nupstream = \"https://127.0.0.1:8443\"\n",
    )
    .unwrap();
    let out = env.run(&["config", "check"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "portcullis.toml:2: otp.window = 50: use 0 to 10 steps",
        "portcullis.toml:5: server.header_timeout = 0: use 1 to 300 seconds",
        "portcullis.toml:8: proxy.upstream = \"https://127.0.0.1:8443\": give the app's plain-HTTP address",
        "3 problems found",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(err.find(":2: otp") < err.find(":5: server") && err.find(":5: server") < err.find(":8: proxy"));
}

#[test]
fn init_files_are_private_and_not_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let fresh = env.path().join("etc/portcullis");
    env.ok(&["init", "--dir", fresh.to_str().unwrap()], None);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("portcullis.toml")), 0o600);
    assert_eq!(mode(&fresh.join("portcullis.db")), 0o600);
    // An existing directory open to others is left alone, with a warning.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = env.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.run(&["init", "--dir", open.to_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"), "{out:?}");
    let again = env.run(&["init", "--dir", env.path().to_str().unwrap()], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

/// Every command line under `args` (found from the help's "Commands:" lists), with its help.
fn help_tree(env: &Env, args: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let mut with_help = args.clone();
    with_help.push("--help".into());
    let refs: Vec<&str> = with_help.iter().map(String::as_str).collect();
    let help = env.ok(&refs, None);
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    out.push((args.clone(), help));
    for sub in subcommands {
        let mut next = args.clone();
        next.push(sub);
        help_tree(env, next, out);
    }
}

/// The example blocks of a help text, each line joined with its `\` continuations.
fn examples(help: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut lines = help.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("Example") {
            continue;
        }
        let mut block = Vec::new();
        let mut current = String::new();
        while let Some(l) = lines.next_if(|l| l.starts_with("  ")) {
            assert!(
                l.len() <= 80,
                "an example line wider than a terminal wraps where it cannot be copied:\n{l}"
            );
            let part = l.trim();
            match part.strip_suffix('\\') {
                Some(head) => current.push_str(head),
                None => {
                    current.push_str(part);
                    block.push(std::mem::take(&mut current));
                }
            }
        }
        blocks.push(block);
    }
    blocks
}

#[test]
fn every_help_example_runs_as_printed() {
    let env = Env::new("");
    let root = env.path().join("root");
    for dir in [
        "etc/apache2/conf-available",
        "etc/bash_completion.d",
        "etc/nginx/conf.d",
        "etc/caddy",
        "etc/traefik/dynamic",
        "home/alice",
        "var/www/2fa",
        "work",
        "bin",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink(bin(), root.join("bin/portcullis")).unwrap();
    let w = root.join("work");
    let key_b32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    for (file, text) in [
        ("work/alice.key", key_b32),
        ("work/yubikey.b32", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        ("work/token.hex", "0123456789abcdef"),
        ("work/token.pin", "1234"),
        (
            "work/alice.uri",
            "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP&issuer=ACME",
        ),
        (
            "etc/apache2/otp-users.txt",
            "HOTP/T30 dave 1234 3132333435363738393031323334353637383930\n",
        ),
        (
            "etc/users.oath",
            "HOTP/T30/6 frank - 3132333435363738393031323334353637383930\n",
        ),
        (
            "home/alice/.google_authenticator",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n12345678\n",
        ),
        (
            "var/www/2fa/tokens.json",
            "{\"erin\": \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ\"}\n",
        ),
    ] {
        std::fs::write(root.join(file), format!("{text}\n")).unwrap();
    }
    // `store migrate` copies into a real PostgreSQL, at the address its example names.
    let pg = crate::pg::Postgres::start_new();
    pg.sql("CREATE ROLE portcullis LOGIN");
    pg.sql("CREATE DATABASE portcullis OWNER portcullis");
    let mut tree = Vec::new();
    help_tree(&env, Vec::new(), &mut tree);
    assert!(tree.len() > 30, "{} commands found", tree.len());
    let r = root.display().to_string();
    let config = format!("{r}/etc/portcullis/portcullis.toml");
    let mut ran = 0;
    for (args, help) in &tree {
        let blocks = examples(help);
        if !args.is_empty() {
            assert!(
                !blocks.is_empty(),
                "`portcullis {}` --help has no example:\n{help}",
                args.join(" ")
            );
        }
        for block in blocks {
            // Paths into the temp root, the demo and the gateway onto free ports; `sudo`
            // is not needed as root.
            let port = free_port();
            let script: Vec<String> = block
                .iter()
                .filter(|l| ["portcullis ", "printf ", "mv "].iter().any(|p| l.starts_with(p)))
                .map(|l| {
                    let mut l = l.clone();
                    for dir in ["/etc/", "/home/", "/var/www/"] {
                        l = l.replace(&format!(" {dir}"), &format!(" {r}{dir}"));
                        l = l.replace(&format!(">{dir}"), &format!(">{r}{dir}"));
                    }
                    l = l.replace("127.0.0.1:9091", &format!("127.0.0.1:{port}"));
                    l = l.replace("@127.0.0.1/", &format!("@127.0.0.1:{}/", pg.port));
                    l.replace(
                        " demo --dir ./demo",
                        &format!(" demo --dir ./demo --listen 127.0.0.1:{port}"),
                    )
                })
                .collect();
            if script.is_empty() {
                continue; // a line of another program's configuration (Apache's)
            }
            let text = script.join("\n");
            if !text.contains(" init ") && !text.contains(" demo ") && std::path::Path::new(&config).exists() {
                // The examples name alice: she exists unless the example creates her.
                let adds_alice = text.contains("user add alice");
                let has_alice = env
                    .command(&["user", "show", "alice"])
                    .env("PORTCULLIS_CONFIG", &config)
                    .output()
                    .unwrap()
                    .status
                    .success();
                if adds_alice && has_alice {
                    env.command(&["user", "remove", "alice"])
                        .env("PORTCULLIS_CONFIG", &config)
                        .output()
                        .unwrap();
                }
                if !adds_alice && !has_alice {
                    let out = env
                        .command(&["user", "add", "alice", "--password-stdin", "--no-terminal-qr"])
                        .env("PORTCULLIS_CONFIG", &config)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .and_then(|mut c| {
                            use std::io::Write;
                            c.stdin.take().unwrap().write_all(b"pw\n")?;
                            c.wait_with_output()
                        })
                        .unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            }
            let long_running = text.contains(" serve") || text.contains(" demo ");
            let out = std::process::Command::new("timeout")
                .args([
                    if long_running { "3" } else { "30" },
                    "bash",
                    "-euo",
                    "pipefail",
                    "-c",
                    &text,
                ])
                .current_dir(&w)
                .env("PATH", format!("{r}/bin:{}", std::env::var("PATH").unwrap_or_default()))
                .env("PORTCULLIS_CONFIG", &config)
                .env("PASS", "pw")
                .env("KEY", "3132333435363738393031323334353637383930")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let code = out.status.code();
            let err = String::from_utf8_lossy(&out.stderr);
            let ok = match () {
                _ if long_running => code == Some(124) && !err.contains("error"),
                _ if text.contains(" verify ") => matches!(code, Some(0 | 1)),
                // Duo's service is not here: the example must say what is missing (the duo
                // e2e tests run it against the stand-in).
                _ if text.contains(" duo check") => code == Some(2) && err.contains("[duo] is not set"),
                // A passkey is made in a browser, so none is here to remove: it says so.
                _ if text.contains(" passkey laptop") => code == Some(2) && err.contains("alice has no passkey"),
                _ => code == Some(0),
            };
            assert!(
                ok,
                "`portcullis {}` example failed ({code:?}):\n{text}\n{err}",
                args.join(" ")
            );
            ran += 1;
        }
    }
    assert!(ran >= 30, "only {ran} example blocks ran");
}

#[test]
fn demo_command_prints_a_working_setup() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = std::process::Command::new(bin())
        .args(["demo", "--no-serve", "--dir", demo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("▀") || text.contains("█"), "terminal QR code missing");
    let uri = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("otpauth://"))
        .unwrap();
    let env = Env {
        dir: tempfile::TempDir::new_in(dir.path()).unwrap(),
    };
    std::fs::copy(demo.join("portcullis.toml"), env.config()).unwrap();
    std::fs::copy(demo.join("portcullis.db"), env.path().join("portcullis.db")).unwrap();
    settle(5);
    let code = code_now(&env, &secret_of(uri));
    assert_eq!(env.verify("demo", Some("demo"), &code).0, 0);
}

#[test]
fn demo_says_a_busy_port_first_follows_listen_and_refuses_a_config_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let demo_arg = demo.to_str().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let run = |args: &[&str]| std::process::Command::new(bin()).args(args).output().unwrap();
    let out = run(&["demo", "--dir", demo_arg, "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "printed before failing: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port} is in use")));
    drop(busy);
    let free = free_port();
    assert!(
        run(&[
            "demo",
            "--dir",
            demo_arg,
            "--no-serve",
            "--listen",
            &format!("127.0.0.1:{free}")
        ])
        .status
        .success()
    );
    let config = std::fs::read_to_string(demo.join("portcullis.toml")).unwrap();
    assert!(
        config.contains(&format!("portal_url = \"http://127.0.0.1:{free}\"")),
        "{config}"
    );
    let out = run(&["--config", "/etc/other.toml", "demo", "--dir", demo_arg, "--no-serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the demo keeps its own configuration in --dir"));
}

/// `portcullis user list` on `env`'s configuration as user nobody: its error (exit 2).
fn as_nobody(env: &Env) -> String {
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(bin())
        .arg("--config")
        .arg(env.config())
        .args(["user", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

#[test]
fn a_config_another_user_owns_says_whose_it_is_and_what_to_run() {
    use std::os::unix::fs::PermissionsExt;
    require_tool("runuser");
    let env = Env::new("");
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Like `sudo portcullis init` followed by a plain `portcullis user list`.
    let err = as_nobody(&env);
    assert!(
        err.contains(&format!(
            "permission denied: {} belongs to root (mode 0700) and this runs as nobody",
            env.path().display()
        )),
        "{err}"
    );
    assert!(err.contains("`sudo -u root portcullis …`"), "{err}");
    assert!(
        !err.contains("--config or PORTCULLIS_CONFIG"),
        "the path was given: {err}"
    );
    assert!(!err.contains("os error"), "the reason is said once, in words: {err}");
    // The configuration readable, the database not: SQLite's "unable to open database
    // file" would not say why.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = as_nobody(&env);
    let db = env.path().join("portcullis.db");
    assert!(
        err.contains(&format!(
            "cannot open the database: permission denied: {} belongs to root (mode 0600)",
            db.display()
        )),
        "{err}"
    );
    // No file at all: say so, and how to make one.
    let missing = env.path().join("nowhere/portcullis.toml");
    let out = env.run(&["--config", missing.to_str().unwrap(), "user", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("there is no such file; make one with `portcullis init --dir DIR`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn config_check_reports_what_serve_would_refuse_and_warns_about_what_misleads() {
    let env = Env::new("");
    let check = |env: &Env| {
        let out = env.run(&["config", "check"], None);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Issue 14.8: each of these passed `config check` and then stopped `serve`.
    env.set("server", "listen", "\"0.0.0.0:9999\"");
    env.set("session", "secure", "false");
    env.set("server", "tls_cert", "\"missing/cert.pem\"");
    env.set("server", "tls_key", "\"missing/key.pem\"");
    env.set("apache", "check_socket", "\"/run/portcullis-nowhere/check.sock\"");
    let (code, err) = check(&env);
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "session.secure = false: plain-HTTP cookies are allowed only on a loopback listener, and [server] listen is 0.0.0.0:9999",
        "server.tls_cert = \"missing/cert.pem\": there is no such file",
        "server.tls_key = \"missing/key.pem\": there is no such file",
        "apache.check_socket = \"/run/portcullis-nowhere/check.sock\": its directory /run/portcullis-nowhere does not exist",
        "`portcullis serve` would refuse this (4 problems); other commands work with it",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    // `serve` refuses the same, and says where the list is.
    let out = env.run(&["serve"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`portcullis config check` lists it"));
    // Other commands still work with it.
    env.ok(&["user", "list"], None);

    // A users-file store keeps no sessions.
    let env = Env::new("");
    std::fs::write(
        env.path().join("users.oath"),
        "HOTP/T30 dave - 3132333435363738393031323334353637383930\n",
    )
    .unwrap();
    env.set("store", "backend", "\"pam_oath\"");
    env.set("store", "path", "\"users.oath\"");
    env.set("lockout", "max_failures", "0");
    let (code, err) = check(&env);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("session.store = \"sqlite\": the users-file store ([store] backend) keeps no sessions"),
        "{err}"
    );
    env.set("session", "store", "\"memory\"");
    let (code, err) = check(&env);
    assert_eq!(code, Some(0), "{err}");

    // Warnings: allowed, but not what anyone means (exit 0, OK).
    let env = Env::new("");
    env.set("first_factor", "htpasswd", "\"/nonexistent/.htpasswd\"");
    env.set("server", "default_redirect", "\"https://elsewhere.example.org/\"");
    env.set("server", "portal_url", "\"http://auth.example.com\"");
    env.set("access", "protected_domains", "[\"example.com\", \"*.example.com\"]");
    env.set("session", "idle", "50000");
    let out = env.run(&["config", "check"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    for want in [
        "warning: ",
        "session.idle = 50000 is longer than absolute (43200)",
        "first_factor.htpasswd = \"/nonexistent/.htpasswd\": there is no such file",
        "server.default_redirect = \"https://elsewhere.example.org/\" is outside portal_url's host and [access] protected_domains",
        "use \"http://auth.example.com/\"",
        "server.portal_url = \"http://auth.example.com\" is plain HTTP but [session] secure = true",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
}

#[test]
fn config_ranges_that_made_no_sense_are_refused_with_the_key_named() {
    for (section, key, value, want) in [
        ("invite", "ttl", "0", "invite.ttl = 0: use 60 seconds to 2592000"),
        (
            "invite",
            "ttl",
            "99999999999",
            "invite.ttl = 99999999999: use 60 seconds",
        ),
        (
            "regulation",
            "ban_time",
            "0",
            "regulation.ban_time = 0: use a positive number of seconds, or max_retries = 0",
        ),
        (
            "access",
            "protected_domains",
            "[\"example.com\", \"*.*.example.com\"]",
            "protected_domains[2]",
        ),
    ] {
        let env = Env::new("");
        env.set(section, key, value);
        let out = env.run(&["config", "check"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{section}.{key} = {value}: {err}");
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
        assert!(!err.contains("return_domains"), "an internal name: {err}");
    }
}

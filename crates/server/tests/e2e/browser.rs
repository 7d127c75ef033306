//! The login portal in a real headless Chromium: `portcullis serve` on a free loopback
//! port, driven by `tests/browser/portal.mjs` (playwright-core, `/usr/bin/chromium`),
//! which signs in, signs out, enrolls through an invitation and writes screenshots to
//! `target/screenshots/portal/`, `.../proxy/`, `.../duo/` and `.../passkey/` (emptied
//! first; `duo.mjs` signs in with a push from the Duo stand-in, `passkey.mjs` with a
//! virtual WebAuthn authenticator). `scripts/test` installs Chromium and the npm package.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The Node script's own limit; the test kills it a little later than that.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// A child process killed (and reaped) when dropped, also when the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails, naming scripts/test, when node, the npm package or Chromium is missing.
fn require_browser_tools() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed; install Node.js, then run scripts/test"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}; run scripts/test (it runs `npm ci` there)",
        browser_dir().display()
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing; run scripts/test (it installs the Debian package chromium)"
    );
}

/// Rewrites the `key = ...` line of the init template (each must occur exactly once).
fn set_keys(config: &Path, values: &[(&str, String)]) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut out = String::new();
    let mut seen = vec![0; values.len()];
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match values.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                seen[i] += 1;
                out.push_str(&format!("{key} = {}\n", values[i].1));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for ((key, _), n) in values.iter().zip(seen) {
        assert_eq!(n, 1, "`{key} =` occurs {n} times in the init template");
    }
    std::fs::write(config, out).unwrap();
}

/// One plain HTTP/1.0 GET; returns the whole response, or None when nobody answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_healthy(port: u16, server: &mut Killed, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(port, "/api/health").is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
        {
            return;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "portcullis serve exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "portcullis serve did not answer /api/health within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `tests/browser/<script>` under node with `vars` (plus the binary, Chromium and the
/// time limit); fails with its output and the gateway's log unless it exits 0.
fn run_script(script: &str, vars: &[(&str, String)], dir: &Path, server_log: &Path) {
    let out = dir.join(format!("{script}.out"));
    let err = dir.join(format!("{script}.err"));
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(browser_dir())
        .env("PORTCULLIS_BIN", bin())
        .env("CHROMIUM", CHROMIUM)
        .env("TIMEOUT_MS", SCRIPT_TIMEOUT.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut node = Killed(command.spawn().expect("spawn node"));
    let deadline = Instant::now() + SCRIPT_TIMEOUT + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = || {
        format!(
            "--- {script} stdout\n{}--- {script} stderr\n{}--- portcullis serve\n{}",
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(&err).unwrap_or_default(),
            std::fs::read_to_string(server_log).unwrap_or_default(),
        )
    };
    assert!(status.is_some(), "{script} did not finish in time:\n{}", report());
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} failed ({status:?}):\n{}",
        report()
    );
}

#[test]
fn portal_login_logout_and_enrollment_in_chromium() {
    require_browser_tools();
    let started = Instant::now();
    let env = Env::new("");
    let port = free_port();
    let portal = format!("http://127.0.0.1:{port}");
    set_keys(
        &env.config(),
        &[
            ("listen", format!("\"127.0.0.1:{port}\"")),
            ("portal_url", format!("\"{portal}\"")),
            ("default_redirect", format!("\"{portal}/\"")),
            ("demo_page", "true".into()),
            ("secure", "false".into()),
        ],
    );
    env.ok(&["config", "check"], None);

    let alice_password = "correct horse battery staple";
    let alice_secret = secret_of(&env.add_user("alice", alice_password, &[]));
    let bob_password = "bob's password";
    env.ok(
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--no-token",
            "--no-terminal-qr",
        ],
        Some(&format!("{bob_password}\n")),
    );

    let server_log = env.path().join("serve.log");
    let log_file = std::fs::File::create(&server_log).unwrap();
    let mut server = Killed(
        env.command(&["serve"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn portcullis serve"),
    );
    wait_healthy(port, &mut server, &server_log);

    let invite = env.ok(&["user", "invite", "bob"], None);
    let invite_url = invite
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{portal}/enroll/")))
        .unwrap_or_else(|| panic!("no enrollment link in `user invite` output:\n{invite}"))
        .to_string();

    let screenshots = fresh_dir(workspace_root().join("target/screenshots/portal"));
    run_script(
        "portal.mjs",
        &[
            ("PORTAL_URL", portal.clone()),
            ("PORTCULLIS_CONFIG", env.config().display().to_string()),
            ("SCREENSHOTS", screenshots.display().to_string()),
            ("ALICE_SECRET", alice_secret.clone()),
            ("ALICE_PASSWORD", alice_password.to_string()),
            ("INVITE_URL", invite_url.clone()),
            ("BOB_PASSWORD", bob_password.to_string()),
        ],
        env.path(),
        &server_log,
    );
    for name in [
        "01-login",
        "01-login-mobile",
        "02-code",
        "03-demo",
        "04-logout",
        "05-wrong-code",
        "06-enroll",
        "06-enroll-mobile",
        "07-enrolled",
        "08-bob-demo",
    ] {
        let png = screenshots.join(format!("{name}.png"));
        let head = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(head.starts_with(b"\x89PNG"), "{} is not a PNG", png.display());
    }
    drop(server);
    eprintln!(
        "browser test passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
}

/// An empty directory at `path` (an earlier run's screenshots must not pass for this run's).
fn fresh_dir(path: std::path::PathBuf) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

#[test]
fn reverse_proxy_login_and_the_apps_websocket_in_chromium() {
    require_browser_tools();
    let env = Env::new("");
    let password = "alice's long password";
    let secret = secret_of(&env.add_user("alice", password, &[]));
    let app = crate::proxy::App::start();
    let port = free_port();
    env.loopback_portal(port);
    let origin = format!("http://127.0.0.1:{port}");
    env.set("server", "portal_url", &format!("\"{origin}/.portcullis\""));
    env.set("proxy", "upstream", &format!("\"http://127.0.0.1:{}\"", app.port));
    let gw = env.serve();
    let screenshots = fresh_dir(workspace_root().join("target/screenshots/proxy"));
    run_script(
        "proxy.mjs",
        &[
            ("APP_URL", origin),
            ("PORTAL_PATH", "/.portcullis".to_string()),
            ("PORTCULLIS_CONFIG", env.config().display().to_string()),
            ("SCREENSHOTS", screenshots.display().to_string()),
            ("ALICE_SECRET", secret),
            ("ALICE_PASSWORD", password.to_string()),
        ],
        env.path(),
        &gw.log,
    );
    for name in ["proxy-login", "proxy-app"] {
        let png = std::fs::read(screenshots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}.png is not a PNG");
    }
}

/// Sets a flag when dropped, also when the test panics (a helper thread stops then).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The person with the phone: once a push for `user` has reached the stand-in, waits
/// `after` (the waiting page reloads meanwhile) and approves it. Gives up when `done`.
fn approve_when_pushed(duo: &crate::duo_standin::StandIn, user: &str, after: Duration, done: &AtomicBool) -> bool {
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    while duo.pushes(user) == 0 {
        if done.load(Ordering::SeqCst) || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let approve_at = Instant::now() + after;
    while Instant::now() < approve_at {
        if done.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    duo.approve(user);
    true
}

/// A gateway for the Duo test: loopback portal with the demo page, `[duo]` at the stand-in.
fn duo_gateway(duo: &crate::duo_standin::StandIn, extra: &str) -> Env {
    let env = Env::new(&duo.config_section(extra));
    env.loopback_portal(free_port());
    env.set("server", "demo_page", "true");
    env
}

/// Adds a user whose only second factor is Duo.
fn add_duo_user(env: &Env, name: &str, password: &str) {
    env.ok(
        &["user", "add", name, "--password-stdin", "--duo", "--no-terminal-qr"],
        Some(&format!("{password}\n")),
    );
}

/// Duo push logins in Chromium against the Duo stand-in (`tests/browser/duo.mjs`): with
/// JavaScript the waiting page waits in place, without it reloads itself until the push
/// (approved here, by hand) is answered; denied, unanswered (the timeout), enroll-first, a
/// token user's "Send a push", background requests that must send nothing; then Duo down
/// with failmode closed (503) and open (signed in, a WARN audit line). Screenshots in
/// `target/screenshots/duo/`.
#[test]
fn the_portal_signs_in_with_a_duo_push_with_and_without_javascript() {
    require_browser_tools();
    let started = Instant::now();
    let mut duo = crate::duo_standin::StandIn::start_new();
    let password = "duo users' long password";
    // A short approval timeout (the least allowed is 10 s) for timeout-frank's push.
    let env = duo_gateway(&duo, "timeout = 12");
    for user in ["alice", "manual-bob", "deny-carol", "enroll-dave", "timeout-frank"] {
        add_duo_user(&env, user, password);
    }
    env.add_user("erin", password, &[]);
    env.ok(&["user", "factor", "add", "erin", "duo"], None);
    let gw = env.serve();
    let screenshots = fresh_dir(workspace_root().join("target/screenshots/duo"));
    let vars = |phase: &str, open: Option<&Server>| {
        let mut v = vec![
            ("PHASE", phase.to_string()),
            ("PORTAL_URL", gw.url("")),
            ("PASSWORD", password.to_string()),
            ("SCREENSHOTS", screenshots.display().to_string()),
        ];
        v.extend(open.map(|o| ("OPEN_PORTAL_URL", o.url(""))));
        v
    };

    // Phase "up": the stand-in answers; manual-bob's push is approved from here.
    let done = AtomicBool::new(false);
    let approved = std::thread::scope(|s| {
        let approver = s.spawn(|| approve_when_pushed(&duo, "manual-bob", Duration::from_secs(4), &done));
        {
            let _stop = SetOnDrop(&done);
            run_script("duo.mjs", &vars("up", None), env.path(), &gw.log);
        }
        approver.join().unwrap()
    });
    assert!(approved, "manual-bob's push never reached the stand-in");
    // One push per login, none for the enroll-first user, none from the background
    // requests (after sign-out, after a denial, while a push waited, without a session).
    let stats = duo.stats();
    for user in ["alice", "manual-bob", "deny-carol", "erin", "timeout-frank"] {
        assert_eq!(duo.pushes(user), 1, "pushes to {user}: {stats}");
    }
    assert_eq!(duo.pushes("enroll-dave"), 0, "{stats}");
    assert_eq!(duo.all_pushes(), 5, "{stats}");
    assert_eq!(duo.bad_signatures(), 0, "{stats}");

    // Phase "down": Duo out of reach. This gateway fails closed; a second one, open.
    duo.stop();
    let open_env = duo_gateway(&duo, "failmode = \"open\"");
    add_duo_user(&open_env, "alice", password);
    let open_gw = open_env.serve();
    run_script("duo.mjs", &vars("down", Some(&open_gw)), open_env.path(), &open_gw.log);
    let open_log = open_gw.log_text();
    assert!(
        open_log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("warning=") && l.contains("alice")),
        "no WARN audit line with warning= for alice's failmode-open sign-in:\n{open_log}"
    );
    assert!(
        !gw.log_text().contains("warning="),
        "failmode closed skipped a push:\n{}",
        gw.log_text()
    );

    for name in [
        "up-alice-waiting-js",
        "up-alice-signed-in",
        "up-bob-waiting-nojs",
        "up-bob-signed-in-nojs",
        "up-carol-not-approved",
        "up-dave-enroll",
        "up-erin-code",
        "up-erin-waiting-js",
        "up-frank-timeout",
        "down-duo-unreachable",
        "down-failmode-open",
    ] {
        let png = std::fs::read(screenshots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}.png is not a PNG");
    }
    eprintln!(
        "Duo browser test passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
}

/// The passkeys in the store: `user|label|hex id|counter|discoverable|used`, one a line.
fn stored_passkeys(env: &Env) -> Vec<String> {
    require_tool("sqlite3");
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(env.path().join("portcullis.db"))
        .arg(
            "SELECT user, label, lower(hex(id)), counter, discoverable, last_used IS NOT NULL \
             FROM passkeys ORDER BY user, position",
        )
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Audit lines of `method` for `user`: successes (`reason` None) or refusals for `reason`.
fn audit_lines(log: &str, method: &str, user: &str, reason: Option<&str>) -> usize {
    log.lines()
        .filter(|l| l.contains("portcullis::audit"))
        .filter(|l| l.contains(&format!("method=\"{method}\"")) && l.contains(&format!("user=\"{user}\"")))
        .filter(|l| match reason {
            None => l.contains("result=\"success\""),
            Some(r) => l.contains("result=\"failure\"") && l.contains(&format!("reason=\"{r}\"")),
        })
        .count()
}

/// Passkeys (WebAuthn) in Chromium with a virtual authenticator driven over the DevTools
/// protocol (`tests/browser/passkey.mjs`), portal at `http://localhost:PORT` (an RP ID is
/// never an IP address), `[webauthn] passwordless = true`. Phase "passkeys": alice adds a
/// passkey on /settings, signs in with password + passkey and with the passkey alone; a
/// replayed assertion, a cloned key (its counter put back), a phishing proxy on another
/// origin, the portal under other host names, an authenticator pulled mid-ceremony and bob
/// registering alice's credential ID are refused. Checked here: the refusals' audit lines
/// and the store (one passkey, alice's, its counter the authenticator's). Phase "removal":
/// a new browser with the same credential signs in, removes it, falls back to the code,
/// and the removed key signs nobody in. Screenshots in `target/screenshots/passkey/`.
#[test]
fn the_portal_signs_in_with_passkeys_and_refuses_replays_clones_and_other_origins() {
    require_browser_tools();
    require_tool("sqlite3");
    let started = Instant::now();
    let env = Env::new("");
    let port = free_port();
    env.loopback_portal(port);
    let portal = format!("http://localhost:{port}");
    env.set("server", "portal_url", &format!("\"{portal}\""));
    env.set("server", "default_redirect", &format!("\"{portal}/\""));
    env.set("server", "demo_page", "true");
    env.set("webauthn", "passwordless", "true");
    // Every refusal in the script comes from 127.0.0.1; five within find_time would ban it.
    env.set("regulation", "max_retries", "20");
    env.ok(&["config", "check"], None);
    let alice_password = "alice's passkey test password";
    let alice_secret = secret_of(&env.add_user("alice", alice_password, &[]));
    let bob_password = "bob's passkey test password";
    let bob_secret = secret_of(&env.add_user("bob", bob_password, &[]));
    let gw = env.serve();
    let screenshots = fresh_dir(workspace_root().join("target/screenshots/passkey"));
    let state_file = env.path().join("passkey-state.json");
    let vars = |phase: &str| {
        vec![
            ("PHASE", phase.to_string()),
            ("PORTAL_URL", portal.clone()),
            ("PORTCULLIS_CONFIG", env.config().display().to_string()),
            ("STATE", state_file.display().to_string()),
            ("SCREENSHOTS", screenshots.display().to_string()),
            ("ALICE_SECRET", alice_secret.clone()),
            ("ALICE_PASSWORD", alice_password.to_string()),
            ("BOB_SECRET", bob_secret.clone()),
            ("BOB_PASSWORD", bob_password.to_string()),
        ]
    };

    run_script("passkey.mjs", &vars("passkeys"), env.path(), &gw.log);
    let log = gw.log_text();
    for (method, user, reason, n) in [
        ("passkey-register", "alice", None, 1),
        // Password + passkey: the first, after the replays, after the clone, the phished tab's.
        ("portal-passkey", "alice", None, 4),
        ("portal-passwordless", "alice", None, 1),
        // The captured assertion in a new session: its ceremony is gone.
        ("portal-passkey", "alice", Some("replayed"), 1),
        // The captured assertion in a fresh ceremony (another challenge); the phishing proxy.
        ("portal-passkey", "alice", Some("bad_passkey"), 2),
        // Its captured passwordless assertion in a fresh ceremony; the phishing proxy.
        ("portal-passwordless", "alice", Some("bad_passkey"), 2),
        ("portal-passkey", "alice", Some("cloned_passkey"), 1),
        // Alice's registration answer posted into bob's ceremony (400), and bob's own with
        // alice's credential ID swapped in (409, registered already).
        ("passkey-register", "bob", Some("bad_passkey"), 2),
        ("passkey-register", "bob", None, 0),
    ] {
        assert_eq!(
            audit_lines(&log, method, user, reason),
            n,
            "audit lines method={method} user={user} reason={reason:?}:\n{log}"
        );
    }
    assert!(!log.contains("banned=true"), "a refusal banned someone:\n{log}");
    // The store: alice's one passkey, discoverable, used, its counter where the virtual
    // authenticator's is (the clone's lower one was never stored); nothing for bob.
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let id = state["credentialHex"]
        .as_str()
        .expect("credentialHex in the state file");
    let count = state["credential"]["signCount"]
        .as_u64()
        .expect("signCount in the state file");
    assert_eq!(stored_passkeys(&env), [format!("alice|laptop|{id}|{count}|1|1")]);
    // `user show` lists the passkey, and shows that no refusal locked alice out.
    let shown = env.ok(&["user", "show", "alice"], None);
    assert!(shown.contains("failures:     0"), "user show alice:\n{shown}");
    assert!(
        shown.contains("passkey:      \"laptop\"") && shown.contains("passwordless"),
        "user show alice:\n{shown}"
    );

    run_script("passkey.mjs", &vars("removal"), env.path(), &gw.log);
    assert_eq!(
        stored_passkeys(&env),
        Vec::<String>::new(),
        "passkeys left after the removal"
    );
    let log = gw.log_text();
    assert_eq!(
        audit_lines(&log, "portal-passwordless", "-", Some("bad_passkey")),
        1,
        "no refusal of the removed passkey:\n{log}"
    );
    assert_eq!(audit_lines(&log, "portal-passkey", "alice", None), 5, "{log}");

    for name in [
        "passkeys-settings-added",
        "passkeys-code-page-with-passkey",
        "passkeys-signed-in-with-passkey",
        "passkeys-login-with-passwordless",
        "passkeys-signed-in-passwordless",
        "passkeys-cloned-passkey-refused",
        "passkeys-authenticator-pulled",
        "passkeys-other-authenticator",
        "passkeys-phishing-proxy-refused",
        "passkeys-other-host-refused",
        "passkeys-bob-duplicate-refused",
        "removal-settings-removed",
        "removal-code-page-without-passkey",
        "removal-removed-passkey-refused",
    ] {
        let png = std::fs::read(screenshots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "{name}.png is not a PNG");
    }
    eprintln!(
        "passkey browser test passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
}

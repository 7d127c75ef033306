//! Reverse-proxy mode: `portcullis serve` with `[proxy] upstream` in front of a real app
//! (aiohttp from Debian's python3-aiohttp): the portal under its own path on the app's
//! host, identity headers, Host kept, spoofed headers dropped, streamed bodies both ways,
//! a WebSocket echo, and the app going away.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};

const PYTHON: &str = "/usr/bin/python3";

fn app_script() -> String {
    format!("{}/tests/e2e/upstream_app.py", env!("CARGO_MANIFEST_DIR"))
}

/// The aiohttp app, killed when dropped.
pub(crate) struct App {
    child: Child,
    pub(crate) port: u16,
}

impl App {
    pub(crate) fn start() -> App {
        let ok = Command::new(PYTHON)
            .args(["-c", "import aiohttp"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3-aiohttp is not installed; run .ci/run or apt-get install python3-aiohttp"
        );
        let port = free_port();
        let app = App {
            child: Command::new(PYTHON)
                .args([&app_script(), "serve", &port.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
            port,
        };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return app;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the upstream app did not start");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes `/big` sends: chunk i of 64 KiB is a window into 0..251 repeated.
fn expected_big(mib: usize) -> Vec<u8> {
    let base: Vec<u8> = (0..263).flat_map(|_| 0u8..251).collect();
    (0..mib * 16)
        .flat_map(|i| base[i % 251..i % 251 + 65536].to_vec())
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A header the app saw (last value), from its `/headers` JSON.
pub(crate) fn seen<'a>(json: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == name)
        .map(|p| p[1].as_str().unwrap())
        .collect()
}

/// A gateway in proxy mode in front of `app`, its portal under `/.portcullis`.
fn gateway(env: &Env, app: &App) -> (Server, String) {
    let port = free_port();
    env.loopback_portal(port);
    let portal = format!("http://127.0.0.1:{port}/.portcullis");
    env.set("server", "portal_url", &format!("\"{portal}\""));
    env.set("proxy", "upstream", &format!("\"http://127.0.0.1:{}\"", app.port));
    (env.serve(), portal)
}

pub(crate) fn ws(url: &str, headers: &[&str]) -> serde_json::Value {
    ws_trusting(url, headers, None)
}

/// `ws`, trusting `ca` for a wss:// URL.
pub(crate) fn ws_trusting(url: &str, headers: &[&str], ca: Option<&std::path::Path>) -> serde_json::Value {
    let mut command = Command::new(PYTHON);
    command.args([app_script().as_str(), "ws", url]).args(headers);
    if let Some(ca) = ca {
        command.env("PORTCULLIS_TEST_CA", ca);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn proxy_mode_protects_an_app_with_portal_basic_streaming_and_websocket() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("alice", "correct horse", &["--group", "staff"]));
    let app = App::start();
    let (gw, portal) = gateway(&env, &app);
    let page = gw.url("/headers");

    // No session: a browser goes to the portal under its own path, a script gets 401;
    // the app's own /login is the app's, not the portal's.
    let r = curl(&["-H", "Accept: text/html", &page]);
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.header("location").unwrap();
    assert_eq!(location, format!("{portal}/login?rd={}", urlencode(&page)));
    assert_eq!(curl(&[&page]).status, 401);
    assert_eq!(curl(&[&gw.url("/login")]).status, 401);

    // Log in through the portal, then the app is reached with the gateway's identity.
    settle(8);
    let browser = Browser::new(&env, "alice");
    let r = browser.login_at(&portal, "alice", "correct horse", &code_now(&env, &secret), &page);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(page.as_str()));
    let session = browser.cookie("portcullis_session").unwrap();
    let r = browser.get(
        &page,
        &[
            "-H",
            "Remote-User: root",
            "-H",
            "Remote_Groups: admins",
            "-H",
            "Cookie: theme=dark",
            "-H",
            "X-Forwarded-Host: wiki.example.org",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen_by_app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen_by_app["host"], format!("127.0.0.1:{}", gw.port), "Host is kept");
    assert_eq!(seen(&seen_by_app, "remote-user"), ["alice"]);
    assert_eq!(seen(&seen_by_app, "remote-groups"), ["staff"]);
    assert!(seen(&seen_by_app, "remote_groups").is_empty(), "{}", r.body);
    // Loopback is a trusted proxy by default, so its X-Forwarded-Host names the request.
    assert_eq!(seen(&seen_by_app, "x-forwarded-host"), ["wiki.example.org"]);
    let cookies = seen(&seen_by_app, "cookie").join("; ");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(
        !cookies.contains(&session),
        "the session cookie stays with the gateway: {cookies}"
    );

    // HTTP Basic with password+code: the app sees the user, never the credentials. The
    // portal's code is used up (issue 9.3), so Basic takes the next step's code.
    let code = code_next_step(&env, &secret);
    let creds = format!("alice:correct horse{code}");
    let r = curl(&["-u", &creds, "-H", "Host: wiki.example.test", &page]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen_by_app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen_by_app["host"], "wiki.example.test", "Host is kept");
    assert_eq!(seen(&seen_by_app, "remote-user"), ["alice"]);
    assert!(seen(&seen_by_app, "authorization").is_empty(), "{}", r.body);

    // A large download streams through intact, without the gateway holding it.
    let download = env.path().join("big.bin");
    let r = browser.get(&gw.url("/big?mib=192"), &["-o", download.to_str().unwrap()]);
    let file = std::fs::read(&download).unwrap();
    // curl -i writes the response head into the file too.
    let body_at = file.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        file.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&file[..body_at])
    );
    let got = &file[body_at..];
    assert_eq!(got.len(), 192 << 20, "{}", r.body);
    assert!(got == expected_big(192), "the download changed on the way");
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib < 96 * 1024,
        "the gateway buffered the body: peak RSS {peak_kib} KiB"
    );

    // A large upload streams to the app intact.
    let upload = env.path().join("up.bin");
    let body: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&upload, &body).unwrap();
    let r = browser.get(
        &gw.url("/upload"),
        &[
            "--data-binary",
            &format!("@{}", upload.display()),
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let reply: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(reply["length"], body.len());
    assert_eq!(reply["sha256"], hex_sha256(&body));

    // A WebSocket echo with the session; without one the handshake is refused.
    let ws_url = format!("ws://127.0.0.1:{}/ws", gw.port);
    let cookie = format!("Cookie: portcullis_session={session}");
    let echo = ws(&ws_url, &[&cookie, "Remote-User: root"]);
    assert_eq!(echo["text"], "hello through the gate", "{echo}");
    assert_eq!(echo["binary_intact"], true, "{echo}");
    assert_eq!(echo["who"], "user=alice", "{echo}");
    assert_eq!(ws(&ws_url, &[])["refused"], 401);

    // The app gone: a clear 502, not a hang.
    drop(app);
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 502, "{}", r.body);

    // Logging out ends access through the proxy too.
    browser.logout_at(&portal);
    assert_eq!(browser.get(&page, &["-H", "Accept: text/html"]).status, 302);
    let log = gw.log_text();
    assert!(!log.contains("correct horse"), "{log}");
}

#[test]
fn proxy_mode_behind_apache_proxypass_with_the_contrib_snippet() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("bob", "battery staple", &[]));
    let app = App::start();
    let apache_port = free_port();
    // The portal's URL is Apache's: people only ever see Apache.
    let gw_port = free_port();
    env.loopback_portal(gw_port);
    let portal = format!("http://127.0.0.1:{apache_port}/.portcullis");
    env.set("server", "portal_url", &format!("\"{portal}\""));
    env.set("proxy", "upstream", &format!("\"http://127.0.0.1:{}\"", app.port));
    let gw = env.serve();
    let dir = env.path().join("apache");
    std::fs::create_dir_all(&dir).unwrap();
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/apache/portcullis-reverse-proxy.conf"
    ))
    .unwrap()
    .replace("127.0.0.1:9091", &format!("127.0.0.1:{gw_port}"));
    std::fs::write(dir.join("portcullis-reverse-proxy.conf"), snippet).unwrap();
    let apache = crate::apache_server::Apache::start(
        &dir,
        apache_port,
        &[
            ("mpm_prefork_module", "mod_mpm_prefork.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("proxy_module", "mod_proxy.so"),
            ("proxy_http_module", "mod_proxy_http.so"),
            ("log_config_module", "mod_log_config.so"),
            ("unixd_module", "mod_unixd.so"),
        ],
        &format!("Include {}/portcullis-reverse-proxy.conf\n", dir.display()),
    );
    let page = apache.url("/headers");

    let r = curl(&["-H", "Accept: text/html", &page]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location").unwrap(),
        format!("{portal}/login?rd={}", urlencode(&page))
    );
    settle(8);
    let browser = Browser::new(&env, "bob");
    let r = browser.login_at(&portal, "bob", "battery staple", &code_now(&env, &secret), &page);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = browser.get(&page, &["-H", "Remote-User: root"]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen_by_app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen_by_app["host"], format!("127.0.0.1:{apache_port}"), "Host is kept");
    assert_eq!(seen(&seen_by_app, "remote-user"), ["bob"]);

    let download = env.path().join("big.bin");
    browser.get(&apache.url("/big?mib=64"), &["-o", download.to_str().unwrap()]);
    let file = std::fs::read(&download).unwrap();
    let body_at = file.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(file[body_at..] == expected_big(64), "the download changed on the way");

    let session = browser.cookie("portcullis_session").unwrap();
    let ws_url = format!("ws://127.0.0.1:{apache_port}/ws");
    let echo = ws(&ws_url, &[&format!("Cookie: portcullis_session={session}")]);
    assert_eq!(echo["binary_intact"], true, "{echo}");
    assert_eq!(echo["who"], "user=bob", "{echo}");
    assert_eq!(ws(&ws_url, &[])["refused"], 401);
    assert!(
        apache.access_log().contains("\"GET /headers HTTP/1.1\" 200"),
        "{}",
        apache.access_log()
    );
    drop(gw);
}

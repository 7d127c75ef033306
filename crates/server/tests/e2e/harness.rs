//! The test harness: a temp dir with an initialised config, and helpers to run the binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One test's world: a directory holding portcullis.toml and its store.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// Stops `child` with SIGTERM, so a parent (apache2, runuser) can stop what it started, and
/// waits up to 5 s for it; SIGKILL only if that hangs.
pub fn terminate(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Fails the test if a required external tool is missing (`.ci/run` installs them).
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed; run .ci/run or apt-get install the package that has it"
    );
}

impl Env {
    /// `portcullis init` in a fresh temp dir, with extra TOML appended to the config.
    pub fn new(extra_config: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env { dir };
        let out = env.run(&["init", "--dir", env.dir.path().to_str().unwrap()], None);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !extra_config.is_empty() {
            let mut f = std::fs::OpenOptions::new().append(true).open(env.config()).unwrap();
            writeln!(f, "{extra_config}").unwrap();
        }
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    /// Builds a command with the config set through the environment (as users do).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("PORTCULLIS_CONFIG", self.config())
            .current_dir(self.path());
        c
    }

    /// Runs the binary with `stdin` piped in, and returns its output.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.command(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn portcullis");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "portcullis {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a user with a password and returns the otpauth:// URI printed for it.
    pub fn add_user(&self, name: &str, password: &str, extra: &[&str]) -> String {
        let mut args = vec!["user", "add", name, "--password-stdin", "--no-terminal-qr"];
        args.extend_from_slice(extra);
        let out = self.ok(&args, Some(&format!("{password}\n")));
        uri_in(&out)
    }

    /// `verify`: returns (exit code, stdout).
    pub fn verify(&self, user: &str, password: Option<&str>, code: &str) -> (i32, String) {
        let mut args = vec!["verify", user, code];
        if password.is_some() {
            args.push("--password-stdin");
        }
        let out = self.run(&args, password.map(|p| format!("{p}\n")).as_deref());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// The first otpauth:// URI in some output.
pub fn uri_in(output: &str) -> String {
    output
        .lines()
        .find(|l| l.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no URI in:\n{output}"))
        .trim()
        .to_string()
}

/// The `secret=` parameter of a URI.
pub fn secret_of(uri: &str) -> String {
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_string()
}

/// The base32 key an enrollment page shows (in its otpauth:// URI); panics if there is none.
pub fn shown_key(body: &str) -> String {
    body.split("secret=")
        .nth(1)
        .and_then(|r| r.split(['&', '"']).next())
        .unwrap_or_else(|| panic!("the page shows no key: {body}"))
        .to_string()
}

/// Unix time now (tests may read the wall clock).
#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until at least `margin` seconds remain in the current 30 s step, so a code
/// computed now is still current when it is verified.
pub fn settle(margin: i64) {
    let left = 30 - now().rem_euclid(30);
    if left < margin {
        std::thread::sleep(std::time::Duration::from_secs(left as u64 + 1));
    }
}

/// The current TOTP code of a base32 secret, computed by the binary's `otp code`.
pub fn code_now(env: &Env, secret: &str) -> String {
    env.ok(&["otp", "code", "--secret", secret], None).trim().to_string()
}

/// The TOTP code of the next 30 s step: a code the current step's login has not used up.
pub fn code_next_step(env: &Env, secret: &str) -> String {
    env.ok(
        &["otp", "code", "--secret", secret, "--time", &(now() + 30).to_string()],
        None,
    )
    .trim()
    .to_string()
}

/// The HOTP code of a hex key at `counter`.
pub fn hotp_hex(env: &Env, key_hex: &str, counter: u64) -> String {
    env.ok(
        &[
            "otp",
            "code",
            "--secret",
            key_hex,
            "--hex",
            "--type",
            "hotp",
            "--counter",
            &counter.to_string(),
        ],
        None,
    )
    .trim()
    .to_string()
}

pub use crate::ports::free_port;

impl Env {
    /// Sets `key = value` (TOML text) in `[section]` of the config, replacing the key if the
    /// section has it, else adding it right after the section header.
    pub fn set(&self, section: &str, key: &str, value: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let header = format!("[{section}]");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut current = String::new();
        let mut header_at = None;
        let mut key_at = None;
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            if t.starts_with('[') {
                current = t.to_string();
                if t == header {
                    header_at = Some(i);
                }
            } else if current == header && t.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
                key_at = Some(i);
            }
        }
        let entry = format!("{key} = {value}");
        match (key_at, header_at) {
            (Some(i), _) => lines[i] = entry,
            (None, Some(h)) => lines.insert(h + 1, entry),
            (None, None) => {
                lines.push(header);
                lines.push(entry);
            }
        }
        std::fs::write(self.config(), lines.join("\n") + "\n").unwrap();
    }

    /// Keeps users and tokens in the PostgreSQL database at `url` (no TLS: loopback), and
    /// sessions in memory (a PostgreSQL directory keeps none).
    pub fn on_postgres(&self, url: &str) {
        self.set("store", "backend", "\"postgres\"");
        self.set("store", "url", &format!("{url:?}"));
        self.set("store", "sslmode", "\"disable\"");
        self.set("session", "store", "\"memory\"");
    }

    /// Keeps sessions, regulation and invitations in the Redis server at `url`.
    pub fn on_redis(&self, url: &str) {
        self.set("state", "backend", "\"redis\"");
        self.set("state", "url", &format!("{url:?}"));
    }

    /// Makes the config serve a plain-HTTP loopback portal on `port`.
    pub fn loopback_portal(&self, port: u16) {
        let url = format!("\"http://127.0.0.1:{port}\"");
        self.set("server", "listen", &format!("\"127.0.0.1:{port}\""));
        self.set("server", "portal_url", &url);
        self.set("server", "default_redirect", &format!("\"http://127.0.0.1:{port}/\""));
        self.set("session", "secure", "false");
    }

    /// Starts `portcullis serve` and waits until `/api/health` answers.
    pub fn serve(&self) -> Server {
        let mut server = self.start_serving();
        server.wait_listening(std::time::Duration::from_secs(5));
        server
    }

    /// Starts `portcullis serve` without waiting for it.
    pub fn start_serving(&self) -> Server {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let port: u16 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|p| p.trim_end_matches('"').parse().ok())
            .expect("call loopback_portal first");
        let log = self.path().join(format!("gateway-{port}.log"));
        let child = self
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start portcullis serve");
        Server { child, port, log }
    }
}

/// A running gateway, stopped when dropped.
pub struct Server {
    child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits up to `limit` until this gateway (alive) accepts connections on its port.
    pub fn wait_listening(&mut self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            // Whoever answers on the port, it must be this child, alive.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("portcullis serve exited ({status}):\n{}", self.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("portcullis serve exited ({status}):\n{}", self.log_text());
                }
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("portcullis serve did not start within {limit:?}:\n{}", self.log_text());
    }

    /// How the gateway ended, if it has (waits up to `limit`).
    pub fn exited_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP exchange done with curl (no redirects followed).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The hidden CSRF token of a form page.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("no csrf field") + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

/// Runs curl with `args` (plus -s, headers captured) and parses the reply.
pub fn curl(args: &[&str]) -> Reply {
    require_tool("curl");
    let out = Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_reply(&String::from_utf8_lossy(&out.stdout))
}

/// A raw HTTP/1.1 answer as a `Reply` (interim 1xx answers skipped).
pub fn parse_reply(text: &str) -> Reply {
    let (mut head, mut body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    // Interim answers (100 Continue) come first; the reply is the final one.
    while head.starts_with("HTTP/1.1 1") && body.starts_with("HTTP/") {
        (head, body) = body.split_once("\r\n\r\n").unwrap_or((body, ""));
    }
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A browser-like client: a cookie jar file and the portal's forms.
pub struct Browser {
    pub jar: PathBuf,
    pub interface: Option<&'static str>,
    /// The CA to trust for https:// URLs.
    pub ca: Option<PathBuf>,
    /// curl `--resolve` entries (`host:port:127.0.0.1`): names for loopback servers.
    pub resolve: Vec<String>,
}

impl Browser {
    pub fn new(env: &Env, name: &str) -> Browser {
        Browser {
            jar: env.path().join(format!("{name}.jar")),
            interface: None,
            ca: None,
            resolve: Vec::new(),
        }
    }

    pub fn get(&self, url: &str, extra: &[&str]) -> Reply {
        let jar = self.jar.to_str().unwrap();
        let mut args = vec!["-b", jar, "-c", jar];
        if let Some(i) = self.interface {
            args.extend(["--interface", i]);
        }
        let ca = self.ca.as_ref().map(|p| p.display().to_string());
        if let Some(ca) = &ca {
            args.extend(["--cacert", ca.as_str()]);
        }
        for r in &self.resolve {
            args.extend(["--resolve", r.as_str()]);
        }
        args.extend_from_slice(extra);
        args.push(url);
        curl(&args)
    }

    pub fn post(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        let mut data = Vec::new();
        for (k, v) in form {
            data.push("--data-urlencode".to_string());
            data.push(format!("{k}={v}"));
        }
        let refs: Vec<&str> = data.iter().map(String::as_str).collect();
        self.get(url, &refs)
    }

    /// The value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.jar).ok()?;
        text.lines()
            .filter(|l| !l.starts_with("# ") && !l.is_empty())
            .find_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 7 && f[5] == name).then(|| f[6].to_string())
            })
    }

    /// Signs out through the portal under `portal`: the confirmation page, then its form.
    pub fn logout_at(&self, portal: &str) -> Reply {
        let page = self.get(&format!("{portal}/logout"), &[]);
        assert_eq!(page.status, 200, "{}", page.body);
        self.post(&format!("{portal}/logout"), &[("csrf", &page.csrf())])
    }

    /// Password step then code step through the portal, from a fresh cookie jar; returns
    /// the final reply.
    pub fn login(&self, gw: &Server, user: &str, password: &str, code: &str, rd: &str) -> Reply {
        self.login_at(&gw.url(""), user, password, code, rd)
    }

    /// `login` through the portal whose pages are under `portal` (`http://host:port/base`).
    pub fn login_at(&self, portal: &str, user: &str, password: &str, code: &str, rd: &str) -> Reply {
        let _ = std::fs::remove_file(&self.jar);
        let page = self.get(&format!("{portal}/login?rd={}", urlencode(rd)), &[]);
        let r = self.post(
            &format!("{portal}/login"),
            &[
                ("csrf", &page.csrf()),
                ("rd", rd),
                ("username", user),
                ("password", password),
            ],
        );
        if r.status != 303 {
            return r;
        }
        let page = self.get(&format!("{portal}/login/code?rd={}", urlencode(rd)), &[]);
        self.post(
            &format!("{portal}/login/code"),
            &[("csrf", &page.csrf()), ("rd", rd), ("code", code)],
        )
    }
}

/// Percent-encodes a query value.
pub fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends `request` as it is (any bytes, any header twice) and returns the parsed reply.
pub fn raw_http(port: u16, request: &[u8]) -> Reply {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_reply(&String::from_utf8_lossy(&buf))
}

/// A `/proc/PID/status` field in KiB (`VmHWM`, `VmRSS`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs the binary once for each argument list, all released at the same moment (so a race
/// is a race, not a queue): each says it is ready on one FIFO, then waits for a byte on
/// another, which this side writes only when every one of them is ready. Both FIFOs are
/// held open read-write here, so no open blocks and no read sees an early end. Returns (exit
/// code, stdout and stderr) of each, in order.
pub fn race(env: &Env, runs: &[Vec<String>]) -> Vec<(i32, String)> {
    use std::io::Read;
    let tag = free_port();
    let (ready_path, start_path) = (
        env.path().join(format!("ready-{tag}")),
        env.path().join(format!("start-{tag}")),
    );
    for p in [&ready_path, &start_path] {
        assert!(
            Command::new("mkfifo").arg(p).status().unwrap().success(),
            "mkfifo {}",
            p.display()
        );
    }
    let rw = |p: &Path| std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let (mut ready, mut start) = (rw(&ready_path), rw(&start_path));
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            Command::new("sh")
                .arg("-c")
                .arg("printf x > \"$1\"; shift; read _ < \"$0\"; exec \"$@\"")
                .arg(&start_path)
                .arg(&ready_path)
                .arg(bin())
                .args(args)
                .env("PORTCULLIS_CONFIG", env.config())
                .current_dir(env.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = vec![0u8; runs.len()];
    ready.read_exact(&mut seen).unwrap();
    // All have started; a moment for the last to reach its read, then the gun.
    std::thread::sleep(std::time::Duration::from_millis(50));
    start.write_all(&vec![b'\n'; runs.len()]).unwrap();
    let out = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
            )
        })
        .collect();
    let _ = std::fs::remove_file(&ready_path);
    let _ = std::fs::remove_file(&start_path);
    out
}

/// Asserts that exactly one of `results` accepted and every other one was refused as a
/// replay (never a store error such as "database is locked").
pub fn one_winner_rest_replays(results: &[(i32, String)], what: &str) {
    let winners = results.iter().filter(|(code, _)| *code == 0).count();
    assert_eq!(winners, 1, "{what}: {winners} accepted: {results:?}");
    for (code, out) in results.iter().filter(|(code, _)| *code != 0) {
        assert!(
            *code == 1 && (out.contains("already used") || out.contains("replay")),
            "{what}: a loser failed for another reason ({code}): {out}"
        );
    }
}

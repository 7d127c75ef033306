//! pam_portcullis.so loaded by real PAM applications: pamtester, Debian's pam_oath on the
//! same users file, and a real sshd/sftp login scripted with pexpect. These need root (they
//! write /etc/pam.d/portcullis-test-* and add a Unix user; both are removed afterwards).

use crate::harness::{Env, code_now, free_port, now, require_tool, secret_of, settle};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds the cdylib into the target dir this test binary lives in (same profile), once.
/// `cargo test` builds only the rlib of a library the tests do not link, so ask cargo.
pub(crate) fn module() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/e2e-<hash> → target/<profile> → target
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let target = profile_dir.parent().unwrap();
            let profile = profile_dir.file_name().unwrap().to_str().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.args(["build", "-q", "-p", "pam-portcullis", "--manifest-path"])
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
                .env("CARGO_TARGET_DIR", target);
            match profile {
                "debug" => {}
                "release" => {
                    c.arg("--release");
                }
                other => {
                    c.args(["--profile", other]);
                }
            }
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "building pam_portcullis.so failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let so = profile_dir.join("libpam_portcullis.so");
            assert!(so.exists(), "{} missing after the build", so.display());
            so
        })
        .clone()
}

pub(crate) fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the PAM tests write /etc/pam.d and add a Unix user: run them as root (scripts/test in CI)"
    );
}

pub(crate) fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A PAM service file in /etc/pam.d, removed on drop (also when the test panics).
pub(crate) struct Service {
    pub(crate) name: String,
}

impl Service {
    pub(crate) fn new(name: String, text: &str) -> Service {
        let path = Path::new("/etc/pam.d").join(&name);
        assert!(!path.exists(), "{} exists already", path.display());
        std::fs::write(&path, text).unwrap();
        Service { name }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new("/etc/pam.d").join(&self.name));
    }
}

/// The module's syslog socket for one test: what it would have sent to /dev/log.
pub(crate) struct LogSocket {
    pub(crate) path: PathBuf,
    socket: UnixDatagram,
}

impl LogSocket {
    pub(crate) fn new(dir: &Path) -> LogSocket {
        let path = dir.join("log.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        LogSocket { path, socket }
    }

    /// The `reason` of each line received so far.
    pub(crate) fn reasons(&self) -> Vec<String> {
        reasons_of(&self.drain())
    }

    /// The datagrams received so far.
    pub(crate) fn drain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        lines
    }
}

/// The `reason="…"` of each log line (`?` where a line has none).
pub(crate) fn reasons_of(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// pamtester SERVICE USER authenticate with `answer` on stdin (pamtester's conversation
/// reads stdin when it is not a terminal); true on success.
pub(crate) fn pamtester(service: &str, user: &str, rhost: Option<&str>, answer: &str) -> bool {
    let mut c = Command::new("pamtester");
    if let Some(r) = rhost {
        c.args(["-I", &format!("rhost={r}")]);
    }
    c.args([service, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let written = child.stdin.take().unwrap().write_all(format!("{answer}\n").as_bytes());
    // A login that needs no answer (a trusted network) may end before we write: pamtester
    // has closed its stdin then, which is not a failure of the test.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing to pamtester: {e}");
    }
    child.wait_with_output().unwrap().status.success()
}

pub(crate) fn service_text(module_line: &str) -> String {
    format!("auth required {module_line}\naccount required pam_permit.so\n")
}

#[test]
fn pamtester_accepts_right_codes_and_rejects_wrong_replayed_and_locked() {
    require_root();
    require_tool("pamtester");
    require_tool("fail2ban-regex");
    let env = Env::new("");
    let alice = secret_of(&env.add_user("alice", "pw", &[]));
    let dave = secret_of(&env.add_user("dave", "pw", &[]));
    let log = LogSocket::new(env.path());
    let so = module();
    let svc = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} config={} trusted_networks=10.0.0.0/8 log_socket={}",
            so.display(),
            env.config().display(),
            log.path.display()
        )),
    );
    settle(8);
    let code = code_now(&env, &alice);
    assert!(pamtester(&svc.name, "alice", Some("203.0.113.5"), &code), "right code");
    assert!(
        !pamtester(&svc.name, "alice", Some("203.0.113.5"), &code),
        "replayed code"
    );
    assert!(
        !pamtester(&svc.name, "alice", Some("203.0.113.6"), "000000"),
        "wrong code"
    );
    env.ok(&["user", "lock", "dave"], None);
    assert!(
        !pamtester(&svc.name, "dave", Some("203.0.113.7"), &code_now(&env, &dave)),
        "locked"
    );
    assert!(
        pamtester(&svc.name, "alice", Some("10.1.2.3"), ""),
        "trusted network, no code"
    );
    let hostile = "x\" client=10.6.6.6 result=\"failure";
    assert!(!pamtester(&svc.name, hostile, Some("203.0.113.8"), "1"));

    let lines = log.drain();
    let reasons = reasons_of(&lines);
    assert_eq!(
        reasons,
        [
            "code",
            "replayed",
            "wrong_code",
            "locked",
            "trusted_network",
            "unknown_user"
        ],
        "{lines:#?}"
    );
    assert!(lines[0].starts_with("<38>"), "{}", lines[0]);
    assert!(
        lines[0].contains("pamtester[")
            && lines[0].contains(&format!(
                "]: pam_portcullis({}:auth): auth client=203.0.113.5 result=\"success\" reason=\"code\" user=\"alice\"",
                svc.name
            )),
        "{}",
        lines[0]
    );
    assert!(!lines.iter().any(|l| l.contains(&code)), "codes are never logged");

    // As rsyslog stores them: <PRI> dropped, the host name after the time stamp.
    let stored: String = lines
        .iter()
        .map(|l| {
            let l = l.split_once('>').unwrap().1;
            format!("{} testhost {}\n", &l[..15], &l[16..])
        })
        .collect();
    let file = env.path().join("auth.log");
    std::fs::write(&file, stored).unwrap();
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/fail2ban/filter.d/portcullis-sshd.conf"
    );
    let out = Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(&file)
        .arg(filter)
        .output()
        .unwrap();
    let ips = String::from_utf8_lossy(&out.stdout).into_owned();
    let ips: Vec<&str> = ips.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        ips,
        ["203.0.113.5", "203.0.113.6", "203.0.113.7", "203.0.113.8"],
        "every failure once, always the real client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pamtester_fails_closed_when_the_store_is_missing() {
    require_root();
    require_tool("pamtester");
    let env = Env::new("");
    let alice = secret_of(&env.add_user("alice", "pw", &[]));
    let log = LogSocket::new(env.path());
    let svc = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} config={} nullok log_socket={}",
            module().display(),
            env.config().display(),
            log.path.display()
        )),
    );
    std::fs::remove_file(env.path().join("portcullis.db")).unwrap();
    settle(5);
    assert!(!pamtester(
        &svc.name,
        "alice",
        Some("203.0.113.5"),
        &code_now(&env, &alice)
    ));
    assert!(!env.path().join("portcullis.db").exists(), "no empty store created");
    let lines = log.drain();
    assert!(
        lines.len() == 1 && lines[0].contains("result=\"error\" reason=\"store_error\""),
        "{lines:?}"
    );
}

#[test]
fn a_hand_written_pam_oath_users_file_works_unchanged_and_pam_oath_sees_the_replay() {
    require_root();
    require_tool("pamtester");
    let pam_oath = Path::new("/usr/lib/x86_64-linux-gnu/security/pam_oath.so");
    assert!(pam_oath.exists(), "apt-get install libpam-oath");
    let env = Env::new("");
    let hex = "3132333435363738393031323334353637383930";
    let users = env.path().join("users.oath");
    std::fs::write(&users, format!("HOTP/T30/6\tcarol\t-\t{hex}\n")).unwrap();
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ours = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} usersfile={} window=1 digits=6 log_socket={}",
            module().display(),
            users.display(),
            env.path().join("none.sock").display()
        )),
    );
    let theirs = Service::new(
        unique("portcullis-test-oath-"),
        &service_text(&format!("pam_oath.so usersfile={} window=1 digits=6", users.display())),
    );
    settle(8);
    let code = env
        .ok(&["otp", "code", "--secret", hex, "--hex"], None)
        .trim()
        .to_string();
    assert!(pamtester(&ours.name, "carol", None, &code));
    let text = std::fs::read_to_string(&users).unwrap();
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 7, "pam_oath's 7 tab-separated fields: {text:?}");
    assert_eq!(fields[..4], ["HOTP/T30/6", "carol", "-", hex]);
    assert_eq!(fields[5], code, "LASTOTP");
    assert!(!pamtester(&ours.name, "carol", None, &code), "replay, ours");
    assert!(
        !pamtester(&theirs.name, "carol", None, &code),
        "replay, pam_oath reads our state"
    );
    // And the other way: a code pam_oath accepts is a replay for portcullis.
    let next = env
        .ok(
            &[
                "otp",
                "code",
                "--secret",
                hex,
                "--hex",
                "--time",
                &(now() + 30).to_string(),
            ],
            None,
        )
        .trim()
        .to_string();
    assert!(
        pamtester(&theirs.name, "carol", None, &next),
        "pam_oath accepts the next step"
    );
    assert!(!pamtester(&ours.name, "carol", None, &next), "replay, pam_oath's state");
}

/// A Unix user with a password, removed (with its home) on drop.
struct UnixUser {
    name: String,
}

impl UnixUser {
    fn new(password: &str) -> UnixUser {
        let name = unique("pct");
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        let user = UnixUser { name };
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        write!(chpasswd.stdin.take().unwrap(), "{}:{password}", user.name).unwrap();
        assert!(chpasswd.wait().unwrap().success());
        user
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const LOGIN_SCRIPT: &str = r#"
import sys, pexpect
kind, port, user, password, code = sys.argv[1:6]
opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=keyboard-interactive",
        "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR"]
if kind == "ssh":
    child = pexpect.spawn("ssh", ["-p", port] + opts + [user + "@127.0.0.1", "echo", "LOGGED-IN-" + "OK"], timeout=20, encoding="utf-8")
else:
    child = pexpect.spawn("sftp", ["-P", port] + opts + [user + "@127.0.0.1"], timeout=20, encoding="utf-8")
child.expect("Password:")
child.sendline(password)
# common-auth stops at a wrong password (pam_deny is `requisite`): no code prompt then.
if child.expect(["One-time code:", "Permission denied", pexpect.EOF]) != 0:
    sys.exit(1)
child.sendline(code)
if kind == "ssh":
    i = child.expect(["LOGGED-IN-OK", "Permission denied", pexpect.EOF])
    sys.exit(0 if i == 0 else 1)
i = child.expect(["sftp>", "Permission denied", pexpect.EOF])
if i != 0:
    sys.exit(1)
child.sendline("pwd")
child.expect("Remote working directory: /home/" + user)
child.expect("sftp>")
child.sendline("bye")
child.expect(pexpect.EOF)
sys.exit(0)
"#;

#[test]
fn sshd_keyboard_interactive_password_then_code_and_sftp_share_replay_state_with_the_cli() {
    require_root();
    for tool in ["python3", "ssh", "sftp", "ssh-keygen", "/usr/sbin/sshd"] {
        require_tool(tool);
    }
    let env = Env::new("");
    let unix = UnixUser::new("unix-pw-1");
    let secret = secret_of(&env.add_user(&unix.name, "unused", &[]));
    let dir = env.path();
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("host_key"))
        .status()
        .unwrap();
    assert!(keygen.success());
    let port = free_port();
    // The shipped sshd_config lines verbatim, after what only a test needs (sshd keeps the
    // first value of a keyword, so these must not repeat the shipped ones).
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/pam/sshd_config")).unwrap();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nPubkeyAuthentication no\n\
             Subsystem sftp internal-sftp\nStrictModes no\nLogLevel VERBOSE\n{shipped}",
            dir.join("host_key").display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    // sshd takes its PAM service name from argv[0]: this link reads /etc/pam.d/sshd-portcullis.
    let link = dir.join("sshd-portcullis");
    std::os::unix::fs::symlink("/usr/sbin/sshd", &link).unwrap();
    let log = LogSocket::new(dir);
    // The shipped /etc/pam.d/sshd lines, with the module and config of this test.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/pam/sshd.pam")).unwrap();
    let ours = format!(
        "auth required {} config={} log_socket={}",
        module().display(),
        env.config().display(),
        log.path.display()
    );
    let pam_lines = shipped.replace(
        "\nauth required pam_portcullis.so config=/etc/portcullis/portcullis.toml\n",
        &format!("\n{ours}\n"),
    );
    assert!(pam_lines.contains(&ours), "the shipped file changed shape");
    let _svc = Service::new(
        "sshd-portcullis".into(),
        &format!("{pam_lines}account required pam_unix.so\nsession required pam_permit.so\n"),
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd_log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let _sshd = Child(
        Command::new(&link)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stderr(sshd_log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let script = dir.join("login.py");
    std::fs::write(&script, LOGIN_SCRIPT).unwrap();
    let login = |kind: &str, password: &str, code: &str| -> bool {
        Command::new("python3")
            .arg(&script)
            .args([kind, &port.to_string(), &unix.name, password, code])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let sshd_text = || std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();

    settle(12);
    let code = code_now(&env, &secret);
    assert!(login("ssh", "unix-pw-1", &code), "password + code:\n{}", sshd_text());
    assert!(!login("ssh", "unix-pw-1", &code), "replayed code");
    assert!(!login("ssh", "unix-pw-1", "000000"), "wrong code");
    assert!(!login("ssh", "wrong-pw", &code), "wrong password");
    // The next step's code is inside the ±1 window and later than the last one.
    let next = env
        .ok(
            &["otp", "code", "--secret", &secret, "--time", &(now() + 30).to_string()],
            None,
        )
        .trim()
        .to_string();
    assert!(login("sftp", "unix-pw-1", &next), "sftp session:\n{}", sshd_text());
    let (status, out) = env.verify(&unix.name, None, &next);
    assert_eq!(status, 1, "the CLI sees the code sshd accepted as used: {out}");
    assert!(out.contains("replay"), "{out}");
    let lines = log.drain();
    let reasons = reasons_of(&lines);
    // The wrong password stops at common-auth's `requisite pam_deny.so`, before the module.
    assert_eq!(reasons, ["code", "replayed", "wrong_code", "code"], "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("sshd-portcullis[") && l.contains("client=127.0.0.1")),
        "{lines:#?}"
    );
}

/// Regression (issue 10.4), side by side with pam_oath: a users.oath line with a PIN wants
/// the PIN right before the code; the bare code, or a wrong PIN, is refused by both modules.
#[test]
fn usersfile_pin_is_required_like_pam_oath() {
    require_root();
    require_tool("pamtester");
    let env = Env::new("");
    let hex = "3132333435363738393031323334353637383930";
    let users = env.path().join("users.oath");
    std::fs::write(&users, format!("HOTP/T30/6\tpinny\t4711\t{hex}\n")).unwrap();
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ours = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} usersfile={} window=1 digits=6 log_socket={}",
            module().display(),
            users.display(),
            env.path().join("none.sock").display()
        )),
    );
    let theirs = Service::new(
        unique("portcullis-test-oath-"),
        &service_text(&format!("pam_oath.so usersfile={} window=1 digits=6", users.display())),
    );
    settle(8);
    let code = env
        .ok(&["otp", "code", "--secret", hex, "--hex"], None)
        .trim()
        .to_string();
    for service in [&ours.name, &theirs.name] {
        assert!(
            !pamtester(service, "pinny", None, &code),
            "{service}: the bare code passed"
        );
        assert!(
            !pamtester(service, "pinny", None, &format!("1234{code}")),
            "{service}: a wrong PIN passed"
        );
    }
    assert!(
        pamtester(&ours.name, "pinny", None, &format!("4711{code}")),
        "ours: PIN+code"
    );
    // pam_oath reads our state: the same code is a replay there.
    assert!(
        !pamtester(&theirs.name, "pinny", None, &format!("4711{code}")),
        "pam_oath: replay"
    );
    let next = env
        .ok(
            &[
                "otp",
                "code",
                "--secret",
                hex,
                "--hex",
                "--time",
                &(now() + 30).to_string(),
            ],
            None,
        )
        .trim()
        .to_string();
    assert!(
        pamtester(&theirs.name, "pinny", None, &format!("4711{next}")),
        "pam_oath: PIN+code"
    );
}

/// Issue 13.7: pam_oath and pam_portcullis logging two users in at once on one users.oath.
/// Event tokens and the narrowest windows (liboath stores the counter it accepted and takes
/// only the next one with window=1; portcullis with window=0 takes only the next one): a
/// lost update leaves a user's stored counter behind, and every later code of that user is
/// refused, so the user cannot finish its rounds. portcullis follows liboath's lock-file
/// protocol, so neither rewrites the file inside the other's locked section, and its lock
/// file lingers after a write, so a pam_oath that read the file before that write fails
/// instead of writing the old counters back (seen once on a loaded CI machine before the
/// linger). A pam_oath login that meets
/// portcullis's lock file fails (liboath does not wait) and is tried again with its code.
#[test]
fn pam_oath_and_portcullis_on_one_users_file_lose_no_counter_update() {
    require_root();
    require_tool("pamtester");
    require_tool("oathtool");
    let env = Env::new("");
    let (ann_key, ben_key) = (
        "3132333435363738393031323334353637383930",
        "00112233445566778899aabbccddeeff00112233",
    );
    let users = env.path().join("users.oath");
    std::fs::write(&users, format!("HOTP\tann\t-\t{ann_key}\nHOTP\tben\t-\t{ben_key}\n")).unwrap();
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ours = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} usersfile={} window=0 digits=6 log_socket={}",
            module().display(),
            users.display(),
            env.path().join("none.sock").display()
        )),
    );
    let theirs = Service::new(
        unique("portcullis-test-oath-"),
        &service_text(&format!("pam_oath.so usersfile={} window=1 digits=6", users.display())),
    );
    let rounds: usize = std::env::var("PORTCULLIS_RACE_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(40, |n: usize| n * 10);
    let codes = |key: &str| -> Vec<String> {
        let out = Command::new("oathtool")
            .args(["--hotp", &format!("--window={}", rounds * 3), key])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Each side logs its user in `rounds` times, retrying a code that was refused, and gives
    // up once refused many times in a row (a lost update leaves a user stuck for good; a
    // pam_oath that meets portcullis's lingering lock file is refused for ~30 ms at most).
    // Returns the logins that succeeded and the refusals.
    let (ann_codes, ben_codes) = (codes(ann_key), codes(ben_key));
    let run = |service: String, user: &'static str, codes: Vec<String>| {
        std::thread::spawn(move || {
            let (mut next, mut refused, mut in_a_row) = (0usize, 0usize, 0usize);
            while next < rounds && in_a_row < 300 {
                if pamtester(&service, user, None, &codes[next]) {
                    next += 1;
                    in_a_row = 0;
                } else {
                    refused += 1;
                    in_a_row += 1;
                }
            }
            (next, refused)
        })
    };
    // pam_oath's first code is counter 1: it takes the one after the stored counter (0).
    let a = run(theirs.name.clone(), "ann", ann_codes[1..].to_vec());
    let b = run(ours.name.clone(), "ben", ben_codes.clone());
    let (ann_ok, ann_refused) = a.join().unwrap();
    let (ben_ok, ben_refused) = b.join().unwrap();
    let text = std::fs::read_to_string(&users).unwrap();
    let last_otp = |user: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.split('\t').nth(1) == Some(user))
            .unwrap_or_else(|| panic!("{user} is gone from {text:?}"));
        line.split('\t').nth(5).unwrap_or("").to_string()
    };
    eprintln!("pam_oath: {ann_ok} logins, {ann_refused} refused; portcullis: {ben_ok} logins, {ben_refused} refused");
    assert_eq!(
        ben_refused, 0,
        "portcullis waits for pam_oath's lock instead of failing"
    );
    assert_eq!(ben_ok, rounds);
    assert_eq!(
        ann_ok, rounds,
        "pam_oath got through in the end ({ann_refused} refusals)"
    );
    assert_eq!(
        last_otp("ann"),
        ann_codes[ann_ok],
        "pam_oath's last login is on file: {text}"
    );
    assert_eq!(
        last_otp("ben"),
        ben_codes[ben_ok - 1],
        "portcullis's last login is on file: {text}"
    );
    assert!(!env.path().join("users.oath.lock").exists(), "no lock file left behind");
}

/// Issue 13.1: SSH and the web decide on one store through one core call, so regulation is
/// one: failures over SSH ban the user on the portal, and failures on the portal ban the
/// user over SSH (bans live in the SQLite store every process opens).
#[test]
fn an_ssh_brute_force_bans_the_user_on_the_web_and_the_other_way_round() {
    require_root();
    require_tool("pamtester");
    let env = Env::new("");
    let dave = secret_of(&env.add_user("dave", "pw", &[]));
    let erin = secret_of(&env.add_user("erin", "pw", &[]));
    env.loopback_portal(free_port());
    // Below the lockout (5 wrong codes), so what refuses is the ban, not a locked account.
    env.set("regulation", "max_retries", "3");
    let log = LogSocket::new(env.path());
    let svc = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} config={} log_socket={}",
            module().display(),
            env.config().display(),
            log.path.display()
        )),
    );
    let gw = env.serve();
    settle(8);
    for _ in 0..3 {
        assert!(!pamtester(&svc.name, "dave", Some("203.0.113.7"), "000000"));
    }
    assert!(
        !pamtester(&svc.name, "dave", Some("203.0.113.7"), &code_now(&env, &dave)),
        "banned over SSH: the right code is refused unseen"
    );
    let web = crate::harness::Browser::new(&env, "dave");
    let r = web.login(&gw, "dave", "pw", &code_now(&env, &dave), "");
    assert_eq!(r.status, 401, "banned on the web too: {}", r.body);
    assert!(
        gw.log_text()
            .lines()
            .any(|l| l.contains("reason=\"banned\"") && l.contains("user=\"dave\"")),
        "{}",
        gw.log_text()
    );
    // The other way round: three wrong passwords on the portal ban erin over SSH.
    for _ in 0..3 {
        let r = crate::harness::Browser::new(&env, "guess").login(&gw, "erin", "guess", "000000", "");
        assert_eq!(r.status, 401);
    }
    assert!(
        !pamtester(&svc.name, "erin", Some("198.51.100.9"), &code_now(&env, &erin)),
        "banned over SSH after failures on the web"
    );
    let reasons = log.reasons();
    assert_eq!(
        reasons,
        ["wrong_code", "wrong_code", "wrong_code", "banned", "banned"],
        "the PAM module's own log lines"
    );
}

/// Issue 15: with users in PostgreSQL and state in Redis, the module asks the local gateway
/// over `[pam] socket` (no database client inside sshd). A code is spent for both nodes, a
/// ban made on the other node refuses SSH, and a gateway that is gone fails closed.
#[test]
fn on_postgres_and_redis_the_module_asks_the_gateway_and_honours_the_other_nodes_ban() {
    require_root();
    require_tool("pamtester");
    let pg = crate::pg::Postgres::start_new();
    let redis = crate::redis_server::Redis::start_new();
    let url = pg.database("pam_nodes");
    let (a, b) = (Env::new(""), Env::new(""));
    for env in [&a, &b] {
        env.on_postgres(&url);
        env.on_redis(&redis.url());
        env.loopback_portal(free_port());
        env.set("access", "protected_domains", "[\"127.0.0.1\"]");
        env.set("regulation", "max_retries", "3");
    }
    let socket = b.path().join("pam.sock");
    b.set("pam", "socket", &format!("{:?}", socket.display().to_string()));
    let pia = secret_of(&a.add_user("pia", "pw", &[]));
    let log = LogSocket::new(b.path());
    let svc = Service::new(
        unique("portcullis-test-"),
        &service_text(&format!(
            "{} config={} log_socket={}",
            module().display(),
            b.config().display(),
            log.path.display()
        )),
    );
    // Without its gateway the module refuses, whatever the code.
    settle(5);
    let code = code_now(&a, &pia);
    assert!(
        !pamtester(&svc.name, "pia", Some("192.0.2.1"), &code),
        "no gateway, no login"
    );
    let (ga, gb) = (a.serve(), b.serve());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    // The gateway's user and group may connect; only root and the gateway's user are
    // answered (peer credentials).
    assert_eq!(mode & 0o777, 0o660, "the socket: the gateway's user and group");
    assert!(
        pamtester(&svc.name, "pia", Some("192.0.2.1"), &code),
        "the right code over SSH"
    );
    assert!(
        !pamtester(&svc.name, "pia", Some("192.0.2.1"), &code),
        "the same code again"
    );
    // The code is spent on node A too.
    let basic = |gw: &crate::harness::Server, secret: &str| {
        crate::harness::curl(&[
            "-u",
            &format!("pia:pw{secret}"),
            "-H",
            "X-Original-URL: http://127.0.0.1/app",
            &gw.url("/api/authz/auth-request"),
        ])
    };
    assert_eq!(basic(&ga, &code).status, 401, "node A took a code spent over SSH");
    // Wrong codes on node A (the same user) ban pia; SSH through node B refuses her.
    for _ in 0..3 {
        assert_eq!(basic(&ga, "000000").status, 401);
    }
    settle(3);
    let next = code_now(&a, &pia);
    assert!(
        !pamtester(&svc.name, "pia", Some("192.0.2.1"), &next),
        "banned on A, let in over SSH"
    );
    assert!(
        gb.log_text().contains("reason=\"banned\""),
        "the gateway logged the PAM attempt: {}",
        gb.log_text()
    );
    drop(gb);
    assert!(
        !pamtester(&svc.name, "pia", Some("192.0.2.1"), &next),
        "gateway gone, no login"
    );
    drop(ga);
    let reasons = log.reasons();
    assert_eq!(
        reasons,
        ["store_error", "code", "replayed", "banned", "store_error"],
        "the module's own log lines"
    );
}

//! The Debian package (`bash scripts/deb`, which scripts/test runs first) on this machine:
//! lintian, `dpkg -i`, what it installed (the service user, modes, manual pages, the PAM
//! module where PAM looks, completions, the unit), the service's command line run as the
//! service user, `dpkg -r` and `dpkg -P`; and an upgrade from an older package that keeps
//! users and a session. Needs root; the tests take the package in turn (one lock).

use crate::harness::*;
use crate::pam::{Service, pamtester, require_root, service_text, unique};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One test at a time installs the package.
static DPKG: Mutex<()> = Mutex::new(());

const CONFIG: &str = "/etc/portcullis/portcullis.toml";
const STATE: &str = "/var/lib/portcullis";

fn deb(version: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join(format!("packages/portcullis_{version}-1_amd64.deb"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/deb` and `bash scripts/deb 0.0.9` (scripts/test does)",
        path.display()
    );
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package when dropped (also when the test fails).
struct Purged;

impl Drop for Purged {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "portcullis"]);
    }
}

/// `portcullis ARGS` as the service user, as the package's README says to run them.
fn as_service(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut c = Command::new("runuser")
        .args(["-u", "portcullis", "--", "/usr/bin/portcullis"])
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    c.wait_with_output().unwrap()
}

/// The installed configuration made to serve a plain-HTTP loopback portal on `port`.
fn loopback(port: u16) {
    let text = std::fs::read_to_string(CONFIG).unwrap();
    let text = text
        .replace("listen = \"127.0.0.1:9091\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace("\"http://127.0.0.1:9091", &format!("\"http://127.0.0.1:{port}"))
        .replace("secure = true", "secure = false");
    std::fs::write(CONFIG, text).unwrap();
}

/// `ExecStart` of the unit, as the service user; stopped when dropped.
struct Serving(std::process::Child);

impl Serving {
    fn start(port: u16) -> Serving {
        let unit = std::fs::read_to_string("/lib/systemd/system/portcullis.service").unwrap();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let mut words = exec.split_whitespace();
        let child = Command::new("runuser")
            .args(["-u", "portcullis", "--"])
            .arg(words.next().unwrap())
            .args(words)
            .current_dir("/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the service did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Serving(child)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // SIGTERM: runuser passes it on to the gateway. A SIGKILL would end runuser alone and
        // leave the gateway serving, reparented to init (seen: two per CI run).
        crate::harness::terminate(&mut self.0);
    }
}

fn mode(path: &str) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.permissions().mode() & 0o7777, m.gid())
}

fn gid_of(group: &str) -> u32 {
    ok("getent", &["group", group])
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_package_installs_serves_and_removes_as_debian_policy_says() {
    require_root();
    require_tool("lintian");
    require_tool("pamtester");
    require_tool("oathtool");
    let _one = DPKG.lock().unwrap_or_else(|p| p.into_inner());
    let deb = deb(env!("CARGO_PKG_VERSION"));
    let deb = deb.to_str().unwrap();
    let lint = run("lintian", &["--tag-display-limit", "0", deb]);
    let lint_text = String::from_utf8_lossy(&lint.stdout).into_owned();
    let errors: Vec<&str> = lint_text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{lint_text}");
    let _ = run("dpkg", &["--purge", "portcullis"]);
    let _purge = Purged;
    ok("dpkg", &["--install", deb]);

    let version = ok("/usr/bin/portcullis", &["--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let group = gid_of("portcullis");
    assert_eq!(mode(CONFIG), (0o640, group), "the configuration: 0640 root:portcullis");
    assert_eq!(std::fs::metadata(CONFIG).unwrap().uid(), 0);
    assert_eq!(mode(STATE).0, 0o700);
    assert_eq!(
        std::fs::metadata(STATE).unwrap().uid(),
        ok("id", &["-u", "portcullis"]).trim().parse::<u32>().unwrap()
    );
    assert!(
        std::fs::read_to_string(CONFIG)
            .unwrap()
            .contains("path = \"/var/lib/portcullis/portcullis.db\"")
    );
    for snippet in ["nginx", "apache", "caddy", "traefik", "systemd"] {
        assert!(
            Path::new("/usr/share/portcullis").join(snippet).is_dir(),
            "contrib/{snippet}"
        );
    }
    // Every manual page renders.
    let mut pages = 0;
    for section in ["man1", "man5", "man8"] {
        for e in std::fs::read_dir(Path::new("/usr/share/man").join(section)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("portcullis") || name.starts_with("pam_portcullis")) {
                continue;
            }
            let out = Command::new("man")
                .arg("-l")
                .arg(&p)
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            assert!(out.status.success() && !out.stdout.is_empty(), "man -l {name}");
            pages += 1;
        }
    }
    assert!(pages > 30, "{pages} pages");
    let toml = String::from_utf8_lossy(
        &Command::new("man")
            .args(["-l", "/usr/share/man/man5/portcullis.toml.5.gz"])
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(toml.contains("duo.failmode") && toml.contains("session.idle"), "{toml}");
    // Completions load; the unit verifies (its Documentation= pages are installed).
    ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/portcullis && complete -p portcullis",
        ],
    );
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let v = run("systemd-analyze", &["verify", "/lib/systemd/system/portcullis.service"]);
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success() && err.trim().is_empty(), "{err}");
    }
    // The installed configuration passes its own check, as the service user.
    let check = as_service(&["config", "check"], None);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // A user, and the PAM module where PAM looks for modules, on the packaged store.
    let added = as_service(
        &["user", "add", "alice", "--password-stdin", "--no-terminal-qr"],
        Some("pw\n"),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = secret_of(&uri_in(&String::from_utf8_lossy(&added.stdout)));
    assert!(Path::new("/usr/lib/x86_64-linux-gnu/security/pam_portcullis.so").is_file());
    let svc = Service::new(
        unique("portcullis-deb-"),
        &service_text(&format!("pam_portcullis.so config={CONFIG} combined")),
    );
    settle(4);
    let code = ok("oathtool", &["--totp", "-b", &secret]);
    assert!(pamtester(
        &svc.name,
        "alice",
        Some("192.0.2.9"),
        &format!("pw{}", code.trim())
    ));

    // The unit's ExecStart as the service user: it serves, and writes only its state.
    let port = free_port();
    loopback(port);
    let marker = Path::new(STATE).join("..").join(format!(".portcullis-test-{port}"));
    std::fs::write(&marker, "").unwrap();
    {
        let _serving = Serving::start(port);
        let health = curl(&[&format!("http://127.0.0.1:{port}/api/health")]);
        assert_eq!(health.status, 200, "{}", health.body);
    }
    let changed = ok(
        "find",
        &[
            "/etc",
            "/usr",
            "-xdev",
            "-newer",
            marker.to_str().unwrap(),
            "-not",
            "-type",
            "d",
        ],
    );
    std::fs::remove_file(&marker).unwrap();
    // (Other tests running meanwhile write their own PAM service files and add users.)
    let others = |l: &str| {
        l.starts_with("/etc/pam.d/portcullis-")
            || ["passwd", "shadow", "group", "gshadow", "subuid", "subgid", ".pwd.lock"]
                .iter()
                .any(|f| l.trim_end_matches('-') == format!("/etc/{f}"))
    };
    let changed: Vec<&str> = changed.lines().filter(|l| !others(l)).collect();
    assert!(changed.is_empty(), "the service wrote outside {STATE}:\n{changed:?}");

    // remove keeps the store and the configuration; purge removes both, saying so.
    ok("dpkg", &["--remove", "portcullis"]);
    assert!(!Path::new("/usr/bin/portcullis").exists());
    assert!(!Path::new("/usr/lib/x86_64-linux-gnu/security/pam_portcullis.so").exists());
    assert!(
        Path::new(STATE).join("portcullis.db").is_file(),
        "remove keeps the store"
    );
    assert!(Path::new(CONFIG).is_file(), "remove keeps the configuration");
    let purge = ok("dpkg", &["--purge", "portcullis"]);
    assert!(purge.contains("removing /var/lib/portcullis"), "{purge}");
    assert!(!Path::new(STATE).exists() && !Path::new("/etc/portcullis").exists());
    assert!(!ok("dpkg-statoverride", &["--list"]).contains("/etc/portcullis"));
    eprintln!("lintian (warnings and notes):\n{lint_text}");
}

#[test]
fn upgrading_from_an_older_package_keeps_users_tokens_and_sessions() {
    require_root();
    require_tool("oathtool");
    let _one = DPKG.lock().unwrap_or_else(|p| p.into_inner());
    let (old, new) = (deb("0.0.9"), deb(env!("CARGO_PKG_VERSION")));
    let _ = run("dpkg", &["--purge", "portcullis"]);
    let _purge = Purged;
    ok("dpkg", &["--install", old.to_str().unwrap()]);
    assert!(ok("dpkg-query", &["-W", "-f", "${Version}", "portcullis"]).starts_with("0.0.9"));
    let port = free_port();
    loopback(port);
    let added = as_service(
        &["user", "add", "alice", "--password-stdin", "--no-terminal-qr"],
        Some("pw\n"),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = secret_of(&uri_in(&String::from_utf8_lossy(&added.stdout)));
    let dir = tempfile::tempdir().unwrap();
    let jar = Browser {
        jar: dir.path().join("jar"),
        interface: None,
        ca: None,
        resolve: Vec::new(),
    };
    let portal = format!("http://127.0.0.1:{port}");
    let protected = || {
        jar.get(
            &format!("{portal}/api/authz/auth-request"),
            &["-H", "X-Original-URL: http://127.0.0.1/wiki/"],
        )
    };
    let used;
    {
        let _serving = Serving::start(port);
        settle(4);
        used = ok("oathtool", &["--totp", "-b", &secret]).trim().to_string();
        let r = jar.login_at(&portal, "alice", "pw", &used, &format!("{portal}/"));
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(protected().status, 200, "a two-factor session");
    }
    // The configuration was changed by the administrator: kept as it is.
    let before = std::fs::read_to_string(CONFIG).unwrap();
    ok("dpkg", &["--force-confold", "--install", new.to_str().unwrap()]);
    assert_eq!(
        ok("dpkg-query", &["-W", "-f", "${Version}", "portcullis"]),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        before,
        "the configuration is kept"
    );
    assert_eq!(mode(CONFIG), (0o640, gid_of("portcullis")));
    let _serving = Serving::start(port);
    assert_eq!(
        protected().status,
        200,
        "the session made before the upgrade still works"
    );
    // alice's token and replay state came through: the code used before the upgrade is
    // refused as used, the next one accepted.
    let verify = |code: &str| {
        as_service(&["verify", "alice", code, "--password-stdin"], Some("pw\n"))
            .status
            .code()
    };
    assert_eq!(verify(&used), Some(1), "the code used before the upgrade is spent");
    let next = ok("oathtool", &["--totp", "-b", "-N", "now + 30 seconds", &secret]);
    assert_eq!(verify(next.trim()), Some(0), "the next code works");
}

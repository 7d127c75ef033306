//! portcullis as a system service: the systemd unit in contrib/systemd (checked with
//! `systemd-analyze verify`), readiness told to systemd over NOTIFY_SOCKET once everything
//! listens, the manual pages (rendered by man/groff without a warning) and the shell
//! completions (loaded by bash).

use crate::harness::*;
use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/systemd/portcullis.service");

#[test]
fn serve_tells_systemd_it_is_ready_once_it_listens() {
    let env = Env::new("");
    let port = free_port();
    env.loopback_portal(port);
    let socket_path = env.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut child = env
        .command(&["serve"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let got = socket.recv(&mut buf);
    // Ready means listening: the portal answers at once.
    let health = std::net::TcpStream::connect(("127.0.0.1", port));
    let _ = child.kill();
    let _ = child.wait();
    let n = got.expect("no notification within 10 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    assert!(health.is_ok(), "READY=1 came before the listener");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    require_tool("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    // The unit as shipped, with the binary under test in ExecStart (verify checks that the
    // program exists) and the user it names being one that exists here.
    let text = std::fs::read_to_string(UNIT).unwrap();
    assert!(text.contains("Type=notify") && text.contains("ExecStart=/usr/bin/portcullis "));
    for key in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        // check::bind chowns the check socket to check_socket_group: not filtered out.
        "SystemCallFilter=@chown",
    ] {
        assert!(text.contains(key), "the unit lacks {key:?}");
    }
    let unit = dir.path().join("portcullis.service");
    std::fs::write(
        &unit,
        text.replace("/usr/bin/portcullis", &bin().display().to_string())
            .replace("User=portcullis", "User=root")
            .replace("Group=portcullis", "Group=root"),
    )
    .unwrap();
    // Its Documentation= pages are the ones `portcullis man` writes.
    let man = dir.path().join("man");
    let env = Env::new("");
    env.ok(&["man", "--out", man.to_str().unwrap()], None);
    let verify = |unit: &Path| {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .env("MANPATH", &man)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = verify(&unit);
    assert!(ok && err.trim().is_empty(), "{err}");
    // Its exposure as `systemd-analyze security` scores it, from the file alone: "OK" and
    // at most 2.0 (1.4 when this was written); without the sandbox it is far above.
    let security = |unit: &Path, threshold: &str| {
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", &format!("--threshold={threshold}")])
            .arg(unit)
            .env("MANPATH", &man)
            .output()
            .unwrap()
    };
    // (--threshold counts in tenths: 20 is an exposure of 2.0.)
    let scored = security(Path::new(UNIT), "20");
    let text = String::from_utf8_lossy(&scored.stdout);
    assert!(
        scored.status.success() && text.contains("Overall exposure level"),
        "{text}"
    );
    let bare = dir.path().join("bare.service");
    std::fs::write(&bare, "[Service]\nExecStart=/bin/true\n").unwrap();
    assert!(
        !security(&bare, "20").status.success(),
        "an unsandboxed unit scores above 2"
    );
    // The check can fail: a misspelt key is reported.
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("ProtectHome=yes", "ProtectHomes=yes"),
    )
    .unwrap();
    let (_, err) = verify(&bad);
    assert!(err.contains("Unknown key 'ProtectHomes'"), "{err}");
}

#[test]
fn the_manual_pages_render_and_cover_every_command() {
    require_tool("groff");
    let env = Env::new("");
    let out = env.path().join("man");
    let said = env.ok(&["man", "--out", out.to_str().unwrap()], None);
    assert!(said.starts_with("wrote "), "{said}");
    let page = |p: &str| out.join(p);
    for p in [
        "man1/portcullis.1",
        "man1/portcullis-serve.1",
        "man1/portcullis-user.1",
        "man1/portcullis-user-add.1",
        "man1/portcullis-duo-check.1",
        "man5/portcullis.toml.5",
        "man8/pam_portcullis.8",
    ] {
        assert!(page(p).is_file(), "{p} is missing");
    }
    let mut n = 0;
    for section in ["man1", "man5", "man8"] {
        for entry in std::fs::read_dir(out.join(section)).unwrap() {
            let path = entry.unwrap().path();
            let r = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(r.status.success() && err.trim().is_empty(), "{}: {err}", path.display());
            n += 1;
        }
    }
    assert!(n > 30, "{n} pages");
    let toml = render(&page("man5/portcullis.toml.5"));
    for text in ["duo.failmode", "ldap.url", "session.idle", "two_factor"] {
        assert!(toml.contains(text), "portcullis.toml(5) lacks {text}");
    }
    let pam = render(&page("man8/pam_portcullis.8"));
    assert!(pam.contains("combined") && pam.contains("trusted_networks"), "{pam}");
}

fn render(page: &Path) -> String {
    // Plain text: no bold or underline by overstrike, which the test could not read.
    let r = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-cbou"])
        .arg(page)
        .output()
        .unwrap();
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn bash_loads_the_completions_and_completes_subcommands() {
    require_tool("bash");
    let env = Env::new("");
    let script = env.path().join("portcullis.bash");
    std::fs::write(&script, env.ok(&["completions", "bash"], None)).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(portcullis us) COMP_CWORD=1 && _portcullis portcullis us portcullis && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(words.lines().any(|w| w == "user"), "{words}");
    for shell in ["zsh", "fish"] {
        let text = env.ok(&["completions", shell], None);
        assert!(text.contains("portcullis") && text.contains("user"), "{shell}");
    }
}

/// `systemctl reload` (SIGHUP, the unit's ExecReload): the configuration is read again and
/// served without a restart; sessions kept only in memory stay signed in; a broken
/// configuration is refused and the running one stays.
#[test]
fn sighup_reloads_the_configuration_and_keeps_sessions() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("alice", "pw", &[]));
    env.loopback_portal(free_port());
    env.set("session", "store", "\"memory\"");
    let socket_path = env.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let text = std::fs::read_to_string(env.config()).unwrap();
    let port: u16 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .unwrap();
    let log = env.path().join("serve.log");
    let mut child = env
        .command(&["serve"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id().to_string();
    let _kill = Kill(&mut child);
    let message = || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    };
    assert_eq!(message(), "READY=1");
    settle(3);
    let b = Browser::new(&env, "alice");
    let portal = format!("http://127.0.0.1:{port}");
    let r = b.login_at(&portal, "alice", "pw", &code_now(&env, &secret), &format!("{portal}/"));
    assert_eq!(r.status, 303, "{}", r.body);
    let at = |path: &str| {
        b.get(
            &format!("{portal}/api/authz/auth-request"),
            &["-H", &format!("X-Original-URL: http://127.0.0.1{path}")],
        )
        .status
    };
    assert_eq!((at("/wiki/"), at("/wiki/admin/")), (200, 200));
    // A new rule, then `systemctl reload`.
    let mut text = std::fs::read_to_string(env.config()).unwrap();
    text.push_str("\n[[access.rules]]\npath = \"^/wiki/admin/\"\npolicy = \"deny\"\n");
    std::fs::write(env.config(), &text).unwrap();
    ok_kill(&pid);
    assert_eq!(message(), "RELOADING=1");
    assert_eq!(message(), "READY=1");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("configuration reloaded"), "{logged}");
    assert_eq!(
        at("/wiki/"),
        200,
        "the session made before the reload is still signed in"
    );
    assert_eq!(at("/wiki/admin/"), 403, "the new rule is in force");
    // A broken file: refused, said so, and the running configuration stays.
    std::fs::write(env.config(), format!("{text}\n[otp\n")).unwrap();
    ok_kill(&pid);
    assert_eq!(message(), "RELOADING=1");
    assert_eq!(message(), "READY=1");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("reload refused") && logged.contains("portcullis.toml"),
        "{logged}"
    );
    assert_eq!((at("/wiki/"), at("/wiki/admin/")), (200, 403));
}

fn ok_kill(pid: &str) {
    let s = Command::new("kill").args(["-HUP", pid]).status().unwrap();
    assert!(s.success());
}

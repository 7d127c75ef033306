//! The README as a script: the shell blocks of its Quick start, nginx and migration
//! sections run top to bottom, as a new user would copy them, in a temporary root, with a
//! real service user, real nginx and the app behind it; then a person signs in through
//! nginx and reaches the app.

use crate::harness::*;
use std::path::Path;
use std::process::{Command, Stdio};

const README: &str = include_str!("../../../../README.md");

/// The ```sh blocks under the heading `title` (until the next heading of its level or
/// above), in order.
fn shell_blocks(title: &str) -> Vec<String> {
    let mut lines = README.lines();
    let level = lines
        .by_ref()
        .find_map(|l| {
            let hashes = l.len() - l.trim_start_matches('#').len();
            (hashes > 0 && l[hashes..].trim() == title).then_some(hashes)
        })
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        match &mut current {
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line == "```sh" => current = Some(String::new()),
            None => {
                let hashes = line.len() - line.trim_start_matches('#').len();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    break;
                }
            }
        }
    }
    assert!(!blocks.is_empty(), "README section {title:?} has no sh block");
    blocks
}

/// Where the test puts what the README puts on the machine, and what it cannot do here.
struct Site<'a> {
    root: &'a Path,
    user: &'a str,
    gateway_port: u16,
    nginx_port: u16,
    app_port: u16,
}

impl Site<'_> {
    /// One README line as this test runs it. Every change is a path moved into the temp
    /// root, a port moved to a free one, the service user renamed, `sudo` dropped (the
    /// suite runs as root) or a step this machine cannot take (a certificate from the
    /// internet, a terminal to type a password on, systemd).
    fn localise(&self, line: &str) -> String {
        let root = self.root.display().to_string();
        let user = self.user;
        let bin = format!("{root}/usr/local/bin/portcullis");
        let mut l = line.to_string();
        if l.trim_start().starts_with("sudo certbot") {
            return format!("# (no certificate here) {l}");
        }
        l = l.replace("cargo build --release -p portcullis && ", "");
        l = l.replace("target/release/portcullis", bin_path());
        for dir in ["/etc/", "/usr/local/bin/", "/var/www/", "/home/"] {
            l = l.replace(&format!(" {dir}"), &format!(" {root}{dir}"));
            l = l.replace(&format!("'include {dir}"), &format!("'include {root}{dir}"));
            l = l.replace(&format!("\"{dir}"), &format!("\"{root}{dir}"));
        }
        l = l.replace(
            "sudo -u portcullis portcullis ",
            &format!("setpriv --reuid {user} --regid {user} --init-groups -- {bin} "),
        );
        l = l.replace("-o portcullis -g portcullis", &format!("-o {user} -g {user}"));
        l = l.replace("sudo portcullis ", &format!("{bin} "));
        l = l.replace("sudo ", "");
        if l.starts_with("useradd ") {
            l = l.replace(" portcullis", &format!(" {user}"));
        }
        l = l.replace(
            "--portal-url https://auth.example.com",
            &format!(
                "--portal-url http://auth.example.com:{} --listen 127.0.0.1:{}",
                self.nginx_port, self.gateway_port
            ),
        );
        if l.contains(" user add alice") && !l.contains("--password-stdin") {
            l = l.replacen(" user add alice", " user add alice --password-stdin < alice-pw.txt", 1);
        }
        if let Some(at) = l.find(" serve")
            && l[..at].ends_with(&bin)
        {
            l = format!("{} > {root}/serve.log 2>&1 & echo $! > {root}/serve.pid", &l[..at + 6]);
        }
        let nginx = format!("-c {root}/etc/nginx/nginx.conf -p {root}/nginx");
        l = l.replace("nginx -t ", &format!("nginx -t {nginx} "));
        l = l.replace("systemctl reload nginx", &format!("nginx {nginx}"));
        l
    }

    /// After copying the example site: nginx on a free port instead of 80, the app on
    /// its own.
    fn after(&self, line: &str) -> Option<String> {
        let copied = line.trim_start().starts_with("sudo cp") && line.contains("sites-available/portcullis-example");
        copied.then(|| {
            format!(
                "sed -i 's/listen 80;/listen 127.0.0.1:{};/; s/127.0.0.1:8080/127.0.0.1:{}/' {}/etc/nginx/sites-available/portcullis-example",
                self.nginx_port,
                self.app_port,
                self.root.display()
            )
        })
    }
}

fn bin_path() -> &'static str {
    Box::leak(bin().display().to_string().into_boxed_str())
}

/// Stops the gateway, nginx and the app, and removes the service user.
struct Cleanup<'a> {
    root: &'a Path,
    user: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for pid in ["serve.pid", "nginx/nginx.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.root.join(pid)) {
                let pid = pid.trim();
                let _ = Command::new("kill").arg(pid).status();
                // userdel refuses while the user still runs a process.
                for _ in 0..200 {
                    if !Path::new("/proc").join(pid).exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        let _ = Command::new("userdel").arg(self.user).status();
    }
}

#[test]
fn the_readme_runs_as_written_and_a_person_signs_in_through_nginx() {
    use std::os::unix::fs::PermissionsExt;
    require_tool("nginx");
    require_tool("setpriv");
    let env = Env::new("");
    let root = env.path().join("root");
    for dir in [
        "usr/local/bin",
        "etc/nginx/conf.d",
        "etc/nginx/sites-available",
        "etc/nginx/sites-enabled",
        "etc/apache2",
        "home/carol",
        "var/www/2fa",
        "nginx/logs",
        "work",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    // The service user reaches its directory through these, as through / on a machine.
    for dir in [env.path(), root.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let app = crate::proxy::App::start();
    let user = format!("pcreadme{}", std::process::id() % 100_000);
    let site = Site {
        root: &root,
        user: &user,
        gateway_port: free_port(),
        nginx_port: free_port(),
        app_port: app.port,
    };
    let _cleanup = Cleanup {
        root: &root,
        user: &user,
    };
    // What the machine already has: Debian's nginx.conf (its includes), the files of
    // the tools being replaced, bob's password file.
    let r = root.display();
    std::fs::write(
        root.join("etc/nginx/nginx.conf"),
        format!(
            "error_log {r}/nginx/logs/error.log;\npid {r}/nginx/nginx.pid;\nevents {{}}\nhttp {{\n    access_log off;\n    \
             include {r}/etc/nginx/conf.d/*.conf;\n    include {r}/etc/nginx/sites-enabled/*;\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/apache2/otp-users.txt"),
        "HOTP/T30 dave 1234 3132333435363738393031323334353637383930\n",
    )
    .unwrap();
    std::fs::write(
        root.join("home/carol/.google_authenticator"),
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n12345678\n",
    )
    .unwrap();
    std::fs::write(
        root.join("var/www/2fa/tokens.json"),
        "{\"erin\": \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ\"}\n",
    )
    .unwrap();
    std::fs::write(root.join("work/pw.txt"), "bob's password\n").unwrap();
    std::fs::write(root.join("work/alice-pw.txt"), "alice's password\n").unwrap();

    let mut script = String::from("set -euxo pipefail\n");
    let sections = [
        "Quick start",
        "nginx",
        "Migrating from mod_authn_otp",
        "Migrating from mod_authn_google",
        "Migrating from apache_2fa",
    ];
    for section in sections {
        for block in shell_blocks(section) {
            for line in block.lines() {
                script.push_str(&site.localise(line));
                script.push('\n');
                if let Some(more) = site.after(line) {
                    script.push_str(&more);
                    script.push('\n');
                }
            }
        }
    }
    std::fs::write(root.join("work/readme.sh"), &script).unwrap();
    if std::env::var_os("PORTCULLIS_SHOW_README_SCRIPT").is_some() {
        eprintln!("{script}");
    }
    let out = Command::new("bash")
        .arg(root.join("work/readme.sh"))
        .current_dir(root.join("work"))
        // The default configuration path, moved into the root like every other path.
        .env("PORTCULLIS_CONFIG", root.join("etc/portcullis/portcullis.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = || std::fs::read_to_string(root.join("serve.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the README script failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway:\n{}",
        log()
    );

    // The store is the service user's, as the Quick start says.
    let store = std::fs::metadata(root.join("etc/portcullis/portcullis.db")).unwrap();
    let owner = Command::new("id").args(["-u", &user]).output().unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&store).to_string(),
        String::from_utf8_lossy(&owner.stdout).trim()
    );
    // bob's invitation points at the portal given to init, not at 127.0.0.1:9091.
    let portal = format!("http://auth.example.com:{}", site.nginx_port);
    assert!(stdout.contains(&format!("{portal}/enroll/")), "{stdout}");
    // The imports took the three other tools' users.
    let config = root.join("etc/portcullis/portcullis.toml");
    let list = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["user", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }

    // The gateway and nginx the script started answer.
    for port in [site.gateway_port, site.nginx_port] {
        let mut up = false;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(up, "nothing on port {port}; gateway:\n{}", log());
    }
    // alice opens the app, is sent to the portal, signs in, and the app knows her.
    let secret = secret_of(&uri_in(&stdout));
    let mut b = Browser::new(&env, "alice");
    b.resolve = ["auth", "app"]
        .iter()
        .map(|h| format!("{h}.example.com:{}:127.0.0.1", site.nginx_port))
        .collect();
    let app_url = format!("http://app.example.com:{}/headers", site.nginx_port);
    let r = b.get(&app_url, &["-H", "Accept: text/html"]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("{portal}/login?rd={}", urlencode(&app_url)).as_str())
    );
    settle(3);
    let code = code_now(&env, &secret);
    let r = b.login_at(&portal, "alice", "alice's password", &code, &app_url);
    assert_eq!(r.status, 303, "{}\ngateway:\n{}", r.body, log());
    assert_eq!(r.header("location"), Some(app_url.as_str()));
    let r = b.get(&app_url, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("[\"remote-user\", \"alice\"]"), "{}", r.body);
    let home = b.get(&format!("{portal}/"), &[]);
    assert!(
        home.body.contains("Signed in as <strong>alice</strong>"),
        "{}",
        home.body
    );
}

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

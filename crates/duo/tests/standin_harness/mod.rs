//! The Auth API stand-in (`crates/duo/tests/standin.py`) as a test fixture: a throwaway CA
//! and certificate, fixed keys, the process started on a free loopback port and killed when
//! dropped, and its unsigned controls (stats, approve, deny, reset, long-poll).
#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The integration key the stand-in accepts.
pub const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
/// The secret key it verifies signatures with.
pub const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
/// The passcode it accepts (once per user).
pub const PASSCODE: &str = "135790";

/// A running stand-in.
pub struct StandIn {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../duo/tests/standin.py")
}

impl StandIn {
    /// Makes a certificate for localhost/127.0.0.1 and starts the stand-in.
    pub fn start_new() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA of the test's own and a server certificate it signed (rustls refuses a CA
        // certificate used as the server's).
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl (run scripts/test)")
                .success();
            assert!(ok, "openssl {args:?} failed");
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-subj", "/CN=portcullis test Duo CA", "-days", "2"],
            ]
            .concat()
            .iter()
            .chain(&["-keyout", "ca.key", "-out", "ca.pem"])
            .copied()
            .collect::<Vec<_>>(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "server.csr"],
            ]
            .concat(),
        );
        std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        std::fs::write(d.join("skey"), format!("{SKEY}\n")).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(script())
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg("--key")
            .arg(d.join("key.pem"))
            .args(["--ikey", IKEY, "--port", "0", "--long-poll", "1"])
            .arg("--skey-file")
            .arg(d.join("skey"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Duo stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = match line.trim().strip_prefix("listening ").map(str::parse) {
            Some(Ok(port)) => port,
            _ => panic!("the Duo stand-in did not start (needs python3-aiohttp: run scripts/test); it said {line:?}"),
        };
        StandIn { child, port, dir }
    }

    /// `[duo] api_host` for it.
    pub fn api_host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The CA file to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A file holding the secret key.
    pub fn skey_file(&self) -> PathBuf {
        self.dir.path().join("skey")
    }

    /// The `[duo]` section for a portcullis config (`extra` lines appended).
    pub fn config_section(&self, extra: &str) -> String {
        format!(
            "[duo]\napi_host = \"{}\"\nintegration_key = \"{IKEY}\"\nsecret_key_file = \"{}\"\nca_file = \"{}\"\n{extra}\n",
            self.api_host(),
            self.skey_file().display(),
            self.ca_file().display()
        )
    }

    fn control(&self, method: &str, path: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", method, "--cacert"])
            .arg(self.ca_file())
            .arg(format!("https://localhost:{}{path}", self.port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "stand-in {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// What it has seen (`pushes`, `preauth`, `passcodes` per user, `bad_signatures`, …).
    pub fn stats(&self) -> serde_json::Value {
        self.control("GET", "/stand-in/stats")
    }

    /// Pushes sent to Duo user `user` so far.
    pub fn pushes(&self, user: &str) -> u64 {
        self.stats()["pushes"][user].as_u64().unwrap_or(0)
    }

    /// Pushes sent to anyone so far.
    pub fn all_pushes(&self) -> u64 {
        self.stats()["pushes"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum())
    }

    /// Requests whose signature it refused.
    pub fn bad_signatures(&self) -> u64 {
        self.stats()["bad_signatures"].as_u64().unwrap_or(0)
    }

    /// Approves the latest pending push of a `manual*` user.
    pub fn approve(&self, user: &str) {
        self.control("POST", &format!("/stand-in/approve?username={user}"));
    }

    /// Denies the latest pending push of a `manual*` user.
    pub fn deny(&self, user: &str) {
        self.control("POST", &format!("/stand-in/deny?username={user}"));
    }

    /// Stops it (connections refused from now on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

//! A real redis-server (Debian's `redis-server`) for a test: in a temp directory, on a free
//! loopback port, nothing saved to disk, stopped when dropped. Shared by the store's and
//! the gateway's tests.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server, stopped when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Redis {
    /// A server with `extra` arguments (TLS, ACL users) after the test's own; `{port}` in
    /// them is the server's port (`--tls-port {port}` serves TLS only).
    pub fn start_with(extra: &[&str]) -> Redis {
        assert!(
            Path::new("/usr/bin/redis-server").exists(),
            "redis-server is not installed; run .ci/run or apt-get install redis-server"
        );
        let mut r = Redis {
            child: None,
            port: crate::ports::free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.start();
        r
    }

    /// A plain server on loopback.
    pub fn start_new() -> Redis {
        Self::start_with(&[])
    }

    /// A Redis Sentinel watching the primary on `primary` as `mymaster` (quorum 1, down
    /// after 1 s), with its configuration file in its own directory.
    pub fn start_sentinel(primary: u16) -> Redis {
        let mut r = Redis {
            child: None,
            port: crate::ports::free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: vec!["--sentinel-of".into(), primary.to_string()],
        };
        r.start();
        r
    }

    /// Starts (or restarts) the server on its port and waits until it answers.
    pub fn start(&mut self) {
        if let [flag, primary] = self.extra.as_slice()
            && flag == "--sentinel-of"
        {
            let conf = self.dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {primary} 1\n\
                     sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n",
                    self.port,
                    self.dir.path().display()
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(std::fs::File::create(self.dir.path().join("redis.log")).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.child = Some(child);
            return self.wait_listening();
        }
        let tls = self.extra.iter().any(|a| a == "--tls-port");
        let port = self.port.to_string();
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        if tls {
            args.extend(["--port", "0"]);
        } else {
            args.extend(["--port", &port]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .arg("--dir")
            .arg(self.dir.path())
            .args(self.extra.iter().map(|a| a.replace("{port}", &port)))
            .stdout(std::fs::File::create(self.dir.path().join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}: {}", self.port, self.log());
    }

    /// Kills the server (SIGKILL: an outage, nothing saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A directory for a test's files (certificates, password files).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

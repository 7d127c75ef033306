//! A real Apache 2.4 (Debian's apache2) on a loopback port with its own config dir, for
//! the tests that put portcullis behind or beside Apache.

use crate::harness::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian keeps Apache's loadable modules.
pub const MODULES: &str = "/usr/lib/apache2/modules";

/// A running Apache, stopped when dropped.
pub struct Apache {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Apache {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "apache2 exit: {:?}\nerror.log:\n{}\nstderr:\n{}",
                self.child.try_wait(),
                self.error_log(),
                std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
            );
        }
        // SIGTERM lets the parent stop its children.
        terminate(&mut self.child);
    }
}

impl Apache {
    /// Starts `apache2 -DFOREGROUND` with `modules` (name, file) loaded unless built in,
    /// the common server settings, and `site` (directives for this test) after them.
    pub fn start(dir: &Path, port: u16, modules: &[(&str, &str)], site: &str) -> Apache {
        require_tool("apache2");
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let modules = modules
            .iter()
            // Debian builds some of these in; load only those that are not.
            .map(|(name, file)| format!("<IfModule !{name}>\n    LoadModule {name} {MODULES}/{file}\n</IfModule>\n"))
            .collect::<String>();
        let conf = format!(
            r#"{modules}
ServerRoot {d}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel warn mpm_prefork:notice core:notice
StartServers 2
MinSpareServers 2
LogFormat "%h %u \"%r\" %>s" portcullis
CustomLog {d}/access.log portcullis
User www-data
Group www-data
{site}"#
        );
        std::fs::write(dir.join("httpd.conf"), conf).unwrap();
        let child = Command::new("apache2")
            // A parent and its children, as in production.
            .args(["-DFOREGROUND", "-f"])
            .arg(dir.join("httpd.conf"))
            .env("APACHE_RUN_DIR", dir)
            // Its own process group: prefork signals its whole group when it stops, which
            // would otherwise hit the test runner and the other tests' servers.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let apache = Apache {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return apache;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "apache2 did not start: {}{}",
            std::fs::read_to_string(apache.dir.join("stderr.log")).unwrap_or_default(),
            apache.error_log()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

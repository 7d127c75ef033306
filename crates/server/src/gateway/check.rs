//! `portcullis check`, the program mod_authnz_external runs (pipe protocol: the user name
//! and the password+code on two lines of stdin; exit 0 accepts). It asks the running
//! gateway over `[apache] check_socket`, so replay, lockout, linger and regulation are
//! shared and a check costs no start-up; without the socket it decides on its own, from
//! the store directly.
//!
//! The socket protocol is five lines (user, password+code, client address, host, URI),
//! at most `MAX_REQUEST` bytes, one request per connection; the answer is `ok` or `no`.

use super::App;
use super::metrics::Kind;
use crate::settings::{CheckFallback, LogFormat, Settings};
use anyhow::{Context, Result};
use portcullis_core::authz::{AccessRequest, BasicCredentials, Decision};
use portcullis_core::config::SessionStoreKind;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// Upper bound of one request, on stdin and on the socket.
const MAX_REQUEST: usize = 8 * 1024;
/// How long the socket side waits for a request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One credential check.
struct Check {
    user: String,
    secret: Zeroizing<String>,
    ip: IpAddr,
    host: String,
    uri: String,
}

impl Check {
    /// Parses the five-line form (the socket protocol).
    fn parse(text: &str) -> Option<Check> {
        let mut lines = text.split('\n');
        let user = lines.next()?.to_string();
        let secret = Zeroizing::new(lines.next()?.to_string());
        let ip = lines.next()?.parse().ok()?;
        let host = lines.next()?.to_ascii_lowercase();
        let uri = lines.next()?.to_string();
        (!user.is_empty()).then_some(Check {
            user,
            secret,
            ip,
            host,
            uri,
        })
    }

    fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}\n{}\n{}\n{}\n{}\n",
            self.user,
            self.secret.as_str(),
            self.ip,
            self.host,
            self.uri
        ))
    }
}

/// Decides one check through the gateway's one path for requests (`App::decide`: a resent
/// check in its linger time inline, a password hash on a bounded login slot, the event
/// logged and counted); true lets the client in.
async fn decide(app: &Arc<App>, c: Check) -> bool {
    let started = Instant::now();
    let req = AccessRequest {
        method: "GET",
        host: &c.host,
        path: if c.uri.starts_with('/') { &c.uri } else { "/" },
        client_ip: c.ip,
        session: None,
        basic: Some(BasicCredentials {
            user: c.user,
            secret: c.secret,
        }),
    };
    // A failure was counted (as an error) where it happened; nothing more to count.
    let Ok(decision) = app.decide(req, started).await else {
        return false;
    };
    let (kind, ok) = match decision {
        Decision::Allow(Some(_)) => (Kind::Allow, true),
        Decision::Allow(None) | Decision::Challenge | Decision::Login | Decision::AwaitPush(_) => {
            (Kind::Challenge, false)
        }
        Decision::Deny => (Kind::Deny, false),
        Decision::BadRequest(_) => (Kind::BadRequest, false),
    };
    app.metrics.decision(kind, started.elapsed());
    ok
}

/// Binds a local socket (`key` names its setting in messages): a stale file is replaced,
/// then the configured group and mode are applied at once, so every start gives the
/// client's group its access again.
pub fn bind(key: &str, path: &str, group: &str, mode: u32) -> Result<tokio::net::UnixListener> {
    let gid = match group {
        "" => None,
        g => Some(group_id(g, std::path::Path::new("/etc/group"))?),
    };
    // Bound beside its place, given its group and mode, then renamed into place: at `path`
    // the socket never exists with other permissions than its own (a client that finds it
    // can connect at once).
    let fresh = format!("{path}.{}.new", std::process::id());
    let _ = std::fs::remove_file(&fresh);
    let listener = tokio::net::UnixListener::bind(&fresh).with_context(|| {
        format!("{key}: cannot listen on {path} (does its directory exist and belong to the gateway's user?)")
    })?;
    let placed = (|| {
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&fresh, None, Some(gid)).with_context(|| {
                format!("{key}_group = {group:?}: cannot give {path} to that group (the gateway must run as root or be a member of it)")
            })?;
        }
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("{key}: cannot set the mode of {path}"))?;
        std::fs::rename(&fresh, path).with_context(|| format!("{key}: cannot put the socket at {path}"))
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&fresh);
        return Err(e);
    }
    Ok(listener)
}

/// The id of group `name` (or a number) from a group file such as /etc/group.
fn group_id(name: &str, group_file: &std::path::Path) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string(group_file)
        .with_context(|| format!("[apache] check_socket_group: cannot read {}", group_file.display()))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .with_context(|| {
            format!(
                "[apache] check_socket_group = {name:?}: no such group in {}",
                group_file.display()
            )
        })
}

/// Answers `portcullis check` clients until the runtime stops.
pub async fn serve(app: Arc<App>, listener: tokio::net::UnixListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let mut buf = Zeroizing::new(Vec::with_capacity(256));
            let mut limited = (&mut conn).take(MAX_REQUEST as u64 + 1);
            let check = match tokio::time::timeout(READ_TIMEOUT, limited.read_to_end(&mut buf)).await {
                Ok(Ok(n)) if n <= MAX_REQUEST => std::str::from_utf8(&buf).ok().and_then(Check::parse),
                _ => None,
            };
            let Some(check) = check else {
                tracing::warn!("malformed check request on the check socket refused");
                let _ = conn.write_all(b"no\n").await;
                return;
            };
            let ok = decide(&app, check).await;
            let _ = conn.write_all(if ok { b"ok\n" } else { b"no\n" }).await;
        });
    }
}

/// `portcullis check`: exit 0 accepted, 1 refused, 2 error.
pub fn run(config: Settings) -> Result<ExitCode> {
    super::audit::init(config.server.log_format == LogFormat::Json);
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut input)
        .context("cannot read standard input")?;
    if input.len() > MAX_REQUEST {
        anyhow::bail!("standard input is longer than {MAX_REQUEST} bytes");
    }
    let text = Zeroizing::new(String::from_utf8_lossy(&input).into_owned());
    let mut lines = text.lines();
    let (Some(user), Some(secret)) = (lines.next(), lines.next()) else {
        anyhow::bail!("expected the user name and the password+code on two lines of standard input");
    };
    if user.is_empty() || user.contains(['\r', '\n']) {
        return Ok(ExitCode::from(1));
    }
    // mod_authnz_external describes the request in the environment (its HOST is the
    // client's host name, not the site: only HTTP_HOST names the site).
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.contains(['\r', '\n']));
    // No client address, no check: a default would put every client in one place (or in
    // a trusted network).
    let ip = var("IP").and_then(|v| v.parse::<IpAddr>().ok()).context(
        "IP is not set to the client's address: mod_authnz_external sets it; run `portcullis check` from Apache",
    )?;
    let check = Check {
        user: user.to_string(),
        secret: Zeroizing::new(secret.to_string()),
        ip,
        host: var("HTTP_HOST").unwrap_or_default(),
        uri: var("URI").unwrap_or_else(|| "/".to_string()),
    };
    let socket = config.apache.check_socket.clone();
    let connected = if socket.is_empty() {
        None
    } else {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(c) => Some(c),
            Err(e) if config.apache.check_fallback == CheckFallback::Refuse => {
                anyhow::bail!(
                    "[apache] check_socket {socket}: the gateway does not answer ({e}); refusing (check_fallback = \"refuse\"): start `portcullis serve`, or set check_fallback = \"local\""
                );
            }
            Err(e) => {
                tracing::warn!(socket = %socket, error = %e, "the gateway does not answer on the check socket; deciding locally, without its linger cache (bans are shared with the SQLite store or Redis state)");
                None
            }
        }
    };
    if let Some(mut conn) = connected {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        conn.write_all(check.encode().as_bytes())
            .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
            .context("cannot write to the check socket")?;
        let mut answer = String::new();
        conn.take(16)
            .read_to_string(&mut answer)
            .context("no answer on the check socket")?;
        return Ok(if answer == "ok\n" {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    // No gateway: decide here. Sessions are not needed (none is consulted).
    let mut config = config;
    config.core.session.store = SessionStoreKind::Memory;
    let app = Arc::new(App::new(config)?);
    // Multi-threaded (one worker): the PostgreSQL store waits on its own runtime, which a
    // single-threaded runtime cannot leave for the wait.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    Ok(if runtime.block_on(decide(&app, check)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod group_tests {
    use super::group_id;

    #[test]
    fn group_names_and_numbers_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("group");
        std::fs::write(&f, "root:x:0:\nwww-data:x:33:\nweird::x\n").unwrap();
        assert_eq!(group_id("www-data", &f).unwrap(), 33);
        assert_eq!(group_id("1000", &f).unwrap(), 1000);
        let e = group_id("nobody-here", &f).unwrap_err().to_string();
        assert!(e.contains("no such group"), "{e}");
    }
}

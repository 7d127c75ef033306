//! RFC 3164 lines to the local syslog socket (`/dev/log`) over a Unix datagram, the way
//! libc's `syslog(3)` sends them, without calling libc (whose `openlog` state is the host
//! process's, not ours).

use portcullis_core::{Clock, SystemClock};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// LOG_AUTH (facility 4) × 8 + LOG_INFO (6): where sshd writes its own authentication lines.
pub const AUTH_INFO: u8 = 4 * 8 + 6;

/// The syslog tag: the process name from `/proc/self/comm` (sshd rewrites argv[0], not comm)
/// and its pid, e.g. `sshd[1234]`.
pub fn tag() -> String {
    let name = std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pam_portcullis".to_string());
    format!("{name}[{}]", std::process::id())
}

/// One datagram: `<PRI>Mmm dd hh:mm:ss TAG: MESSAGE` in local time.
pub fn format_line(priority: u8, unix_time: i64, tag: &str, message: &str) -> String {
    let stamp = jiff::Timestamp::from_second(unix_time)
        .map(|t| {
            t.to_zoned_datetime(portcullis_store::local_time_zone())
                .strftime("%b %e %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| "Jan  1 00:00:00".to_string());
    // A line break inside a message would start a forged log line.
    let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("<{priority}>{stamp} {tag}: {message}")
}

/// Sends `message` to the socket; if there is no syslog daemon, writes it to stderr (sshd
/// started with `-e` puts that in its own log) so the attempt is never unrecorded.
pub fn send(socket: &Path, priority: u8, message: &str) {
    let line = format_line(priority, SystemClock.now(), &tag(), message);
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(line.as_bytes(), socket));
    if sent.is_err() {
        eprintln!("{}", line.split_once('>').map(|(_, rest)| rest).unwrap_or(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_shape_without_control_characters() {
        let line = format_line(AUTH_INFO, 0, "sshd[7]", "auth user=\"a\nb\"");
        assert!(line.starts_with("<38>"), "{line}");
        assert!(line.ends_with(" sshd[7]: auth user=\"a b\""), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn datagrams_reach_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        send(&path, AUTH_INFO, "hello");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<38>") && got.ends_with("]: hello"), "{got}");
    }
}

//! Why a file cannot be read, in words that say whose it is and what to run: a newcomer
//! who ran `init` with sudo and the next command without meets this first.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `path` could not be opened with `error`: the reason and what to do about it.
pub fn explain(path: &Path, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "there is no such file; make one with `portcullis init --dir DIR`, or name another file".to_string()
        }
        io::ErrorKind::PermissionDenied => {
            // The file itself may be out of sight (a 0700 directory): name the nearest
            // thing on the way that can be seen and is not this user's to read.
            let me = current_uid();
            let owner = path
                .ancestors()
                .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_path_buf(), m)))
                .filter(|(_, m)| Some(m.uid()) != me);
            match (owner, me) {
                (Some((at, m)), me) => {
                    let owner = user_name(m.uid());
                    format!(
                        "permission denied: {} belongs to {owner} (mode {:04o}) and this runs as {}; \
                         run the command as {owner}, e.g. `sudo -u {owner} portcullis …`",
                        at.display(),
                        m.mode() & 0o7777,
                        me.map_or_else(|| "another user".to_string(), user_name),
                    )
                }
                (None, _) => "permission denied; check the modes of the file and its directories".to_string(),
            }
        }
        _ => error.to_string(),
    }
}

/// The effective uid of this process: the owner of its /proc entry (no libc call).
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The login name of `uid` from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| name_in_passwd(&text, uid))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The name on the /etc/passwd line whose third field is `uid`.
fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found: u32 = fields.nth(1)?.parse().ok()?;
        (found == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_name_their_uid() {
        let text = "root:x:0:0:root:/root:/bin/bash\nportcullis:x:998:998::/etc/portcullis:/usr/sbin/nologin\n";
        assert_eq!(name_in_passwd(text, 998).as_deref(), Some("portcullis"));
        assert_eq!(name_in_passwd(text, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(text, 5), None);
        assert_eq!(name_in_passwd("broken\n::1\n", 1), None);
    }

    #[test]
    fn a_missing_file_points_at_init() {
        let e = io::Error::from(io::ErrorKind::NotFound);
        assert!(explain(Path::new("/nonexistent/portcullis.toml"), &e).contains("portcullis init"));
    }
}

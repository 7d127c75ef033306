//! Crash-safe file replacement and lock-file helpers shared by every store that rewrites a file.
//!
//! Design notes:
//! * Locks on `<file>.lock` follow the file's own tool. mod_authn_otp (`apr_file_lock`)
//!   keeps its lock file and record-locks it: portcullis takes std's `File::lock` /
//!   `File::lock_shared` (`flock(2)`) and an open-file-description record lock
//!   (`F_OFD_SETLKW`, through `nix`), which conflicts with the classic `fcntl` locks APR
//!   takes (fcntl(2)); an OFD lock belongs to the descriptor, so another thread closing the
//!   file does not drop it. pam_oath (liboath >= 2.6.12 and the CVE-2024-47191 backports)
//!   creates the lock file with `O_EXCL`, fails a login while one exists, and unlinks it after
//!   it unlocks: for its files the lock is the file's existence ([`LockGuard::created`]), and
//!   portcullis waits while one exists. (Record-locking pam_oath's file is not enough: in
//!   the moment between its unlock and its unlink portcullis would get the lock on an inode
//!   about to vanish, and a second pam_oath would create a new one and write beside it —
//!   seen in testing.) Our lock file names our process, so one left by a killed writer is
//!   taken over at once; an empty one (pam_oath's) after it has been unheld for 2 s.
//! * pam_oath reads users.oath *before* it creates its lock file and writes back what it
//!   read, so a portcullis write landing between its read and its lock would be overwritten
//!   (as one pam_oath login's is by another's; seen on a loaded CI machine). So our lock file
//!   outlives our write by [`LINGER`], marked released: a pam_oath that read the old file
//!   meets it and fails the login (the user types the next code) instead of writing the
//!   old counters back; other portcullis writers take a released lock file over at once.
//!   What is left needs pam_oath to stall between its read and its lock for longer than that.
//! * Every open of a path that an attacker might have pre-created uses `O_NOFOLLOW`,
//!   and the temporary file additionally uses `O_EXCL`, so a planted symlink is
//!   refused instead of followed (the pam_oath CVE-2024-47191 pattern).
//! * Temporary files get a unique name (`.<name>.portcullis-tmp.<pid>.<random>`) so a
//!   file left behind by a writer killed mid-write never blocks the next writer.
//! * New files are created mode 0600 — the same mode both mod_authn_otp
//!   (`APR_UREAD|APR_UWRITE`) and pam_oath (`umask(~(S_IRUSR|S_IWUSR))`) use; the
//!   original owner and group are restored on a best-effort basis (pam_oath does
//!   `fchown`, mod_authn_otp does not).

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Suffix both mod_authn_otp (`LOCKFILE_SUFFIX`) and pam_oath (`"%s.lock"`) append to the users file name.
pub const LOCK_SUFFIX: &str = ".lock";

/// Marker inside our temporary file names; used to find stale ones left by crashed writers.
const TEMP_MARKER: &str = ".portcullis-tmp.";

/// Returns `<path>.lock`, the lock-file name the original tools use.
pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(LOCK_SUFFIX);
    PathBuf::from(s)
}

fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Opens an existing file for reading without following a final symlink, and checks it is a regular file.
pub fn open_read_nofollow(path: &Path, role: &'static str) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if is_symlink_error(&e) {
                Error::Symlink {
                    path: path.to_owned(),
                    role,
                }
            } else if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound {
                    path: path.to_owned(),
                    role,
                }
            } else {
                Error::io(path, "open for reading", e)
            }
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(Error::NotRegular {
            path: path.to_owned(),
            role,
        });
    }
    Ok(file)
}

/// An advisory lock held on a lock file; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    remove: bool,
    exclusive: bool,
    /// Leave the lock file in place, marked released, for [`LINGER`] after the write.
    linger: bool,
}

impl LockGuard {
    /// Creates (mode 0600, never following a symlink) and exclusively locks `lock_path`, blocking until free.
    pub fn exclusive(lock_path: &Path) -> Result<Self, Error> {
        Self::acquire(lock_path, |f| f.lock(), "lock (exclusive)", true)
    }

    /// Creates (mode 0600, never following a symlink) and shared-locks `lock_path`, blocking until free.
    pub fn shared(lock_path: &Path) -> Result<Self, Error> {
        Self::acquire(lock_path, |f| f.lock_shared(), "lock (shared)", false)
    }

    fn acquire(
        lock_path: &Path,
        lock: impl Fn(&File) -> io::Result<()>,
        what: &'static str,
        exclusive: bool,
    ) -> Result<Self, Error> {
        loop {
            let file = open_lock_file(lock_path)?;
            lock(&file).map_err(|e| Error::io(lock_path, what, e))?;
            record_lock(&file, exclusive).map_err(|e| Error::io(lock_path, what, e))?;
            // A holder that removes the lock file on release (see `remove_on_release`) may
            // have unlinked the inode we waited on; then our lock guards nothing, so retry
            // on whatever file the name now points to.
            let held = file.metadata().map_err(|e| Error::io(lock_path, "stat", e))?;
            match fs::symlink_metadata(lock_path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(LockGuard {
                        file,
                        path: lock_path.to_owned(),
                        remove: false,
                        exclusive,
                        linger: false,
                    });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(lock_path, "stat", e)),
            }
        }
    }

    /// Removes the lock file when the lock is released, while still holding it. Only for an
    /// exclusive lock: a shared holder that unlinks the name can delete a lock file that a
    /// writer has just created and locked, letting a second writer in beside it. pam_oath
    /// (liboath >= 2.6.12 and the CVE-2024-47191 backports, e.g. Debian 12's 2.6.7-3.1+deb12u1)
    /// creates `<file>.lock` with `O_EXCL` and unlinks
    /// it afterwards, so a lock file left behind makes every later pam_oath login fail.
    pub fn remove_on_release(mut self) -> Self {
        self.remove = self.exclusive;
        self
    }

    /// After a write that replaced the file, keep a [`LockGuard::created`] lock file for
    /// [`LINGER`] on release, so a pam_oath that read the replaced file fails its login.
    pub fn linger_after_write(&mut self) {
        self.linger = self.remove;
    }

    /// The lock file this guard holds.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock file's name still points to the inode this guard locked.
    fn names_our_file(&self) -> bool {
        match (self.file.metadata(), fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.linger {
            self.release_lingering();
            return;
        }
        // Only the exclusive holder of the inode the name points to may unlink it (then no
        // one else can have made a new one there); waiters on it see it gone and retry.
        if self.remove && self.names_our_file() {
            let _ = fs::remove_file(&self.path);
        }
        // Closing the descriptor releases the lock anyway; unlocking first just makes it prompt.
        let _ = self.file.unlock();
    }
}

/// How long an empty pam_oath-style lock file may sit unlocked before it counts as left
/// behind by a pam_oath that died (pam_oath holds its file for milliseconds). One of ours
/// names its process, and is stale as soon as that process is gone.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a released pam_oath-style lock file stays: longer than pam_oath takes from
/// reading users.oath to creating its lock file, even on a busy machine.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(30);
/// What a lock file of ours says after its write, while it lingers.
const RELEASED: &str = "released";
/// How long to wait for a pam_oath-style lock file before giving up.
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl LockGuard {
    /// liboath's protocol for pam_oath's `users.oath`: the lock *is* the lock file, created
    /// with `O_EXCL` and removed on release (liboath's `fopen(lockfile, "wx")` then unlink).
    /// While it exists, wait: its creator is between its lock and its unlink. Taking the
    /// record lock on someone else's file would not do: pam_oath unlocks before it unlinks,
    /// and a second pam_oath creating a new file next would write beside us. A file nobody
    /// has held for [`STALE_AFTER`] was left by a writer that died and is removed.
    pub fn created(lock_path: &Path) -> Result<Self, Error> {
        let started = std::time::Instant::now();
        let mut unheld_since: Option<((u64, u64), std::time::Instant)> = None;
        loop {
            let created = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(lock_path);
            match created {
                Ok(mut file) => {
                    file.lock().map_err(|e| Error::io(lock_path, "lock (exclusive)", e))?;
                    record_lock(&file, true).map_err(|e| Error::io(lock_path, "lock (exclusive)", e))?;
                    // Who holds it, so a writer killed mid-update does not stall the next one.
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(LockGuard {
                        file,
                        path: lock_path.to_owned(),
                        remove: true,
                        exclusive: true,
                        linger: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(lock_path, "create lock file", e)),
            }
            if started.elapsed() > CREATE_WAIT {
                return Err(Error::io(
                    lock_path,
                    "create lock file",
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("held for more than {} s by another writer", CREATE_WAIT.as_secs()),
                    ),
                ));
            }
            // Someone's, or left behind: held now, or unheld for how long? A symlink or a
            // directory there is no lock file and is refused, never waited on.
            if let Ok(m) = fs::symlink_metadata(lock_path) {
                if m.file_type().is_symlink() {
                    return Err(Error::Symlink {
                        path: lock_path.to_owned(),
                        role: "lock file",
                    });
                }
                if !m.is_file() {
                    return Err(Error::NotRegular {
                        path: lock_path.to_owned(),
                        role: "lock file",
                    });
                }
            }
            let existing = match open_lock_file_existing(lock_path) {
                Ok(f) => Some(f),
                Err(e) if is_symlink_error(&e) => {
                    return Err(Error::Symlink {
                        path: lock_path.to_owned(),
                        role: "lock file",
                    });
                }
                Err(_) => None,
            };
            if let Some(existing) = existing
                && let Ok(meta) = existing.metadata()
            {
                if !meta.is_file() {
                    return Err(Error::NotRegular {
                        path: lock_path.to_owned(),
                        role: "lock file",
                    });
                }
                let inode = (meta.dev(), meta.ino());
                if try_record_lock(&existing) {
                    let since = match unheld_since {
                        Some((i, t)) if i == inode => t,
                        _ => std::time::Instant::now(),
                    };
                    unheld_since = Some((inode, since));
                    let stale = since.elapsed() > STALE_AFTER || holder_is_done(&existing);
                    if stale && fs::symlink_metadata(lock_path).is_ok_and(|m| (m.dev(), m.ino()) == inode) {
                        let _ = fs::remove_file(lock_path);
                        continue;
                    }
                } else {
                    unheld_since = None;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// True when the lock file is one of ours that its writer has released (it lingers only
/// for pam_oath), or whose process no longer runs.
fn holder_is_done(file: &File) -> bool {
    let mut text = String::new();
    let _ = io::Read::read_to_string(&mut io::Read::take(file, 64), &mut text);
    let mut words = text.split_whitespace();
    let Some(Ok(pid)) = words.next().map(str::parse::<u32>) else {
        return false;
    };
    words.next() == Some(RELEASED) || !Path::new(&format!("/proc/{pid}")).exists()
}

impl LockGuard {
    /// Ends a [`LockGuard::created`] lock: marks the file released and unlocks it, waits
    /// [`LINGER`] so that a pam_oath which read the replaced file meets it, then removes it
    /// unless another writer has already taken it over (removers hold its record lock, so
    /// only one removes a given file).
    fn release_lingering(&mut self) {
        use std::os::unix::fs::FileExt;
        let _ = self.file.set_len(0);
        let _ = self
            .file
            .write_at(format!("{} {RELEASED}\n", std::process::id()).as_bytes(), 0);
        let _ = nix::fcntl::fcntl(
            &self.file,
            nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file(libc::F_UNLCK)),
        );
        let _ = self.file.unlock();
        std::thread::sleep(LINGER);
        if try_record_lock(&self.file) && self.names_our_file() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Opens an existing lock file without creating it or following a symlink.
fn open_lock_file_existing(lock_path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path)
}

/// Whether a whole-file write lock can be had at once (nobody holds a record lock on the
/// file); the lock taken to find out goes when `file` is closed.
fn try_record_lock(file: &File) -> bool {
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK))).is_ok()
}

/// A record-lock request of `kind` (`F_WRLCK`/`F_RDLCK`) covering the whole file.
fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Waits for and takes a whole-file OFD record lock (write or read), the kind of lock that
/// conflicts with the classic `fcntl` locks pam_oath and mod_authn_otp take. It is released
/// when the descriptor is closed.
fn record_lock(file: &File, exclusive: bool) -> io::Result<()> {
    let whole = whole_file(if exclusive { libc::F_WRLCK } else { libc::F_RDLCK });
    loop {
        match nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLKW(&whole)) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

fn open_lock_file(lock_path: &Path) -> Result<File, Error> {
    // No truncate: the lock file is empty by convention and another process may hold it.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path)
        .map_err(|e| {
            if is_symlink_error(&e) {
                Error::Symlink {
                    path: lock_path.to_owned(),
                    role: "lock file",
                }
            } else {
                Error::io(lock_path, "open lock file", e)
            }
        })?;
    let meta = file.metadata().map_err(|e| Error::io(lock_path, "stat", e))?;
    if !meta.is_file() {
        return Err(Error::NotRegular {
            path: lock_path.to_owned(),
            role: "lock file",
        });
    }
    Ok(file)
}

fn split_path(path: &Path) -> Result<(PathBuf, OsString), Error> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            "split path",
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

fn temp_prefix(name: &OsString) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(TEMP_MARKER);
    s
}

fn unique_suffix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS RNG, which gives an unguessable suffix without a rand dependency.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{}.{:016x}", std::process::id(), h.finish())
}

/// Atomically replaces `path` with `bytes`: unique 0600 temp file (O_CREAT|O_EXCL|O_NOFOLLOW), write, fsync, rename, fsync dir.
///
/// Refuses if `path` is a symlink. Readers see either the old or the new content, never a mix,
/// even if this process is killed at any point.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_as(path, bytes, "users file")
}

/// [`write_atomic`] for another kind of secret file (`role` names it in errors, e.g. "QR code").
pub fn write_atomic_as(path: &Path, bytes: &[u8], role: &'static str) -> Result<(), Error> {
    let original = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::Symlink {
                path: path.to_owned(),
                role,
            });
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::NotRegular {
                path: path.to_owned(),
                role,
            });
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, "stat", e)),
    };
    let (dir, name) = split_path(path)?;

    let mut tmp_name = temp_prefix(&name);
    tmp_name.push(unique_suffix());
    let tmp_path = dir.join(&tmp_name);
    // The suffix is unguessable, so a file already at this name was planted: never touch it.
    // (With O_EXCL a planted symlink is "already exists" too, never followed.)
    let mut tmp = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp_path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::Symlink {
                    path: tmp_path.clone(),
                    role: "temporary file",
                }
            } else {
                Error::io(&tmp_path, "create temporary file", e)
            }
        })?;

    let result = (|| {
        tmp.write_all(bytes)
            .map_err(|e| Error::io(&tmp_path, "write temporary file", e))?;
        if let Some(m) = &original {
            // Best effort: keeping the owner lets a root-run importer leave the file usable by the daemon.
            let _ = std::os::unix::fs::fchown(&tmp, Some(m.uid()), Some(m.gid()));
        }
        tmp.sync_all()
            .map_err(|e| Error::io(&tmp_path, "fsync temporary file", e))?;
        fs::rename(&tmp_path, path).map_err(|e| Error::io(path, "rename temporary file over", e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(e);
    }
    drop(tmp);
    // The rename is only durable once the directory entry is on disk.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&dir, "fsync directory", e))?;
    Ok(())
}

/// Removes temporary files that earlier (crashed) writers of `path` left behind; returns how many.
///
/// Only safe while holding the exclusive lock for `path`: every writer that goes through
/// [`crate::otp_users::update`] creates its temp file only while holding that lock.
pub fn remove_stale_temps(path: &Path) -> Result<usize, Error> {
    let (dir, name) = split_path(path)?;
    let prefix = temp_prefix(&name);
    let prefix = prefix.as_encoded_bytes();
    let mut removed = 0;
    let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, "list directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, "list directory", e))?;
        let fname = entry.file_name();
        if fname.as_encoded_bytes().starts_with(prefix) {
            // remove_file never follows a symlink, so a planted link is just unlinked.
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_sets_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_refuses_symlink_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("f");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, b"evil").unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn lock_refuses_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("f.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = LockGuard::exclusive(&link).unwrap_err();
        assert!(matches!(err, Error::Symlink { role: "lock file", .. }), "{err}");
        assert!(err.to_string().contains("f.lock"));
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        fs::write(&p, b"x").unwrap();
        fs::write(dir.path().join(".users.portcullis-tmp.1.abc"), b"half").unwrap();
        fs::write(dir.path().join("other"), b"keep").unwrap();
        assert_eq!(remove_stale_temps(&p).unwrap(), 1);
        assert!(dir.path().join("other").exists());
    }

    /// Regression (issue 10.1): a shared holder unlinked the lock file a writer had just
    /// created and locked, so a second writer locked a new file beside it.
    #[test]
    fn a_shared_holder_never_removes_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("f.lock");
        let reader = LockGuard::shared(&lock).unwrap().remove_on_release();
        drop(reader);
        assert!(lock.exists(), "a shared lock removed the lock file");
        // An exclusive holder removes it, but only while the name is still its own file.
        let writer = LockGuard::exclusive(&lock).unwrap().remove_on_release();
        fs::remove_file(&lock).unwrap();
        fs::write(&lock, b"").unwrap();
        let theirs = fs::metadata(&lock).unwrap().ino();
        drop(writer);
        assert_eq!(
            fs::metadata(&lock).unwrap().ino(),
            theirs,
            "removed another's lock file"
        );
    }

    #[test]
    fn reading_tells_a_symlink_a_directory_and_a_missing_file_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_read_nofollow(&file, "users file").is_ok());
        let err = open_read_nofollow(&link, "users file").unwrap_err();
        assert!(matches!(err, Error::Symlink { role: "users file", .. }), "{err}");
        let err = open_read_nofollow(dir.path(), "users file").unwrap_err();
        assert!(matches!(err, Error::NotRegular { .. }), "{err}");
        let err = open_read_nofollow(&dir.path().join("missing"), "users file").unwrap_err();
        assert!(matches!(err, Error::NotFound { role: "users file", .. }), "{err}");
        assert!(err.to_string().contains("missing: no such file"), "{err}");
    }

    #[test]
    fn write_atomic_refuses_a_directory_and_reports_the_failing_step() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(matches!(err, Error::NotRegular { .. }), "{err}");
        // A path under a regular file cannot even be looked at.
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = write_atomic(&file.join("g"), b"x").unwrap_err();
        assert!(matches!(err, Error::Io { op: "stat", .. }), "{err}");
        // A missing directory fails when the temporary file is made, at once.
        let err = write_atomic(&dir.path().join("missing/g"), b"x").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    op: "create temporary file",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        let (dir, name) = split_path(Path::new("users")).unwrap();
        assert_eq!((dir, name), (PathBuf::from("."), OsString::from("users")));
        let (dir, _) = split_path(Path::new("/etc/users")).unwrap();
        assert_eq!(dir, PathBuf::from("/etc"));
        assert!(split_path(Path::new("/")).is_err());
    }

    #[test]
    fn temporary_names_are_unique_and_carry_the_pid() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}.", std::process::id())), "{a}");
        assert_eq!(a.len(), b.len());
        assert!(a.len() > std::process::id().to_string().len() + 8, "{a}");
    }

    #[test]
    fn a_lock_file_is_done_when_released_or_its_process_is_gone_never_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let me = std::process::id();
        for (text, done) in [
            (format!("{me}\n"), false),
            (format!("{me} {RELEASED}\n"), true),
            ("4294967295\n".to_owned(), true),
            (String::new(), false),
            ("pam_oath\n".to_owned(), false),
        ] {
            fs::write(&p, &text).unwrap();
            assert_eq!(holder_is_done(&File::open(&p).unwrap()), done, "{text:?}");
        }
    }

    #[test]
    fn a_written_pam_oath_lock_file_lingers_released_and_is_taken_over_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("users.oath.lock");
        let mut first = LockGuard::created(&lock).unwrap();
        first.linger_after_write();
        let releaser = std::thread::spawn(move || drop(first));
        // Until the releaser is done, the file is there (pam_oath fails on it) and says released.
        let mut seen_released = false;
        while !releaser.is_finished() {
            if fs::read_to_string(&lock).is_ok_and(|t| t.ends_with(&format!("{RELEASED}\n"))) {
                seen_released = true;
                break;
            }
            std::thread::yield_now();
        }
        assert!(seen_released, "the lock file vanished with the write");
        // A portcullis writer does not wait out the linger's end to get its own lock file.
        let second = LockGuard::created(&lock).unwrap();
        assert_eq!(fs::read_to_string(&lock).unwrap(), format!("{}\n", std::process::id()));
        releaser.join().unwrap();
        assert!(lock.exists(), "the releaser removed the next writer's lock file");
        drop(second);
        assert!(!lock.exists(), "an unwritten lock is removed at once");
    }

    #[test]
    fn lock_path_appends_suffix() {
        assert_eq!(
            lock_path_for(Path::new("/etc/users.oath")),
            PathBuf::from("/etc/users.oath.lock")
        );
    }
}

//! First factors: argon2id hashes of our own, Apache htpasswd and htdigest files.

mod apr1;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, phc::PasswordHash};
use md5::{Digest, Md5};
use sha1::Sha1;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Why a password file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}; check the path and that portcullis may read it")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored hash is not in a format we verify.
    #[error(
        "{path}:{line}: the hash of user {user:?} uses an unsupported scheme ({scheme}); re-create it with `htpasswd -B` (bcrypt)"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Whose hash.
        user: String,
        /// What kind of hash it looks like.
        scheme: &'static str,
    },
    /// Hashing failed (bad parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// A directory server (LDAP) did not answer, refused the service account or its TLS,
    /// or gave an answer that decides nothing (a name matched twice).
    #[error("{server}: {detail}")]
    Server {
        /// The server's URL (or URLs, tried in turn).
        server: String,
        /// What went wrong, and what to do.
        detail: String,
    },
}

/// Hashes a new password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// A hash of a password nobody knows, verified for unknown users so they cost the same time.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("portcullis-dummy-password").unwrap_or_default());

/// argon2 work areas kept for reuse between verifications, with when each was last used.
/// A login flood reuses them (no 19 MiB allocated per attempt); an idle gateway gives them
/// back ([`release_idle_work_areas`]).
struct WorkAreas(Mutex<Vec<(Vec<argon2::Block>, Instant)>>);

static WORK_AREAS: WorkAreas = WorkAreas(Mutex::new(Vec::new()));

/// Most areas kept between verifications (more are freed after use).
const WORK_AREAS_KEPT: usize = 8;

/// What a work area reserves at least: more than glibc's largest dynamic mmap threshold
/// (`DEFAULT_MMAP_THRESHOLD_MAX`, 32 MiB on 64-bit; see mallopt(3)). An area that size is
/// always a mapping of its own, returned to the system when freed, and freeing it never
/// raises the threshold; a 19 MiB area freed once would (glibc then serves the next from
/// its pools, where it stays resident after it is freed). Only the pages used count in RSS.
const AREA_RESERVE_BYTES: usize = (32 << 20) + (64 << 10);

impl WorkAreas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<argon2::Block>, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a zeroed area of `blocks` blocks, kept or new, and keeps it afterwards.
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
        let taken = self.lock().pop();
        let mut area = taken.map(|(a, _)| a).unwrap_or_else(|| {
            Vec::with_capacity((AREA_RESERVE_BYTES / std::mem::size_of::<argon2::Block>()).max(blocks))
        });
        if area.len() < blocks {
            area.resize(blocks, argon2::Block::default());
        }
        let result = f(&mut area[..blocks]);
        // The area held password-derived state: wipe it before it is kept or freed.
        area.iter_mut().for_each(|b| *b = argon2::Block::default());
        let mut pool = self.lock();
        if pool.len() < WORK_AREAS_KEPT {
            pool.push((area, Instant::now()));
        }
        result
    }

    fn release_idle(&self, idle: Duration) -> usize {
        let mut pool = self.lock();
        let before = pool.len();
        pool.retain(|(_, used)| used.elapsed() < idle);
        before - pool.len()
    }
}

fn with_work_area<T>(blocks: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    WORK_AREAS.with(blocks, f)
}

/// Frees the argon2 work areas no verification has used for `idle` (the gateway calls this
/// now and then, so memory taken by a burst of logins goes back to the system); returns
/// how many were freed.
pub fn release_idle_work_areas(idle: Duration) -> usize {
    WORK_AREAS.release_idle(idle)
}

/// Verifies `password` against an argon2 PHC string; false for a malformed hash.
pub fn verify_hash(phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        argon2::Algorithm::new(hash.algorithm.as_str()),
        argon2::Params::try_from(&hash),
        hash.salt.as_ref(),
        hash.hash.as_ref(),
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.as_bytes().len()]);
    let ok = with_work_area(blocks, |area| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, area)
    });
    ok.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Spends the time of one argon2 verification and returns false.
pub fn verify_dummy(password: &str) -> bool {
    let _ = verify_hash(&DUMMY_HASH, password);
    false
}

/// Compares two secrets in constant time (for PINs kept in users files).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Verifies one htpasswd hash (bcrypt `$2y$`, `$apr1$` MD5, `{SHA}`).
pub fn verify_htpasswd_hash(hash: &str, password: &str) -> Result<bool, &'static str> {
    if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$") {
        Ok(bcrypt::verify(password, hash).unwrap_or(false))
    } else if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, _) = rest.split_once('$').ok_or("a malformed $apr1$ hash")?;
        let expected = apr1::hash(password.as_bytes(), salt.as_bytes());
        Ok(constant_time_eq(&expected, hash))
    } else if let Some(b64) = hash.strip_prefix("{SHA}") {
        let digest = Sha1::digest(password.as_bytes());
        let mine = data_encoding::BASE64.encode(&digest);
        Ok(constant_time_eq(&mine, b64))
    } else if hash.starts_with("$1$") {
        Err("MD5-crypt ($1$)")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Err("SHA-crypt ($5$/$6$)")
    } else if hash.len() == 13 {
        Err("DES crypt")
    } else {
        Err("plain text or unknown")
    }
}

/// A first-factor source outside our store: an htpasswd or htdigest file.
#[derive(Debug, Clone)]
pub enum ExternalSource {
    /// Apache `htpasswd` file (`user:hash`).
    Htpasswd(PathBuf),
    /// Apache `htdigest` file (`user:realm:md5(user:realm:password)`), for one realm.
    Htdigest {
        /// The file.
        path: PathBuf,
        /// The realm whose lines count.
        realm: String,
    },
}

fn read(path: &Path) -> Result<Zeroizing<String>, PasswordError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| PasswordError::Read {
            path: path.to_path_buf(),
            source,
        })
}

impl ExternalSource {
    /// `Some(true/false)` if the user is in the file, `None` if not (the caller still spends
    /// the time of a verification so unknown users are not faster).
    pub fn check(&self, user: &str, password: &str) -> Result<Option<bool>, PasswordError> {
        match self {
            ExternalSource::Htpasswd(path) => {
                let text = read(path)?;
                for (i, line) in text.lines().enumerate() {
                    let Some((name, hash)) = line.trim_end().split_once(':') else {
                        continue;
                    };
                    if name != user || line.starts_with('#') {
                        continue;
                    }
                    return verify_htpasswd_hash(hash, password).map(Some).map_err(|scheme| {
                        PasswordError::Unsupported {
                            path: path.clone(),
                            line: i + 1,
                            user: user.to_string(),
                            scheme,
                        }
                    });
                }
                Ok(None)
            }
            ExternalSource::Htdigest { path, realm } => {
                let text = read(path)?;
                let mine = Zeroizing::new(
                    data_encoding::HEXLOWER.encode(&Md5::digest(format!("{user}:{realm}:{password}").as_bytes())),
                );
                for line in text.lines() {
                    let mut parts = line.trim_end().splitn(3, ':');
                    let (Some(n), Some(r), Some(h)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    if n == user && r == realm {
                        return Ok(Some(constant_time_eq(&mine, &h.to_ascii_lowercase())));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The line of `user` in the file (for htdigest, of the configured realm), if any.
    fn line_of(&self, user: &str) -> Result<Option<Zeroizing<String>>, PasswordError> {
        let text = read(self.path())?;
        let found = text.lines().map(str::trim_end).find(|line| match self {
            ExternalSource::Htpasswd(_) => {
                !line.starts_with('#') && line.split_once(':').is_some_and(|(n, _)| n == user)
            }
            ExternalSource::Htdigest { realm, .. } => {
                let mut parts = line.splitn(3, ':');
                parts.next() == Some(user) && parts.next() == Some(realm.as_str()) && parts.next().is_some()
            }
        });
        Ok(found.map(|l| Zeroizing::new(l.to_string())))
    }

    /// This source behind the first-factor seam.
    pub fn shared(self) -> std::sync::Arc<dyn crate::factor::PasswordSource> {
        std::sync::Arc::new(self)
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        match self {
            ExternalSource::Htpasswd(p) => p,
            ExternalSource::Htdigest { path, .. } => path,
        }
    }
}

impl crate::factor::PasswordSource for ExternalSource {
    fn name(&self) -> &'static str {
        match self {
            ExternalSource::Htpasswd(_) => "htpasswd",
            ExternalSource::Htdigest { .. } => "htdigest",
        }
    }

    fn check(&self, user: &str, password: &str) -> Result<Option<bool>, PasswordError> {
        ExternalSource::check(self, user, password)
    }

    fn fingerprint(&self, user: &str) -> Result<Option<[u8; 16]>, PasswordError> {
        // The line holds a salted (htpasswd) or realm-bound (htdigest) hash, never the
        // password; a digest of it changes whenever `htpasswd`/`htdigest` sets a new one.
        Ok(self.line_of(user)?.map(|line| {
            let mut h = sha2::Sha256::new();
            h.update(b"portcullis external first factor\0");
            h.update(line.as_bytes());
            let mut out = [0u8; 16];
            out.copy_from_slice(&h.finalize()[..16]);
            out
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_areas_are_reused_then_given_back_when_idle() {
        let areas = WorkAreas(Mutex::new(Vec::new()));
        let first = areas.with(8, |a| a.as_ptr() as usize);
        assert_eq!(areas.with(8, |a| a.as_ptr() as usize), first, "the kept area is reused");
        {
            let pool = areas.lock();
            assert_eq!(pool.len(), 1);
            assert!(pool[0].0.capacity() * std::mem::size_of::<argon2::Block>() > 32 << 20);
            assert!(
                pool[0].0.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)),
                "wiped after use"
            );
        }
        assert_eq!(areas.release_idle(Duration::from_secs(3600)), 0, "recently used: kept");
        assert_eq!(areas.release_idle(Duration::ZERO), 1);
        assert!(areas.lock().is_empty());
    }
    use std::io::Write;

    #[test]
    fn htpasswd_and_htdigest_files_keep_the_password_source_contract() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let line = |pw: &str| format!("ann:{}\n", bcrypt::hash(pw, 4).unwrap());
        std::fs::write(&htpasswd, format!("# ann:not-this\nbob:{{SHA}}x\n{}", line("pw-ann"))).unwrap();
        let source = ExternalSource::Htpasswd(htpasswd.clone());
        crate::factor::check_password_source_contract(&source, "ann", "pw-ann", &|| {
            std::fs::write(&htpasswd, format!("bob:{{SHA}}x\n{}", line("changed pw"))).unwrap();
        });

        let htdigest = dir.path().join("htdigest");
        let line = |realm: &str, pw: &str| {
            let h = data_encoding::HEXLOWER.encode(&Md5::digest(format!("ann:{realm}:{pw}").as_bytes()));
            format!("ann:{realm}:{h}\n")
        };
        std::fs::write(&htdigest, line("other", "changed pw") + &line("wiki", "pw-ann")).unwrap();
        let source = ExternalSource::Htdigest {
            path: htdigest.clone(),
            realm: "wiki".into(),
        };
        crate::factor::check_password_source_contract(&source, "ann", "pw-ann", &|| {
            std::fs::write(&htdigest, line("other", "changed pw") + &line("wiki", "changed pw")).unwrap();
        });
    }

    #[test]
    fn argon2_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_hash(&h, "correct horse"));
        assert!(!verify_hash(&h, "correct horsf"));
        assert!(!verify_hash("garbage", "x"));
        assert!(!verify_dummy("x"));
    }

    #[test]
    fn pooled_verification_agrees_with_the_crate_for_other_parameters() {
        use argon2::password_hash::PasswordHasher as _;
        for (alg, m, t, p) in [
            (argon2::Algorithm::Argon2id, 64, 1, 1),
            (argon2::Algorithm::Argon2i, 32, 3, 2),
            (argon2::Algorithm::Argon2d, 256, 2, 4),
        ] {
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let a = Argon2::new(alg, argon2::Version::V0x13, params);
            let phc = a.hash_password(b"pw").unwrap().to_string();
            assert!(verify_hash(&phc, "pw"), "{phc}");
            assert!(!verify_hash(&phc, "pW"), "{phc}");
        }
        // v=16 (argon2 1.0) hashes still verify.
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x10, params);
        let phc = a.hash_password(b"old").unwrap().to_string();
        assert!(verify_hash(&phc, "old"), "{phc}");
    }

    #[test]
    fn htpasswd_schemes() {
        // Generated with `openssl passwd -apr1 -salt Ay2bQ5dm secret` and `htpasswd -nbs` for user "u", password "secret".
        let apr1 = "$apr1$Ay2bQ5dm$pHZeaQFcXwcgQb1EbI7tp.";
        assert_eq!(verify_htpasswd_hash(apr1, "secret"), Ok(true));
        assert_eq!(verify_htpasswd_hash(apr1, "Secret"), Ok(false));
        let sha = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
        assert_eq!(verify_htpasswd_hash(sha, "secret"), Ok(true));
        let b = bcrypt::hash("secret", 4).unwrap();
        assert_eq!(verify_htpasswd_hash(&b, "secret"), Ok(true));
        assert_eq!(verify_htpasswd_hash(&b, "nope"), Ok(false));
        assert!(verify_htpasswd_hash("abDEFghIJklMN", "x").is_err());
        // Every bcrypt prefix htpasswd and other tools write.
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let h = format!("{prefix}{}", &b[4..]);
            assert_eq!(verify_htpasswd_hash(&h, "secret"), Ok(true), "{prefix}");
        }
        assert_eq!(verify_htpasswd_hash("$1$salt$hash", "x"), Err("MD5-crypt ($1$)"));
        assert_eq!(verify_htpasswd_hash("$5$salt$hash", "x"), Err("SHA-crypt ($5$/$6$)"));
        assert_eq!(verify_htpasswd_hash("$6$salt$hash", "x"), Err("SHA-crypt ($5$/$6$)"));
        assert_eq!(verify_htpasswd_hash("abDEFghIJklMN", "x"), Err("DES crypt"));
        assert_eq!(verify_htpasswd_hash("secret", "secret"), Err("plain text or unknown"));
        assert_eq!(
            verify_htpasswd_hash("$apr1$nosalt", "x"),
            Err("a malformed $apr1$ hash")
        );
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("htpasswd");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "alice:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=").unwrap();
        writeln!(f, "old:abDEFghIJklMN").unwrap();
        let src = ExternalSource::Htpasswd(p.clone());
        assert_eq!(src.check("alice", "secret").unwrap(), Some(true));
        assert_eq!(src.check("alice", "x").unwrap(), Some(false));
        assert_eq!(src.check("bob", "x").unwrap(), None);
        let err = src.check("old", "x").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("htpasswd -B"), "{err}");

        let d = dir.path().join("htdigest");
        // md5("alice:web:secret")
        let h = data_encoding::HEXLOWER.encode(&Md5::digest(b"alice:web:secret"));
        // Another user's line and another realm's line come first and must be skipped.
        let other = data_encoding::HEXLOWER.encode(&Md5::digest(b"alice:other:nope"));
        std::fs::write(&d, format!("bob:web:{other}\nalice:other:{other}\nalice:web:{h}\n")).unwrap();
        let src = ExternalSource::Htdigest {
            path: d,
            realm: "web".into(),
        };
        assert_eq!(src.check("alice", "secret").unwrap(), Some(true));
        assert_eq!(src.check("alice", "secreT").unwrap(), Some(false));
    }
}

//! `import` and `export`: the users files of mod_authn_otp, pam_oath, google-authenticator
//! and apache_2fa.

use super::{Context_, plural};
use crate::cli::{ExportFormat, ImportFormat};
use anyhow::{Context, Result, bail};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User, valid_user_name};
use portcullis_core::{Directory, StoreError, SystemClock, password, scratch};
use portcullis_otp::{Algorithm, Secret};
use portcullis_store::UsersFileStore;
use portcullis_userfiles::apache_2fa;
use portcullis_userfiles::google_auth::{self, GaOption};
use portcullis_userfiles::otp_users::Dialect;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The system's user list, read to tell whose `~/.google_authenticator` a file is.
const PASSWD: &str = "/etc/passwd";

/// The names in `passwd` (the text of /etc/passwd: `name:password:uid:gid:gecos:home:shell`)
/// with uid `uid` whose home directory, as `canonical` resolves it, is `dir`. Comments,
/// malformed lines and NIS `+`/`-` lines name nobody.
fn names_at_home(passwd: &str, uid: u32, dir: &Path, canonical: impl Fn(&Path) -> PathBuf) -> Vec<String> {
    let mut names: Vec<String> = passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let [name, _, id, _, _, home, _] = f.as_slice() else {
                return None;
            };
            let named = !name.is_empty() && !name.starts_with(['#', '+', '-']);
            (named && id.parse() == Ok(uid) && !home.is_empty() && canonical(Path::new(home)) == dir)
                .then(|| name.to_string())
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whose google-authenticator file `path` is: the user that owns it, when it is
/// `<home>/.google_authenticator` and `<home>` is that user's home directory in
/// /etc/passwd (google-authenticator-libpam, too, wants the file owned by its user).
/// Anything else (a copy elsewhere, a user only a directory service knows) asks for `--user`.
fn ga_owner(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let whose = |why: String| {
        anyhow::anyhow!(
            "{}: cannot tell whose file this is: {why}; pass --user NAME",
            path.display()
        )
    };
    if path.file_name() != Some(std::ffi::OsStr::new(".google_authenticator")) {
        return Err(whose(
            "only a file named .google_authenticator in its owner's home directory names its user".into(),
        ));
    }
    let uid = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot look at it", path.display()))?
        .uid();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve its directory", path.display()))?;
    let passwd = std::fs::read_to_string(PASSWD).map_err(|e| whose(format!("{PASSWD}: {e}")))?;
    let names = names_at_home(&passwd, uid, &dir, |home| {
        home.canonicalize().unwrap_or_else(|_| home.to_path_buf())
    });
    match names.as_slice() {
        [name] => Ok(name.clone()),
        [] => Err(whose(format!(
            "{} is not the home directory of its owner (uid {uid}) in {PASSWD}",
            dir.display()
        ))),
        several => Err(whose(format!(
            "{PASSWD} has several users with uid {uid} and that home directory ({})",
            several.join(", ")
        ))),
    }
}

/// The text of a google-authenticator file; a missing one is named as missing.
fn read_google_auth(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file; check the path", path.display()),
        _ => anyhow::Error::new(e).context(format!("{}: cannot read", path.display())),
    })
}

/// A user from the text of a `~/.google_authenticator` file at `path`.
fn from_google_auth(path: &Path, text: &str, name: &str, notes: &mut Vec<String>) -> Result<User> {
    let file = google_auth::parse(text, path)?;
    let secret = Secret::from_bytes(file.secret.to_vec());
    let step = if file.is_totp() {
        Step::Time(file.step_size())
    } else {
        Step::Event
    };
    let mut token = Token::new(TokenKind::Oath, step, secret, Algorithm::Sha1, 6);
    let mut first_factor = FirstFactor::None;
    for opt in file.options() {
        match opt {
            GaOption::HotpCounter(c) => token.counter = u64::try_from(*c).unwrap_or(0),
            GaOption::TimeSkew(s) => token.drift = *s,
            // The steps already used: everything up to the newest is spent.
            GaOption::DisallowReuse(steps) => token.last_step = steps.iter().copied().max(),
            GaOption::Password(p) => first_factor = FirstFactor::Hash(password::hash_password(p)?),
            GaOption::WindowSize(w) => notes.push(format!(
                "{}: WINDOW_SIZE {w} is per-user there; portcullis uses [otp] window for everyone",
                path.display()
            )),
            GaOption::RateLimit { attempts, interval, .. } => notes.push(format!(
                "{}: RATE_LIMIT {attempts} {interval} is replaced by [lockout] max_failures",
                path.display()
            )),
            _ => {}
        }
    }
    let mut user = User::new(name, first_factor);
    user.scratch = file
        .scratch_codes()
        .map(|c| scratch::hash(&format!("{:08}", c.0)))
        .collect();
    user.tokens.push(token);
    Ok(user)
}

/// Users from apache_2fa's `tokens.json` (30 s, 6-digit TOTP; passwords were htpasswd).
fn from_apache_2fa(ctx: &Context_, path: &Path, notes: &mut Vec<String>) -> Result<Vec<User>> {
    let external = ctx.config.core.external_source().is_some();
    if !external {
        notes.push(format!(
            "{}: apache_2fa checked passwords with Digest authentication and an htdigest file; set [first_factor] htdigest (and htdigest_realm, its AuthName) so these users need one",
            path.display()
        ));
    }
    Ok(apache_2fa::read(path)?
        .into_iter()
        .map(|t| {
            let mut u = User::new(
                &t.user,
                if external {
                    FirstFactor::External
                } else {
                    FirstFactor::None
                },
            );
            let secret = Secret::from_bytes(t.secret.to_vec());
            u.tokens
                .push(Token::new(TokenKind::Oath, Step::Time(30), secret, Algorithm::Sha1, 6));
            u
        })
        .collect())
}

/// The warning for the users of a mod_authn_otp or pam_oath file whose PIN field is `+`
/// ("checked by another provider") while the configuration at `config` names no external
/// first factor: the gate has nothing to check their password against, so every login of
/// theirs fails with "wrong password".
fn plus_pin_warning(path: &Path, dialect: Dialect, names: &[&str], config: &Path) -> String {
    let elsewhere = match dialect {
        Dialect::ModAuthnOtp => "mod_authn_otp had OTPAuthPINAuthProvider check it",
        Dialect::PamOath => "pam_oath left it to the PAM modules before it, e.g. pam_unix",
    };
    format!(
        "{}: the PIN field of {} is \"+\" (the password is checked by another provider: {elsewhere}), but {} sets no [first_factor] htpasswd or htdigest, so their logins fail with \"wrong password\"; set [first_factor] htpasswd = \"PATH\" (or htdigest and htdigest_realm) there, to a file that holds their passwords",
        path.display(),
        names.join(", "),
        config.display()
    )
}

/// Imports users from `files` into the configured store.
pub fn import(
    ctx: &Context_,
    format: ImportFormat,
    user: Option<&str>,
    replace: bool,
    files: &[PathBuf],
) -> Result<ExitCode> {
    if user.is_some() && files.len() > 1 && matches!(format, ImportFormat::GoogleAuthenticator) {
        bail!("--user names one user; import several google-authenticator files one at a time");
    }
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut users = Vec::new();
    let external = ctx.config.core.external_source().is_some();
    // Per users file: its users whose PIN field is "+" while nothing can check it.
    let mut unchecked: Vec<(&Path, Dialect, Vec<String>)> = Vec::new();
    for path in files {
        match format {
            ImportFormat::ModAuthnOtp | ImportFormat::PamOath => {
                let dialect = if matches!(format, ImportFormat::PamOath) {
                    Dialect::PamOath
                } else {
                    Dialect::ModAuthnOtp
                };
                let source = UsersFileStore::open(path, dialect, Box::new(SystemClock))?;
                let read = source.users()?;
                if !external {
                    let plus: Vec<String> = read
                        .iter()
                        .filter(|u| u.first_factor == FirstFactor::External)
                        .map(|u| u.name.clone())
                        .collect();
                    unchecked.push((path, dialect, plus));
                }
                users.extend(read);
            }
            ImportFormat::GoogleAuthenticator => {
                let text = read_google_auth(path)?;
                let name = match user {
                    Some(u) => u.to_string(),
                    None => ga_owner(path)?,
                };
                users.push(from_google_auth(path, &text, &name, &mut notes)?);
            }
            ImportFormat::Apache2fa => users.extend(from_apache_2fa(ctx, path, &mut notes)?),
        }
    }
    // Check everything before writing anything, so a bad name does not leave half an import.
    for u in &users {
        valid_user_name(&u.name).map_err(|e| anyhow::anyhow!("user name {:?}: {e}", u.name))?;
        for t in &u.tokens {
            let len = t.secret.as_bytes().len();
            // mOTP keys are 64 bits by that protocol's design; only OATH keys are checked.
            if t.kind == TokenKind::Oath && len < portcullis_core::model::MIN_SECRET_BYTES {
                warnings.push(format!(
                    "{}: the key is {}, under the {} (128 bits) RFC 4226 asks for; re-enroll with a longer key unless a hardware token forces it",
                    u.name,
                    plural(len, "byte", "bytes"),
                    portcullis_core::model::MIN_SECRET_BYTES
                ));
            }
        }
    }
    let (mut added, mut skipped) = (0, 0);
    let mut written = std::collections::HashSet::new();
    for u in &users {
        let replaced = match ctx.store.create(u) {
            Ok(()) => false,
            Err(StoreError::Exists(_)) if replace => {
                ctx.store.remove(&u.name)?;
                ctx.store.create(u)?;
                true
            }
            Err(StoreError::Exists(name)) => {
                println!(
                    "skipped {name}: a user of that name exists already; pass --replace to replace it with this one"
                );
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        added += 1;
        written.insert(u.name.as_str());
        let tokens: Vec<String> = u.tokens.iter().map(Token::describe).collect();
        println!(
            "imported {}{}: {}{}",
            u.name,
            if replaced {
                " (replacing the user of that name)"
            } else {
                ""
            },
            tokens.join("; "),
            if u.scratch.is_empty() {
                String::new()
            } else {
                format!(", {}", plural(u.scratch.len(), "scratch code", "scratch codes"))
            }
        );
    }
    // Only about users this import wrote: a skipped one keeps the first factor it had.
    for (path, dialect, plus) in &unchecked {
        let names: Vec<&str> = plus
            .iter()
            .map(String::as_str)
            .filter(|n| written.contains(n))
            .collect();
        if !names.is_empty() {
            warnings.push(plus_pin_warning(path, *dialect, &names, &ctx.path));
        }
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    println!(
        "{} imported, {skipped} skipped, into the {} store",
        plural(added, "user", "users"),
        ctx.store.backend()
    );
    Ok(ExitCode::SUCCESS)
}

/// Exports every user's OATH tokens to a new users file (mode 0600).
pub fn export(ctx: &Context_, format: ExportFormat, file: &Path) -> Result<ExitCode> {
    let dialect = match format {
        ExportFormat::ModAuthnOtp => Dialect::ModAuthnOtp,
        ExportFormat::PamOath => Dialect::PamOath,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("{}: cannot create (it must not exist yet)", file.display()))?;
    let target = UsersFileStore::open(file, dialect, Box::new(SystemClock))?;
    let mut count = 0;
    // Exported users whose PIN field became "+": argon2 ones, and those checked in htpasswd/htdigest.
    let (mut hashed, mut external) = (Vec::new(), Vec::new());
    for mut u in ctx.store.users()? {
        let mut notes = Vec::new();
        let was_hashed = matches!(u.first_factor, FirstFactor::Hash(_));
        if was_hashed {
            u.first_factor = FirstFactor::External;
        }
        if !u.scratch.is_empty() {
            notes.push(format!(
                "not exported: {} (the format has no place for scratch codes)",
                plural(u.scratch.len(), "scratch code", "scratch codes")
            ));
        }
        if !u.app_passwords.is_empty() {
            notes.push(format!(
                "not exported: {} (the format has no place for them)",
                plural(u.app_passwords.len(), "app password", "app passwords")
            ));
        }
        u.scratch.clear();
        u.app_passwords.clear();
        u.groups.clear();
        u.display_name = None;
        u.email = None;
        match target.create(&u) {
            Ok(()) => count += 1,
            Err(e) => {
                eprintln!("note: {}: not exported: {e}", u.name);
                continue;
            }
        }
        for n in notes {
            eprintln!("note: {}: {n}", u.name);
        }
        match (was_hashed, &u.first_factor) {
            (true, _) => hashed.push(u.name),
            (false, FirstFactor::External) => external.push(u.name),
            _ => {}
        }
    }
    for (names, why) in [
        (hashed, "argon2 passwords cannot be exported"),
        (external, "their first factor is external here too"),
    ] {
        if !names.is_empty() {
            eprintln!(
                "note: the PIN field of {} is \"+\" ({why}): {}",
                names.join(", "),
                plus_means(dialect)
            );
        }
    }
    println!("{} written to {}", plural(count, "user", "users"), file.display());
    Ok(ExitCode::SUCCESS)
}

/// What a `+` PIN field means to the tool that reads an exported file.
fn plus_means(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::ModAuthnOtp => {
            "mod_authn_otp then checks the password with the provider OTPAuthPINAuthProvider names (e.g. `file`, with an htpasswd AuthUserFile that holds their passwords)"
        }
        Dialect::PamOath => {
            "pam_oath has no password provider of its own and checks only the code on such a line, so the first factor is whatever comes before it in the PAM stack (e.g. pam_unix and the system password)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment:x:1000:1000::/home/alice:/bin/sh
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/bash
broken:x:1002
+nis:x:1003:1003::/home/nis:/bin/sh
toor:x:0:0::/root:/bin/sh
";

    fn names(uid: u32, dir: &str) -> Vec<String> {
        names_at_home(PASSWD_TEXT, uid, Path::new(dir), Path::to_path_buf)
    }

    #[test]
    fn the_owner_is_named_only_in_its_own_home_directory() {
        assert_eq!(names(1000, "/home/alice"), ["alice"]);
        assert_eq!(names(1001, "/home/bob"), ["bob"]);
        // Someone else's home, a folder named like a user, a home of another uid.
        assert!(names(1001, "/home/alice").is_empty());
        assert!(names(0, "/tmp/x").is_empty());
        assert!(names(1000, "/home/bob").is_empty());
        // Comments, malformed and NIS lines name nobody.
        assert!(names(1002, "/home/broken").is_empty());
        assert!(names(1003, "/home/nis").is_empty());
        // Two names for one uid and home: ga_owner asks for --user.
        assert_eq!(names(0, "/root"), ["root", "toor"]);
    }

    #[test]
    fn homes_are_compared_as_resolved() {
        let resolve = |p: &Path| {
            if p == Path::new("/home/alice") {
                PathBuf::from("/srv/home/alice")
            } else {
                p.to_path_buf()
            }
        };
        assert_eq!(
            names_at_home(PASSWD_TEXT, 1000, Path::new("/srv/home/alice"), resolve),
            ["alice"]
        );
    }

    #[test]
    fn a_file_outside_its_owners_home_asks_for_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let holder = dir.path().join("x");
        std::fs::create_dir(&holder).unwrap();
        let file = holder.join(".google_authenticator");
        std::fs::write(&file, "JBSWY3DPEHPK3PXP\n").unwrap();
        let e = ga_owner(&file).unwrap_err().to_string();
        assert!(
            e.contains("cannot tell whose file this is") && e.contains("--user NAME"),
            "{e}"
        );
        let other = holder.join("alice.google_authenticator");
        std::fs::write(&other, "JBSWY3DPEHPK3PXP\n").unwrap();
        let e = ga_owner(&other).unwrap_err().to_string();
        assert!(e.contains("--user NAME"), "{e}");
        let e = read_google_auth(&holder.join("gone")).unwrap_err().to_string();
        assert!(e.ends_with("gone: no such file; check the path"), "{e}");
    }
}

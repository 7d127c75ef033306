//! A live mod_authn_otp users file or pam_oath `users.oath` as the directory itself, so a
//! site can switch to portcullis and back without re-enrolling anyone.
//!
//! Field mapping (see `portcullis_userfiles::otp_users` for each tool's meaning):
//! - PIN `-` → no first factor, `+` → the configured htpasswd/htdigest, literal → PIN
//!   (for mOTP the literal PIN is mixed into the code instead);
//! - event tokens: COUNTER is the next counter; time tokens (mod_authn_otp): COUNTER is the
//!   device's clock offset in steps;
//! - the last accepted step is found again from LASTOTP (the step in reach whose code it is),
//!   which does not depend on the server's time zone; LASTTIME/LASTIP serve linger;
//! - FAILCOUNT (mod_authn_otp only) is the failure count; `lock` writes the largest count,
//!   read back as a lock. pam_oath files hold neither: a lock is refused there, and the
//!   configuration must say `max_failures = 0`.

use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::{Clock, Directory, StoreError};
use portcullis_otp::{Algorithm, Hotp, Secret, motp, totp_step};
use portcullis_userfiles::error::UpdateError;
use portcullis_userfiles::otp_users::{self, Dialect, Entry, EntryKind, Format, Line, Pin, UsersFile};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// How many steps around now to look for the step of LASTOTP; a code used longer ago
/// than this is older than any step the window can reach, so it cannot be replayed.
const LAST_OTP_REACH: u64 = 64;

/// A users file used as the directory.
pub struct UsersFileStore {
    path: PathBuf,
    dialect: Dialect,
    clock: Box<dyn Clock>,
}

impl std::fmt::Debug for UsersFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsersFileStore({}, {:?})", self.path.display(), self.dialect)
    }
}

fn backend_name(d: Dialect) -> &'static str {
    match d {
        Dialect::ModAuthnOtp => "mod_authn_otp users file",
        Dialect::PamOath => "pam_oath users file",
    }
}

fn file_error(e: portcullis_userfiles::error::Error) -> StoreError {
    // The userfiles errors already name the file, line and field.
    StoreError::Format(e.to_string())
}

impl UsersFileStore {
    /// Uses the file at `path` in `dialect`; it must exist (create it empty to start).
    pub fn open(path: &Path, dialect: Dialect, clock: Box<dyn Clock>) -> Result<Self, StoreError> {
        let store = UsersFileStore {
            path: path.to_path_buf(),
            dialect,
            clock,
        };
        let (_, warnings) = otp_users::read(path, store.format()).map_err(file_error)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        Ok(store)
    }

    /// The format with this machine's current UTC offset, since both tools write LASTTIME
    /// in local time.
    fn format(&self) -> Format {
        let offset = jiff::Timestamp::from_second(self.clock.now())
            .map(|t| crate::local_time_zone().to_offset(t).seconds())
            .unwrap_or(0);
        Format {
            dialect: self.dialect,
            utc_offset_secs: offset,
        }
    }

    fn unsupported(&self, what: &str) -> StoreError {
        StoreError::Unsupported {
            backend: backend_name(self.dialect),
            what: what.to_string(),
        }
    }

    /// Refuses users that hold more than a users file can keep.
    fn check_representable(&self, user: &User) -> Result<(), StoreError> {
        if matches!(user.first_factor, FirstFactor::Hash(_)) {
            return Err(self.unsupported(
                "an argon2 password (add the user with --external-password and an htpasswd file, or --no-password)",
            ));
        }
        if !user.groups.is_empty() || user.display_name.is_some() || user.email.is_some() {
            return Err(self.unsupported("groups, display names or e-mail addresses"));
        }
        if !user.scratch.is_empty() || !user.app_passwords.is_empty() {
            return Err(self.unsupported("scratch codes or app passwords"));
        }
        if user.duo {
            return Err(self.unsupported("Duo push approval"));
        }
        if !user.passkeys.is_empty() {
            return Err(self.unsupported("passkeys or security keys (WebAuthn)"));
        }
        if user.tokens.is_empty() {
            return Err(self.unsupported("a user without a token"));
        }
        if self.dialect == Dialect::PamOath && user.locked {
            return Err(self.unsupported(
                "a lock (the format has no field for one): remove the user's lines to stop them, or keep users in sqlite or a mod_authn_otp file",
            ));
        }
        if self.dialect == Dialect::ModAuthnOtp && user.tokens.len() > 1 {
            return Err(self.unsupported("more than one token per user"));
        }
        for t in &user.tokens {
            if t.algorithm != Algorithm::Sha1 {
                return Err(self.unsupported("SHA256/SHA512 tokens"));
            }
            if self.dialect == Dialect::PamOath {
                let ok = t.kind == TokenKind::Oath
                    && matches!(t.step, Step::Event | Step::Time(30) | Step::Time(60))
                    && (6..=8).contains(&t.digits);
                if !ok {
                    return Err(self.unsupported("tokens other than HOTP/E, HOTP/T30 or HOTP/T60 with 6-8 digits"));
                }
            }
        }
        Ok(())
    }

    /// The token an entry describes, with its replay state recovered.
    fn token_of(&self, e: &Entry, now: i64) -> Token {
        let (kind, digits, step) = shape_of(e);
        let secret = Secret::from_bytes(e.key.to_vec());
        let mut t = Token::new(kind, step, secret, Algorithm::Sha1, u32::from(digits));
        if kind == TokenKind::Motp
            && let Pin::Literal(p) = &e.pin
        {
            t.motp_pin = Some(p.clone());
        }
        let counter = e.counter.unwrap_or(0);
        match step {
            Step::Event => t.counter = u64::try_from(counter).unwrap_or(0),
            Step::Time(period) => {
                // pam_oath's COUNTER for time tokens is not an offset (see the module docs).
                t.drift = if self.dialect == Dialect::ModAuthnOtp {
                    counter
                } else {
                    0
                };
                t.last_step = e
                    .last_otp
                    .as_deref()
                    .and_then(|last| step_of(&t, last, totp_step(now, period)));
            }
        }
        t.last_code = e.last_otp.clone().map(Zeroizing::new);
        t.last_used = e.last_time;
        t.last_ip = e.last_ip.clone();
        t
    }

    /// The lines that make up `name`'s tokens: mod_authn_otp reads only a user's first
    /// line, so only that one counts there; pam_oath tries each line, and lines with the same
    /// token (key, type, step, digits) are one token with one replay state, never two.
    fn token_entries<'f>(&self, file: &'f UsersFile, name: &'f str) -> Vec<&'f Entry> {
        let mut kept: Vec<&Entry> = Vec::new();
        for e in file.entries_for(name) {
            if self.dialect == Dialect::ModAuthnOtp && !kept.is_empty() {
                break;
            }
            if !kept.iter().any(|k| same_token(k, e)) {
                kept.push(e);
            }
        }
        kept
    }

    fn user_of(&self, file: &UsersFile, name: &str, now: i64) -> Option<User> {
        let entries = self.token_entries(file, name);
        let first = entries.first()?;
        let ff = match (&first.pin, first.kind) {
            (_, EntryKind::Motp { .. }) | (Pin::None, _) => FirstFactor::None,
            (Pin::External, _) => FirstFactor::External,
            (Pin::Literal(p), _) => FirstFactor::Pin(p.clone()),
        };
        let mut u = User::new(name, ff);
        u.tokens = entries.iter().map(|e| self.token_of(e, now)).collect();
        // `lock` writes the largest count; it is a lock whatever max_failures says (0 too).
        match first.fail_count {
            Some(u32::MAX) => u.locked = true,
            other => u.failures = other.unwrap_or(0),
        }
        Some(u)
    }

    /// Writes the mutable state of `user` back into its lines (every line of a merged
    /// token). A line's own PIN is kept unless the first factor itself changed from
    /// `before` (`None`: a new user).
    fn store_into(&self, file: &mut UsersFile, user: &User, before: Option<&User>) {
        let dialect = self.dialect;
        let first_factor_changed = before.is_none_or(|b| b.first_factor != user.first_factor);
        for (i, e) in file.entries_for_mut(&user.name).enumerate() {
            if dialect == Dialect::ModAuthnOtp && i > 0 {
                break;
            }
            let Some(t) = user.tokens.iter().find(|t| entry_holds(e, t)) else {
                continue;
            };
            e.pin = match (&user.first_factor, t.kind) {
                (_, TokenKind::Motp) => match &t.motp_pin {
                    Some(p) => Pin::Literal(p.clone()),
                    None => Pin::None,
                },
                _ if !first_factor_changed => e.pin.clone(),
                (FirstFactor::None, _) => Pin::None,
                (FirstFactor::External, _) => Pin::External,
                (FirstFactor::Pin(p), _) => Pin::Literal(p.clone()),
                // Refused by check_representable before we get here.
                (FirstFactor::Hash(_), _) => e.pin.clone(),
            };
            match t.step {
                Step::Event => e.counter = Some(i64::try_from(t.counter).unwrap_or(i64::MAX)),
                Step::Time(_) if dialect == Dialect::ModAuthnOtp => e.counter = Some(t.drift),
                // pam_oath keeps its own opaque value here; it must exist before LASTOTP.
                Step::Time(_) => e.counter = Some(e.counter.unwrap_or(0)),
            }
            e.last_otp = t.last_code.as_ref().map(|c| c.to_string());
            e.last_time = t.last_used;
            if dialect == Dialect::ModAuthnOtp {
                // mod_authn_otp always writes LASTIP after LASTTIME; an attempt without a
                // client address (the CLI) records the unspecified address, which matches no
                // client, so it never enables linger.
                e.last_ip = match (&t.last_ip, &e.last_otp) {
                    (Some(ip), _) => Some(ip.clone()),
                    (None, Some(_)) => Some("0.0.0.0".to_string()),
                    (None, None) => None,
                };
                let failures = if user.locked { u32::MAX } else { user.failures };
                e.fail_count = Some(failures);
            }
        }
    }

    fn entry_for(&self, user: &User, token: &Token) -> Entry {
        let step = match token.step {
            Step::Event => otp_users::Step::Event,
            Step::Time(p) => otp_users::Step::Time(p),
        };
        let digits = u8::try_from(token.digits).unwrap_or(6);
        let kind = match token.kind {
            TokenKind::Oath => EntryKind::Hotp { digits, step },
            TokenKind::Motp => EntryKind::Motp { digits, step },
        };
        let mut e = Entry::new(
            kind,
            user.name.clone(),
            Pin::None,
            Zeroizing::new(token.secret.as_bytes().to_vec()),
        );
        if matches!(token.step, Step::Event) || self.dialect == Dialect::ModAuthnOtp {
            e.counter = Some(0);
        }
        e
    }

    fn update_file<R>(&self, f: impl FnOnce(&mut UsersFile) -> Result<R, StoreError>) -> Result<R, StoreError> {
        otp_users::update(&self.path, self.format(), f).map_err(|e| match e {
            UpdateError::Store(e) => file_error(e),
            UpdateError::Callback(e) => e,
        })
    }
}

/// A line's token type, code length and step, in the core's terms.
fn shape_of(e: &Entry) -> (TokenKind, u8, Step) {
    let (kind, digits, step) = match e.kind {
        EntryKind::Hotp { digits, step } => (TokenKind::Oath, digits, step),
        EntryKind::Motp { digits, step } => (TokenKind::Motp, digits, step),
    };
    let step = match step {
        otp_users::Step::Event => Step::Event,
        otp_users::Step::Time(p) => Step::Time(p),
    };
    (kind, digits, step)
}

/// Whether two lines describe the same token (key, type, step and digits).
fn same_token(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind && a.key.as_slice() == b.key.as_slice()
}

/// Whether line `e` is the stored form of token `t`.
fn entry_holds(e: &Entry, t: &Token) -> bool {
    let (kind, digits, step) = shape_of(e);
    kind == t.kind && step == t.step && u32::from(digits) == t.digits && e.key.as_slice() == t.secret.as_bytes()
}

/// The newest step whose code is `code`, searched around now and around now plus the
/// device's drift: verification tries both, so replay must be checked against both (a code
/// accepted at the current step of a drifted token was otherwise forgotten and accepted again).
fn step_of(t: &Token, code: &str, now_step: u64) -> Option<u64> {
    let reach = |center: u64| center.saturating_sub(LAST_OTP_REACH)..=center.saturating_add(LAST_OTP_REACH);
    let drifted = reach(now_step.saturating_add_signed(t.drift));
    let current = reach(now_step);
    let matches: Box<dyn Fn(u64) -> bool> = match t.kind {
        TokenKind::Oath => {
            let g = Hotp::new(&t.secret, t.algorithm, t.digits);
            let want = g.parse(code)?;
            Box::new(move |s| g.value(s) == want)
        }
        TokenKind::Motp => {
            let pin = t.motp_pin.clone().unwrap_or_default();
            let want = code.to_ascii_lowercase();
            let secret = t.secret.clone();
            let digits = t.digits;
            Box::new(move |s| motp(&secret, &pin, s, digits).as_str() == want)
        }
    };
    let newest = |r: std::ops::RangeInclusive<u64>| r.rev().find(|&s| matches(s));
    newest(drifted).into_iter().chain(newest(current)).max()
}

impl Directory for UsersFileStore {
    fn backend(&self) -> &'static str {
        backend_name(self.dialect)
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let (file, _) = otp_users::read(&self.path, self.format()).map_err(file_error)?;
        Ok(self.user_of(&file, name, self.clock.now()))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let (file, _) = otp_users::read(&self.path, self.format()).map_err(file_error)?;
        let now = self.clock.now();
        let mut names: Vec<&str> = file.entries().map(|e| e.user.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        Ok(names.into_iter().filter_map(|n| self.user_of(&file, n, now)).collect())
    }

    fn create(&self, user: &User) -> Result<(), StoreError> {
        self.check_representable(user)?;
        self.update_file(|file| {
            if file.entries_for(&user.name).next().is_some() {
                return Err(StoreError::Exists(user.name.clone()));
            }
            for t in &user.tokens {
                file.push_entry(self.entry_for(user, t));
            }
            self.store_into(file, user, None);
            Ok(())
        })
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.update_file(|file| {
            let before = file.lines.len();
            file.lines.retain(|l| !matches!(l, Line::Entry(e) if e.user == name));
            Ok(file.lines.len() != before)
        })
    }

    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        let now = self.clock.now();
        self.update_file(|file| {
            let Some(mut user) = self.user_of(file, name, now) else {
                return Ok(false);
            };
            let before = user.clone();
            if change(&mut user) && user != before {
                self.check_representable(&user)?;
                let same_tokens = before.tokens.len() == user.tokens.len()
                    && before.tokens.iter().zip(&user.tokens).all(|(a, b)| {
                        a.secret == b.secret && a.step == b.step && a.kind == b.kind && a.digits == b.digits
                    });
                if !same_tokens {
                    // A token reset: the user's lines are replaced by new ones at the end.
                    file.lines.retain(|l| !matches!(l, Line::Entry(e) if e.user == name));
                    for t in &user.tokens {
                        file.push_entry(self.entry_for(&user, t));
                    }
                }
                self.store_into(file, &user, Some(&before));
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::clock::FixedClock;
    use portcullis_core::gate::{Attempt, Gate, Outcome, Rejection, VerifyPolicy};
    use portcullis_otp::hotp;

    const KEY_HEX: &str = "3132333435363738393031323334353637383930";
    const NOW: i64 = 1_700_000_000;

    fn policy() -> VerifyPolicy {
        VerifyPolicy {
            totp_window: 1,
            hotp_look_ahead: 10,
            motp_window: 3,
            linger: 0,
            max_failures: 3,
        }
    }

    fn store(dir: &Path, text: &str, dialect: Dialect) -> (UsersFileStore, PathBuf) {
        let path = dir.join("users");
        std::fs::write(&path, text).unwrap();
        (
            UsersFileStore::open(&path, dialect, Box::new(FixedClock(NOW))).unwrap(),
            path,
        )
    }

    fn key() -> Secret {
        Secret::from_hex(KEY_HEX).unwrap()
    }

    #[test]
    fn each_dialect_keeps_the_directory_contract() {
        for dialect in [Dialect::ModAuthnOtp, Dialect::PamOath] {
            let dir = tempfile::tempdir().unwrap();
            let (s, _) = store(dir.path(), "", dialect);
            portcullis_core::store::check_directory_contract(&s);
        }
    }

    fn check(s: &UsersFileStore, user: &str, password: Option<&str>, code: &str) -> Outcome {
        check_at(s, NOW, policy(), user, password, code)
    }

    /// `check` at time `now` (the store's clock must say the same) under `policy`.
    fn check_at(
        s: &UsersFileStore,
        now: i64,
        policy: VerifyPolicy,
        user: &str,
        password: Option<&str>,
        code: &str,
    ) -> Outcome {
        let clock = FixedClock(now);
        let gate = Gate {
            directory: s,
            clock: &clock,
            policy,
            external: None,
        };
        gate.verify(Attempt {
            user,
            password,
            code,
            client_ip: Some("192.0.2.7"),
            linger: false,
        })
        .unwrap()
    }

    #[test]
    fn mod_authn_otp_time_token_accept_replay_and_state_written() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("# users\nHOTP/T30 alice 1234 {KEY_HEX}\nHOTP bob - {KEY_HEX} 5\n");
        let (s, path) = store(dir.path(), &text, Dialect::ModAuthnOtp);
        let code = portcullis_otp::totp(&key(), NOW, 30, 6, Algorithm::Sha1);
        assert_eq!(
            check(&s, "alice", Some("9999"), &code),
            Outcome::Rejected(Rejection::WrongPassword)
        );
        assert!(matches!(
            check(&s, "alice", Some("1234"), &code),
            Outcome::Accepted { .. }
        ));
        assert_eq!(
            check(&s, "alice", Some("1234"), &code),
            Outcome::Rejected(Rejection::Replayed)
        );
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with("# users\n"), "comments survive:\n{after}");
        let line = after.lines().find(|l| l.contains("alice")).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        // TYPE USER PIN KEY OFFSET FAILCOUNT LASTOTP LASTTIME LASTIP
        assert_eq!(fields.len(), 9, "{line}");
        assert_eq!(&fields[4..7], &["0", "1", code.as_str()], "{line}");
        // Accepted without linger (not HTTP Basic): LASTIP names no client, so neither
        // mod_authn_otp nor portcullis lets the code linger.
        assert!(fields[7].ends_with('L') && fields[8] == "0.0.0.0", "{line}");
        // bob's line is untouched.
        assert!(after.contains(&format!("HOTP bob - {KEY_HEX} 5\n")), "{after}");
        // Read back later, LASTOTP names only its own step: the next step's code is new.
        let later = UsersFileStore::open(&path, Dialect::ModAuthnOtp, Box::new(FixedClock(NOW + 30))).unwrap();
        let next = portcullis_otp::totp(&key(), NOW + 30, 30, 6, Algorithm::Sha1);
        assert!(matches!(
            check_at(&later, NOW + 30, policy(), "alice", Some("1234"), &next),
            Outcome::Accepted { .. }
        ));
    }

    #[test]
    fn mod_authn_otp_event_token_and_lockout_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store(dir.path(), &format!("HOTP bob - {KEY_HEX} 5\n"), Dialect::ModAuthnOtp);
        let code7 = hotp(&key(), 7, 6, Algorithm::Sha1);
        assert!(matches!(check(&s, "bob", Some(""), &code7), Outcome::Accepted { .. }));
        assert_eq!(s.user("bob").unwrap().unwrap().tokens[0].counter, 8);
        for _ in 0..3 {
            assert_eq!(
                check(&s, "bob", None, "000000"),
                Outcome::Rejected(Rejection::WrongCode)
            );
        }
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(
            line.split_whitespace().nth(5) == Some("3"),
            "failure count in field 6: {line}"
        );
        let code8 = hotp(&key(), 8, 6, Algorithm::Sha1);
        assert_eq!(check(&s, "bob", None, &code8), Outcome::Rejected(Rejection::Locked));
        s.update("bob", &mut |u| {
            u.failures = 0;
            true
        })
        .unwrap();
        assert!(matches!(check(&s, "bob", None, &code8), Outcome::Accepted { .. }));
    }

    #[test]
    fn each_of_two_tokens_moves_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let other = "00112233445566778899aabbccddeeff00112233";
        let text = format!("HOTP\terin\t-\t{KEY_HEX}\t0\nHOTP\terin\t-\t{other}\t0\n");
        let (s, path) = store(dir.path(), &text, Dialect::PamOath);
        assert_eq!(
            s.user("erin").unwrap().unwrap().tokens.len(),
            2,
            "two keys are two tokens"
        );
        let second = hotp(&Secret::from_hex(other).unwrap(), 0, 6, Algorithm::Sha1);
        assert!(matches!(
            check(&s, "erin", None, &second),
            Outcome::Accepted {
                via: portcullis_core::gate::Via::Token(1),
                ..
            }
        ));
        let after = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(
            lines[0],
            format!("HOTP\terin\t-\t{KEY_HEX}\t0"),
            "the first token's line is untouched"
        );
        let second = second.as_str();
        assert!(
            lines[1].starts_with(&format!("HOTP\terin\t-\t{other}\t1\t{second}")),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn pam_oath_counters_are_written_in_its_format() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            format!("HOTP\tcarol\t-\t{KEY_HEX}\t0\n# HOTP/T30\tcarol\t-\t{KEY_HEX}\nHOTP/T30/6 dave - {KEY_HEX}\n");
        let (s, path) = store(dir.path(), &text, Dialect::PamOath);
        let c1 = hotp(&key(), 1, 6, Algorithm::Sha1);
        assert!(matches!(check(&s, "carol", None, &c1), Outcome::Accepted { .. }));
        let t = portcullis_otp::totp(&key(), NOW, 30, 6, Algorithm::Sha1);
        assert!(matches!(check(&s, "dave", None, &t), Outcome::Accepted { .. }));
        assert_eq!(check(&s, "dave", None, &t), Outcome::Rejected(Rejection::Replayed));
        let after = std::fs::read_to_string(&path).unwrap();
        let carol = after.lines().next().unwrap();
        let f: Vec<&str> = carol.split('\t').collect();
        assert_eq!(&f[..6], &["HOTP", "carol", "-", KEY_HEX, "2", c1.as_str()], "{carol}");
        assert!(
            after.contains(&format!("# HOTP/T30\tcarol\t-\t{KEY_HEX}\n")),
            "commented line untouched"
        );
        let dave = after.lines().find(|l| l.contains("dave")).unwrap();
        assert!(dave.contains(t.as_str()), "{dave}");
    }

    #[test]
    fn create_refuses_what_the_file_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = store(dir.path(), "", Dialect::PamOath);
        let mut u = User::new("erin", FirstFactor::Hash("$argon2id$...".into()));
        u.tokens
            .push(Token::new(TokenKind::Oath, Step::Time(30), key(), Algorithm::Sha1, 6));
        assert!(matches!(s.create(&u), Err(StoreError::Unsupported { .. })));
        u.first_factor = FirstFactor::None;
        s.create(&u).unwrap();
        assert!(matches!(s.create(&u), Err(StoreError::Exists(_))));
        assert_eq!(s.users().unwrap().len(), 1);
        // A Duo binding has no field in the file: refused with a message, not dropped.
        let e = s
            .update("erin", &mut |u| {
                u.duo = true;
                true
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("Duo push") && e.to_string().contains("sqlite"),
            "{e}"
        );
        assert!(s.remove("erin").unwrap());
        assert!(s.users().unwrap().is_empty());
    }

    #[test]
    fn motp_entries_use_the_pin_in_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = store(dir.path(), "MOTP frank 4321 0123456789abcdef\n", Dialect::ModAuthnOtp);
        let key = Secret::from_hex("0123456789abcdef").unwrap();
        let code = motp(&key, "4321", totp_step(NOW, 10), 6).to_ascii_uppercase();
        assert!(matches!(check(&s, "frank", Some(""), &code), Outcome::Accepted { .. }));
        assert_eq!(check(&s, "frank", None, &code), Outcome::Rejected(Rejection::Replayed));
        let later = UsersFileStore::open(
            &dir.path().join("users"),
            Dialect::ModAuthnOtp,
            Box::new(FixedClock(NOW + 10)),
        )
        .unwrap();
        let next = motp(&key, "4321", totp_step(NOW + 10, 10), 6);
        assert!(matches!(
            check_at(&later, NOW + 10, policy(), "frank", Some(""), &next),
            Outcome::Accepted { .. }
        ));
    }

    /// Regression (issue 10.3): `user lock` on a pam_oath file said "locked" and changed nothing.
    #[test]
    fn pam_oath_refuses_a_lock_it_cannot_store() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store(dir.path(), &format!("HOTP/T30 dave - {KEY_HEX}\n"), Dialect::PamOath);
        let before = std::fs::read_to_string(&path).unwrap();
        let e = s
            .update("dave", &mut |u| {
                u.locked = true;
                true
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("lock"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    /// Regression (issue 10.3): with max_failures = 0 a lock (FAILCOUNT 4294967295) was ignored.
    #[test]
    fn mod_authn_otp_lock_is_a_lock_even_without_a_failure_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store(dir.path(), &format!("HOTP bob - {KEY_HEX} 0\n"), Dialect::ModAuthnOtp);
        let no_limit = VerifyPolicy {
            max_failures: 0,
            ..policy()
        };
        s.update("bob", &mut |u| {
            u.locked = true;
            true
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.split_whitespace().nth(5), Some("4294967295"), "{text}");
        assert!(s.user("bob").unwrap().unwrap().locked);
        let code0 = hotp(&key(), 0, 6, Algorithm::Sha1);
        assert_eq!(
            check_at(&s, NOW, no_limit.clone(), "bob", None, &code0),
            Outcome::Rejected(Rejection::Locked)
        );
        s.update("bob", &mut |u| {
            u.locked = false;
            u.failures = 0;
            true
        })
        .unwrap();
        assert!(matches!(
            check_at(&s, NOW, no_limit, "bob", None, &code0),
            Outcome::Accepted { .. }
        ));
    }

    /// Regression (issue 10.5): two identical lines were two tokens with two replay states,
    /// so one code was accepted twice.
    #[test]
    fn duplicate_lines_are_one_token() {
        for dialect in [Dialect::ModAuthnOtp, Dialect::PamOath] {
            let dir = tempfile::tempdir().unwrap();
            let line = format!("HOTP/T30 carol - {KEY_HEX}\n");
            let (s, path) = store(dir.path(), &format!("{line}{line}"), dialect);
            assert_eq!(s.user("carol").unwrap().unwrap().tokens.len(), 1, "{dialect:?}");
            let code = portcullis_otp::totp(&key(), NOW, 30, 6, Algorithm::Sha1);
            assert!(
                matches!(check(&s, "carol", None, &code), Outcome::Accepted { .. }),
                "{dialect:?}"
            );
            assert_eq!(
                check(&s, "carol", None, &code),
                Outcome::Rejected(Rejection::Replayed),
                "{dialect:?}"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines[0].contains(code.as_str()), "{dialect:?}: {text}");
            match dialect {
                // mod_authn_otp never reads the second line: it is left as it was.
                Dialect::ModAuthnOtp => assert_eq!(format!("{}\n", lines[1]), line, "{text}"),
                // pam_oath tries each line: both carry the replay state.
                Dialect::PamOath => assert!(lines[1].contains(code.as_str()), "{text}"),
            }
        }
        // mod_authn_otp: a second line with another key is not a second token either.
        let dir = tempfile::tempdir().unwrap();
        let other = "3132333435363738393031323334353637383931";
        let (s, _) = store(
            dir.path(),
            &format!("HOTP/T30 carol - {KEY_HEX}\nHOTP/T30 carol - {other}\n"),
            Dialect::ModAuthnOtp,
        );
        assert_eq!(s.user("carol").unwrap().unwrap().tokens.len(), 1);
    }

    /// Issue 10.5: each pam_oath line keeps its own PIN when the file is written back.
    #[test]
    fn pam_oath_lines_keep_their_own_pins() {
        let dir = tempfile::tempdir().unwrap();
        let other = "3132333435363738393031323334353637383931";
        let text = format!("HOTP/T30 erin 1111 {KEY_HEX}\nHOTP/T30 erin 2222 {other}\n");
        let (s, path) = store(dir.path(), &text, Dialect::PamOath);
        let code = portcullis_otp::totp(&key(), NOW, 30, 6, Algorithm::Sha1);
        assert!(matches!(
            check(&s, "erin", Some("1111"), &code),
            Outcome::Accepted { .. }
        ));
        let after = std::fs::read_to_string(&path).unwrap();
        let pins: Vec<&str> = after.lines().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
        assert_eq!(pins, ["1111", "2222"], "{after}");
    }

    /// Regression (issue 10.6): with a drift of 70 steps the last used step was looked for
    /// only around now+70, so a code accepted at the current step was accepted again later.
    #[test]
    fn a_code_is_not_replayed_after_drift_moves_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, format!("HOTP/T1 dave - {KEY_HEX} 70\n")).unwrap();
        let at = |now: i64| UsersFileStore::open(&path, Dialect::ModAuthnOtp, Box::new(FixedClock(now))).unwrap();
        let wide = VerifyPolicy {
            totp_window: 10,
            ..policy()
        };
        // A code 70 steps from the device's drifted clock: some step verification reaches.
        let t0 = NOW;
        let code = portcullis_otp::totp(&key(), t0 + 70, 1, 6, Algorithm::Sha1);
        let first = check_at(&at(t0), t0, wide.clone(), "dave", None, &code);
        assert!(matches!(first, Outcome::Accepted { .. }), "{first:?}");
        for later in [t0 + 1, t0 + 35, t0 + 70, t0 + 75] {
            let again = check_at(&at(later), later, wide.clone(), "dave", None, &code);
            assert!(
                !matches!(again, Outcome::Accepted { .. }),
                "accepted again at +{}: {again:?}",
                later - t0
            );
        }
    }
}

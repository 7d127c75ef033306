//! The Gate: checks a first factor and a one-time code against a user, applying the
//! window, replay, linger and lockout rules once for every integration.

use crate::clock::Clock;
use crate::config::Config;
use crate::factor::PasswordSource;
use crate::model::{FirstFactor, Step, Token, TokenKind, User};
use crate::password::{self, PasswordError};
use crate::scratch;
use crate::store::{Directory, StoreError};
use portcullis_otp::{
    CodeFormat, Hotp, Verdict, Window, is_well_formed, motp, oath_matcher, text_matcher, totp_step, verify_counter,
    verify_time,
};
use zeroize::Zeroizing;

/// How many steps before the window a code still counts as "expired" rather than "wrong",
/// so people with a slow clock get a useful message.
const EXPIRED_LOOK_BACK: u64 = 10;

/// The verification rules taken from the configuration.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// ± steps for TOTP.
    pub totp_window: u64,
    /// Counters ahead for HOTP.
    pub hotp_look_ahead: u64,
    /// ± steps for time-based mOTP.
    pub motp_window: u64,
    /// Seconds an accepted code may be reused from the same address.
    pub linger: u64,
    /// Consecutive failures that lock the account (0 = never).
    pub max_failures: u32,
}

impl VerifyPolicy {
    /// The policy a configuration file sets.
    pub fn from_config(c: &Config) -> Self {
        VerifyPolicy {
            totp_window: c.otp.window,
            hotp_look_ahead: c.otp.hotp_look_ahead,
            motp_window: c.otp.motp_window,
            linger: c.otp.linger,
            max_failures: c.lockout.max_failures,
        }
    }
}

/// Why an attempt was refused. Show people one generic message; this is for logs and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// No such user (the caller spent the same time as for a real one).
    UnknownUser,
    /// The password or PIN is wrong.
    WrongPassword,
    /// The code matches no token in the window.
    WrongCode,
    /// The code was right once but has been used already.
    Replayed,
    /// The code belongs to a time step that has passed.
    Expired,
    /// The account is locked (too many wrong codes, or by an administrator).
    Locked,
    /// The user has no token and no scratch code.
    NoToken,
    /// A second factor that waits for an approval (a push) was not approved in time.
    NotApproved,
    /// A passkey's assertion did not verify (signature, challenge, origin, RP ID, an
    /// unknown or removed credential).
    BadPasskey,
    /// A passkey's signature counter did not grow: a cloned authenticator, or a replay.
    ClonedPasskey,
}

impl Rejection {
    /// A short explanation for administrators and logs.
    pub fn explain(self) -> &'static str {
        match self {
            Rejection::UnknownUser => "unknown user",
            Rejection::WrongPassword => "wrong password",
            Rejection::WrongCode => "wrong code",
            Rejection::Replayed => "code already used (replay)",
            Rejection::Expired => "code expired (its time step has passed; check the device clock)",
            Rejection::Locked => "account locked; `portcullis user unlock NAME` clears it",
            Rejection::NoToken => "the user has no token; `portcullis user token reset NAME` creates one",
            Rejection::NotApproved => "not approved (yet) on the second device",
            Rejection::BadPasskey => "the passkey's answer did not verify (signature, challenge, origin or credential)",
            Rejection::ClonedPasskey => {
                "the passkey's signature counter went backwards (a cloned authenticator?); remove the key if it repeats"
            }
        }
    }

    /// A stable one-word label for structured logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::UnknownUser => "unknown_user",
            Rejection::WrongPassword => "wrong_password",
            Rejection::WrongCode => "wrong_code",
            Rejection::Replayed => "replayed",
            Rejection::Expired => "expired",
            Rejection::Locked => "locked",
            Rejection::NoToken => "no_token",
            Rejection::NotApproved => "not_approved",
            Rejection::BadPasskey => "bad_passkey",
            Rejection::ClonedPasskey => "cloned_passkey",
        }
    }
}

/// Which credential let the user in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A token's code; the index is the token's position.
    Token(usize),
    /// A scratch code (now used up).
    Scratch,
    /// The code accepted moments ago, resent within the linger time from the same address.
    Linger(usize),
    /// A passkey's assertion (its counter moved on).
    Passkey,
}

/// The result of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let in.
    Accepted {
        /// The user as stored after the attempt.
        user: Box<User>,
        /// What matched.
        via: Via,
    },
    /// Refused, with the reason.
    Rejected(Rejection),
}

/// Failures of the machinery itself (not of the person).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The external password file failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A second-factor service (Duo) cannot be reached and its failmode is closed.
    #[error("the {0} service cannot be reached ([duo] failmode = \"closed\"): no login until it answers")]
    Unavailable(&'static str),
}

/// Credentials presented by one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// User name as typed.
    pub user: &'a str,
    /// Password/PIN; `None` when the first factor is not checked here.
    pub password: Option<&'a str>,
    /// The one-time or scratch code.
    pub code: &'a str,
    /// The client's address, for linger and logs.
    pub client_ip: Option<&'a str>,
    /// Whether the last accepted code may be resent within the linger time: only for
    /// HTTP Basic clients, which repeat their credentials on every request.
    pub linger: bool,
}

/// Checks attempts against a directory under a policy and a clock.
pub struct Gate<'a> {
    /// Where users live.
    pub directory: &'a dyn Directory,
    /// What time it is.
    pub clock: &'a dyn Clock,
    /// The rules.
    pub policy: VerifyPolicy,
    /// Where `External` first factors are checked.
    pub external: Option<&'a dyn PasswordSource>,
}

enum TokenResult {
    Accepted(u64),
    Replayed,
    Expired,
    Wrong,
}

fn check_token(token: &Token, code: &str, now: i64, policy: &VerifyPolicy) -> TokenResult {
    let generator = Hotp::new(&token.secret, token.algorithm, token.digits);
    let empty = Zeroizing::new(String::new());
    let pin = token.motp_pin.as_ref().unwrap_or(&empty);
    let motp_code = |c: u64| motp(&token.secret, pin, c, token.digits);
    // One matcher per search: decimal codes compare as numbers, mOTP as hex text.
    let matcher = || -> Box<dyn FnMut(u64) -> bool + '_> {
        match token.kind {
            TokenKind::Oath => Box::new(oath_matcher(&generator, code)),
            TokenKind::Motp if is_well_formed(code, token.digits, CodeFormat::Hex) => {
                Box::new(text_matcher(code, motp_code))
            }
            TokenKind::Motp => Box::new(|_| false),
        }
    };
    let verdict = match token.step {
        Step::Event => {
            let ahead = match token.kind {
                TokenKind::Oath => policy.hotp_look_ahead,
                TokenKind::Motp => policy.motp_window,
            };
            let v = verify_counter(token.counter, Window::look_ahead(ahead), matcher());
            if v == Verdict::Rejected && token.counter > 0 {
                // Only to tell "used" from "wrong": a counter just behind the next one was
                // used or skipped (the loser of two clients sending one code gets "already
                // used", not "wrong code").
                let first = token.counter.saturating_sub(EXPIRED_LOOK_BACK);
                let used = Window::look_ahead(token.counter - first - 1);
                if matches!(verify_counter(first, used, matcher()), Verdict::Accepted(_)) {
                    return TokenResult::Replayed;
                }
            }
            v
        }
        Step::Time(period) => {
            let now_step = totp_step(now, period);
            let center = now_step.saturating_add_signed(token.drift);
            let w = match token.kind {
                TokenKind::Oath => policy.totp_window,
                TokenKind::Motp => policy.motp_window,
            };
            let v = verify_time(now_step, center, Window::symmetric(w), token.last_step, matcher());
            if v == Verdict::Rejected {
                // Only to tell "expired" from "wrong": a code from just before the window.
                let lo = center.saturating_sub(w);
                let before = Window {
                    behind: EXPIRED_LOOK_BACK,
                    ahead: 0,
                };
                let edge = lo.saturating_sub(1);
                let recent = verify_time(edge, edge, before, None, matcher());
                if matches!(recent, Verdict::Accepted(_)) && lo > 0 {
                    return TokenResult::Expired;
                }
            }
            v
        }
    };
    match verdict {
        Verdict::Accepted(m) => TokenResult::Accepted(m.counter),
        Verdict::Replayed => TokenResult::Replayed,
        Verdict::Rejected => TokenResult::Wrong,
    }
}

impl Gate<'_> {
    /// The one name `typed` stands for, on which lockout, replay, regulation and sessions
    /// are keyed: the name the first-factor source knows the person by (an LDAP login by
    /// e-mail or in another case), unless the directory holds `typed` itself; else `typed`.
    pub fn canonical(&self, typed: &str) -> Result<String, GateError> {
        let Some(src) = self.external else {
            return Ok(typed.to_string());
        };
        Ok(match src.canonical(typed)? {
            Some(name) if name != typed && self.directory.user(typed)?.is_none() => name,
            _ => typed.to_string(),
        })
    }

    /// A person the directory lacks whom the first-factor source lets enroll themselves
    /// (`[ldap] auto_enroll`): with the right password there, added now, without a token
    /// (the login goes on to enrollment); else `None`.
    pub fn self_enrolling(&self, name: &str, password: &str) -> Result<Option<User>, GateError> {
        let Some(src) = self.external else {
            return Ok(None);
        };
        if password.is_empty() || !src.may_enroll(name)? || src.check(name, password)? != Some(true) {
            return Ok(None);
        }
        match self.directory.create(&User::new(name, FirstFactor::External)) {
            Ok(()) | Err(crate::StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.directory.user(name)?)
    }

    /// Whether `user` has no second factor yet and may enroll one themselves.
    pub fn enrolls_now(&self, user: &User) -> Result<bool, GateError> {
        let Some(src) = self.external else {
            return Ok(false);
        };
        Ok(user.tokens.is_empty()
            && user.scratch.is_empty()
            && user.passkeys.is_empty()
            && user.first_factor == FirstFactor::External
            && src.may_enroll(&user.name)?)
    }

    /// Checks the first factor of `user` (None = unknown, spends the same time).
    pub fn check_first_factor(&self, name: &str, user: Option<&User>, password: &str) -> Result<bool, GateError> {
        // Unknown here or to the source: the time a refusal there takes, then no.
        let spent = |src: Option<&dyn PasswordSource>| -> Result<bool, GateError> {
            match src {
                Some(src) => src.spend(name, password)?,
                None => {
                    let _ = password::verify_dummy(password);
                }
            }
            Ok(false)
        };
        let Some(user) = user else {
            return spent(self.external);
        };
        Ok(match &user.first_factor {
            FirstFactor::None => password.is_empty(),
            FirstFactor::Hash(h) => password::verify_hash(h, password),
            FirstFactor::Pin(pin) => password::constant_time_eq(pin, password),
            FirstFactor::External => match self.external {
                Some(src) => match src.check(name, password)? {
                    Some(ok) => ok,
                    None => spent(Some(src))?,
                },
                None => spent(None)?,
            },
        })
    }

    /// A digest of `user`'s first factor as it stands now, wherever it is kept (the user's
    /// record, or the external source for an `External` one): sessions keep it, and end
    /// when it changes (a new password, PIN or htpasswd line).
    pub fn first_factor_fingerprint(&self, user: &User) -> Result<[u8; 16], GateError> {
        if let (FirstFactor::External, Some(src)) = (&user.first_factor, self.external)
            && let Some(f) = src.fingerprint(&user.name)?
        {
            return Ok(f);
        }
        Ok(user.first_factor.fingerprint())
    }

    /// Whether `password` alone signs `user` in where one factor is enough (a trusted network,
    /// a one_factor rule): never for a user who has no first factor, whatever was typed.
    pub fn check_password_only(&self, name: &str, user: Option<&User>, password: &str) -> Result<bool, GateError> {
        let ok = self.check_first_factor(name, user, password)?;
        Ok(ok && user.is_some_and(|u| u.first_factor.exists()))
    }

    /// Verifies an attempt: first factor (if given), then the code, updating replay state,
    /// failure count and lockout atomically in the store.
    pub fn verify(&self, attempt: Attempt<'_>) -> Result<Outcome, GateError> {
        match self.refuse_before_code(attempt)? {
            Some(r) => Ok(Outcome::Rejected(r)),
            None => self.verify_code(attempt),
        }
    }

    /// Why `attempt` is refused before its code is looked at (an unknown user, a wrong
    /// password when one is given), or `None` to go on to the second factor.
    pub fn refuse_before_code(&self, attempt: Attempt<'_>) -> Result<Option<Rejection>, GateError> {
        let stored = self.directory.user(attempt.user)?;
        self.refuse_before_code_of(attempt, stored.as_ref())
    }

    /// [`Gate::refuse_before_code`] for the user as the caller has just read it (`None`: not
    /// in the directory), so the first factor costs one read whoever the user is.
    pub fn refuse_before_code_of(
        &self,
        attempt: Attempt<'_>,
        stored: Option<&User>,
    ) -> Result<Option<Rejection>, GateError> {
        if let Some(password) = attempt.password {
            let ok = self.check_first_factor(attempt.user, stored, password)?;
            if stored.is_none() {
                return Ok(Some(Rejection::UnknownUser));
            }
            if !ok {
                // A wrong password leaves counters and failures alone (mod_authn_otp does the
                // same): it says nothing about the token.
                return Ok(Some(Rejection::WrongPassword));
            }
        }
        Ok(stored.is_none().then_some(Rejection::UnknownUser))
    }

    /// Verifies only the code of an attempt (the first factor was checked elsewhere).
    pub fn verify_code(&self, attempt: Attempt<'_>) -> Result<Outcome, GateError> {
        let now = self.clock.now();
        let policy = &self.policy;
        let mut outcome = Outcome::Rejected(Rejection::UnknownUser);
        let found = self.directory.update(attempt.user, &mut |user: &mut User| {
            let (result, changed) = attempt_on(user, attempt, now, policy);
            outcome = result;
            changed
        })?;
        if !found {
            return Ok(Outcome::Rejected(Rejection::UnknownUser));
        }
        Ok(outcome)
    }
}

impl Gate<'_> {
    /// Whether `code` is a right first code of a token not yet anyone's (enrollment): on
    /// success the token's replay state is set as if the code had been used, so it cannot be
    /// used again once the token is stored.
    pub fn confirms(&self, token: &mut Token, code: &str) -> bool {
        let mut owner = User::new("", FirstFactor::None);
        owner.tokens = vec![token.clone()];
        let attempt = Attempt {
            user: "",
            password: None,
            code,
            client_ip: None,
            linger: false,
        };
        let lenient = VerifyPolicy {
            max_failures: 0,
            ..self.policy.clone()
        };
        match attempt_on(&mut owner, attempt, self.clock.now(), &lenient) {
            (Outcome::Accepted { .. }, _) => {
                if let Some(t) = owner.tokens.pop() {
                    *token = t;
                }
                true
            }
            (Outcome::Rejected(_), _) => false,
        }
    }
}

impl VerifyPolicy {
    /// Whether `user` may not sign in: locked by an administrator, or by too many wrong codes.
    pub fn is_locked(&self, user: &User) -> bool {
        user.locked || (self.max_failures > 0 && user.failures >= self.max_failures)
    }
}

/// Applies one attempt to a loaded user; returns the outcome and whether the user changed.
fn attempt_on(user: &mut User, attempt: Attempt<'_>, now: i64, policy: &VerifyPolicy) -> (Outcome, bool) {
    if policy.is_locked(user) {
        return (Outcome::Rejected(Rejection::Locked), false);
    }
    if user.tokens.is_empty() && user.scratch.is_empty() {
        return (Outcome::Rejected(Rejection::NoToken), false);
    }
    let code = attempt.code.trim();
    // Linger: the exact code accepted last, resent from the same address in time.
    if attempt.linger && policy.linger > 0 {
        for (i, t) in user.tokens.iter().enumerate() {
            let same_code = t
                .last_code
                .as_ref()
                .is_some_and(|c| password::constant_time_eq(c, code));
            let same_ip = t.last_ip.as_deref() == attempt.client_ip && attempt.client_ip.is_some();
            let fresh = t.last_used.is_some_and(|u| now >= u && now < u + policy.linger as i64);
            if same_code && same_ip && fresh {
                return (
                    Outcome::Accepted {
                        user: Box::new(user.clone()),
                        via: Via::Linger(i),
                    },
                    false,
                );
            }
        }
    }
    let mut worst = Rejection::WrongCode;
    let mut accepted = None;
    for (i, t) in user.tokens.iter().enumerate() {
        match check_token(t, code, now, policy) {
            TokenResult::Accepted(counter) if accepted.is_none() => accepted = Some((i, counter)),
            TokenResult::Accepted(_) | TokenResult::Wrong => {}
            TokenResult::Replayed => worst = Rejection::Replayed,
            TokenResult::Expired if worst == Rejection::WrongCode => worst = Rejection::Expired,
            TokenResult::Expired => {}
        }
    }
    let via = if let Some((i, counter)) = accepted {
        let t = &mut user.tokens[i];
        match t.step {
            Step::Event => t.counter = counter.saturating_add(1),
            Step::Time(period) => {
                t.last_step = Some(counter);
                let now_step = totp_step(now, period);
                t.drift = i64::try_from(counter).unwrap_or(i64::MAX) - i64::try_from(now_step).unwrap_or(i64::MAX);
            }
        }
        t.last_code = Some(Zeroizing::new(code.to_ascii_lowercase()));
        t.last_used = Some(now);
        // Only a code first accepted for a client that may resend it (HTTP Basic) may
        // linger: without an address (the portal, PAM, the CLI) it matches no later client,
        // so a code used at the portal is used up. The code itself stays: users files find
        // the last step from it.
        t.last_ip = attempt.client_ip.filter(|_| attempt.linger).map(str::to_string);
        Some(Via::Token(i))
    } else if scratch::take(&mut user.scratch, code) {
        Some(Via::Scratch)
    } else {
        None
    };
    match via {
        Some(via) => {
            user.failures = 0;
            (
                Outcome::Accepted {
                    user: Box::new(user.clone()),
                    via,
                },
                true,
            )
        }
        None => {
            user.failures = user.failures.saturating_add(1);
            (Outcome::Rejected(worst), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::model::ScratchHash;
    use portcullis_otp::{Algorithm, Secret, hotp};

    use crate::testing::Memory;

    fn secret() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec())
    }

    fn setup(step: Step) -> Memory {
        let m = Memory::default();
        let mut u = User::new("alice", FirstFactor::Hash(password::hash_password("pw").unwrap()));
        u.tokens
            .push(Token::new(TokenKind::Oath, step, secret(), Algorithm::Sha1, 6));
        m.create(&u).unwrap();
        m
    }

    fn policy() -> VerifyPolicy {
        VerifyPolicy {
            totp_window: 1,
            hotp_look_ahead: 5,
            motp_window: 3,
            linger: 0,
            max_failures: 3,
        }
    }

    fn gate<'a>(m: &'a Memory, clock: &'a FixedClock, policy: VerifyPolicy) -> Gate<'a> {
        Gate {
            directory: m,
            clock,
            policy,
            external: None,
        }
    }

    fn attempt<'a>(code: &'a str, password: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            user: "alice",
            password,
            code,
            client_ip: Some("10.0.0.1"),
            linger: true,
        }
    }

    fn totp_at(t: i64) -> Zeroizing<String> {
        portcullis_otp::totp(&secret(), t, 30, 6, Algorithm::Sha1)
    }

    #[test]
    fn totp_accept_then_replay() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        let code = totp_at(clock.0);
        assert!(matches!(
            g.verify(attempt(&code, Some("pw"))).unwrap(),
            Outcome::Accepted { via: Via::Token(0), .. }
        ));
        assert_eq!(
            g.verify(attempt(&code, Some("pw"))).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );
        // The previous step's code is older than the accepted one: also refused.
        let older = totp_at(clock.0 - 30);
        assert_eq!(
            g.verify(attempt(&older, None)).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );
    }

    #[test]
    fn wrong_password_does_not_touch_failures() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        let code = totp_at(clock.0);
        assert_eq!(
            g.verify(attempt(&code, Some("nope"))).unwrap(),
            Outcome::Rejected(Rejection::WrongPassword)
        );
        assert_eq!(m.user("alice").unwrap().unwrap().failures, 0);
        assert!(matches!(
            g.verify(attempt(&code, Some("pw"))).unwrap(),
            Outcome::Accepted { .. }
        ));
    }

    #[test]
    fn lockout_after_max_failures_and_unlock() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        for _ in 0..3 {
            assert_eq!(
                g.verify(attempt("000000", None)).unwrap(),
                Outcome::Rejected(Rejection::WrongCode)
            );
        }
        let good = totp_at(clock.0);
        assert_eq!(
            g.verify(attempt(&good, None)).unwrap(),
            Outcome::Rejected(Rejection::Locked)
        );
        m.update("alice", &mut |u| {
            u.failures = 0;
            true
        })
        .unwrap();
        assert!(matches!(
            g.verify(attempt(&good, None)).unwrap(),
            Outcome::Accepted { .. }
        ));
    }

    #[test]
    fn expired_code_is_named() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        let old = totp_at(clock.0 - 120);
        assert_eq!(
            g.verify(attempt(&old, None)).unwrap(),
            Outcome::Rejected(Rejection::Expired)
        );
    }

    #[test]
    fn hotp_resyncs_within_look_ahead() {
        let m = setup(Step::Event);
        let clock = FixedClock(0);
        let g = gate(&m, &clock, policy());
        let code = hotp(&secret(), 4, 6, Algorithm::Sha1);
        assert!(matches!(
            g.verify(attempt(&code, None)).unwrap(),
            Outcome::Accepted { .. }
        ));
        assert_eq!(m.user("alice").unwrap().unwrap().tokens[0].counter, 5);
        // The same code again is behind the counter: named a replay (as are the skipped
        // counters 0-3, which can never be used either).
        assert_eq!(
            g.verify(attempt(&code, None)).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );
        let far = hotp(&secret(), 11, 6, Algorithm::Sha1);
        assert_eq!(
            g.verify(attempt(&far, None)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
    }

    #[test]
    fn linger_reuse_only_same_ip_and_in_time() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let mut p = policy();
        p.linger = 60;
        let code = totp_at(clock.0);
        assert!(matches!(
            gate(&m, &clock, p.clone()).verify(attempt(&code, None)).unwrap(),
            Outcome::Accepted { .. }
        ));
        let later = FixedClock(clock.0 + 59);
        assert!(matches!(
            gate(&m, &later, p.clone()).verify(attempt(&code, None)).unwrap(),
            Outcome::Accepted {
                via: Via::Linger(0),
                ..
            }
        ));
        let other_ip = Attempt {
            client_ip: Some("10.0.0.2"),
            ..attempt(&code, None)
        };
        assert!(matches!(
            gate(&m, &later, p.clone()).verify(other_ip).unwrap(),
            Outcome::Rejected(_)
        ));
        let too_late = FixedClock(clock.0 + 60);
        assert!(matches!(
            gate(&m, &too_late, p).verify(attempt(&code, None)).unwrap(),
            Outcome::Rejected(_)
        ));
    }

    /// Regression (issue 9.3): a code accepted without linger (the portal) was accepted
    /// again over Basic from the same address for the whole linger time.
    #[test]
    fn a_code_used_without_linger_never_lingers() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let mut p = policy();
        p.linger = 60;
        let code = totp_at(clock.0);
        let portal = Attempt {
            linger: false,
            ..attempt(&code, None)
        };
        assert!(matches!(
            gate(&m, &clock, p.clone()).verify(portal).unwrap(),
            Outcome::Accepted { .. }
        ));
        let later = FixedClock(clock.0 + 5);
        assert_eq!(
            gate(&m, &later, p).verify(attempt(&code, None)).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );
    }

    #[test]
    fn scratch_codes_work_once_and_unknown_users_are_refused() {
        let m = setup(Step::Time(30));
        m.update("alice", &mut |u| {
            u.scratch = vec![scratch::hash("12345678"), ScratchHash("x".into())];
            true
        })
        .unwrap();
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        assert!(matches!(
            g.verify(attempt("12345678", None)).unwrap(),
            Outcome::Accepted { via: Via::Scratch, .. }
        ));
        assert!(matches!(
            g.verify(attempt("12345678", None)).unwrap(),
            Outcome::Rejected(_)
        ));
        let nobody = Attempt {
            user: "mallory",
            ..attempt("123456", Some("pw"))
        };
        assert_eq!(g.verify(nobody).unwrap(), Outcome::Rejected(Rejection::UnknownUser));
    }

    #[test]
    fn non_ascii_digits_are_wrong_not_a_panic() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        assert_eq!(
            g.verify(attempt("١٢٣٤٥٦", None)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
    }

    /// One user `bob` with the given tokens (no password) in a fresh directory.
    fn with_tokens(tokens: Vec<Token>) -> Memory {
        let m = Memory::default();
        let mut u = User::new("bob", FirstFactor::None);
        u.tokens = tokens;
        m.create(&u).unwrap();
        m
    }

    fn bob(code: &str, linger: bool) -> Attempt<'_> {
        Attempt {
            user: "bob",
            password: None,
            code,
            client_ip: Some("10.0.0.1"),
            linger,
        }
    }

    fn one_digit(seed: u8, step: Step) -> Token {
        Token::new(
            TokenKind::Oath,
            step,
            Secret::from_bytes(vec![seed; 20]),
            Algorithm::Sha1,
            1,
        )
    }

    #[test]
    fn reasons_have_distinct_labels_and_explanations() {
        use Rejection::*;
        let all = [
            UnknownUser,
            WrongPassword,
            WrongCode,
            Replayed,
            Expired,
            Locked,
            NoToken,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.label()).collect();
        let texts: std::collections::HashSet<_> = all.iter().map(|r| r.explain()).collect();
        assert_eq!((labels.len(), texts.len()), (all.len(), all.len()));
        assert_eq!(Replayed.label(), "replayed");
        assert!(Locked.explain().contains("portcullis user unlock"));
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }

    #[test]
    fn motp_codes_are_accepted_in_their_window() {
        let secret = Secret::from_hex("0123456789abcdef").unwrap();
        let mut t = Token::new(TokenKind::Motp, Step::Time(10), secret.clone(), Algorithm::Sha1, 6);
        t.motp_pin = Some(Zeroizing::new("1234".into()));
        let m = with_tokens(vec![t]);
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        let code = motp(&secret, "1234", (clock.0 / 10) as u64, 6);
        assert!(matches!(
            g.verify_code(bob(&code, false)).unwrap(),
            Outcome::Accepted { via: Via::Token(0), .. }
        ));
        let upper = motp(&secret, "1234", (clock.0 / 10 + 1) as u64, 6).to_ascii_uppercase();
        assert!(matches!(
            g.verify_code(bob(&upper, false)).unwrap(),
            Outcome::Accepted { .. }
        ));
        assert_eq!(
            g.verify_code(bob("zzzzzz", false)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
    }

    #[test]
    fn hotp_at_counter_zero_and_far_ahead_codes_are_just_wrong() {
        let hotp_code = |c: u64| hotp(&secret(), c, 6, Algorithm::Sha1);
        let clock = FixedClock(1_700_000_000);
        let m = with_tokens(vec![Token::new(
            TokenKind::Oath,
            Step::Event,
            secret(),
            Algorithm::Sha1,
            6,
        )]);
        let g = gate(&m, &clock, policy());
        assert_eq!(
            g.verify_code(bob("000000", false)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
        m.update("bob", &mut |u| {
            u.tokens[0].counter = 20;
            u.failures = 0;
            true
        })
        .unwrap();
        // Used counters just behind (10..19) are replays; one beyond the look-ahead is wrong.
        assert_eq!(
            g.verify_code(bob(&hotp_code(15), false)).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );
        assert_eq!(
            g.verify_code(bob(&hotp_code(35), false)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
        assert_eq!(
            g.verify_code(bob(&hotp_code(9), false)).unwrap(),
            Outcome::Rejected(Rejection::WrongCode)
        );
    }

    #[test]
    fn an_unused_counter_wins_over_a_used_one_with_the_same_code() {
        // One-digit codes collide: find a code that the next counter and a used one share.
        let clock = FixedClock(1_700_000_000);
        let next = 20u64;
        let mut t = (1..=255u8)
            .map(|seed| one_digit(seed, Step::Event))
            .find(|t| {
                let g = Hotp::new(&t.secret, Algorithm::Sha1, 1);
                (10..next).any(|c| g.code(c) == g.code(next))
            })
            .expect("some seed has a collision");
        let code = Hotp::new(&t.secret, Algorithm::Sha1, 1).code(next);
        t.counter = next;
        let m = with_tokens(vec![t]);
        let g = gate(&m, &clock, policy());
        let Outcome::Accepted { user, .. } = g.verify_code(bob(&code, false)).unwrap() else {
            panic!("the next counter's code is accepted, although an old counter had it too");
        };
        assert_eq!(user.tokens[0].counter, next + 1);
    }

    #[test]
    fn the_first_matching_token_wins_and_a_replay_outranks_an_expired_code() {
        let clock = FixedClock(1_700_000_010);
        let code = totp_at(clock.0);
        let twin = || Token::new(TokenKind::Oath, Step::Time(30), secret(), Algorithm::Sha1, 6);
        let m = with_tokens(vec![twin(), twin()]);
        let g = gate(&m, &clock, policy());
        assert!(matches!(
            g.verify_code(bob(&code, false)).unwrap(),
            Outcome::Accepted { via: Via::Token(0), .. }
        ));
        // Token 0 has used this code's step; token 1 is asked next and accepts it.
        assert!(matches!(
            g.verify_code(bob(&code, false)).unwrap(),
            Outcome::Accepted { via: Via::Token(1), .. }
        ));
        // Now both call it used.
        assert_eq!(
            g.verify_code(bob(&code, false)).unwrap(),
            Outcome::Rejected(Rejection::Replayed)
        );

        // A replay on one token and an expired code on another: "already used" is the answer.
        let now_step = (clock.0 / 30) as u64;
        let used = one_digit(1, Step::Time(30));
        let gen_used = Hotp::new(&used.secret, Algorithm::Sha1, 1);
        let code = gen_used.code(now_step);
        let expired = (2..=255u8)
            .map(|seed| one_digit(seed, Step::Time(30)))
            .find(|t| {
                let g = Hotp::new(&t.secret, Algorithm::Sha1, 1);
                let in_window = (now_step - 1..=now_step + 1).any(|s| g.code(s) == code);
                !in_window && (now_step - 11..now_step - 1).any(|s| g.code(s) == code)
            })
            .expect("some seed has this code only in its expired steps");
        let mut used = used;
        used.last_step = Some(now_step + 1);
        for tokens in [vec![used.clone(), expired.clone()], vec![expired, used]] {
            let m = with_tokens(tokens);
            let g = gate(&m, &clock, policy());
            assert_eq!(
                g.verify_code(bob(&code, false)).unwrap(),
                Outcome::Rejected(Rejection::Replayed)
            );
        }
    }

    #[test]
    fn password_only_needs_a_real_first_factor() {
        let m = setup(Step::Time(30));
        let mut none = User::new("nopass", FirstFactor::None);
        none.tokens.clear();
        m.create(&none).unwrap();
        let clock = FixedClock(1_700_000_000);
        let g = gate(&m, &clock, policy());
        let alice = m.user("alice").unwrap();
        let nopass = m.user("nopass").unwrap();
        assert!(g.check_password_only("alice", alice.as_ref(), "pw").unwrap());
        assert!(!g.check_password_only("alice", alice.as_ref(), "nope").unwrap());
        assert!(
            !g.check_password_only("nopass", nopass.as_ref(), "").unwrap(),
            "no password is no factor"
        );
        assert!(g.check_first_factor("nopass", nopass.as_ref(), "").unwrap());
        assert!(!g.check_password_only("ghost", None, "pw").unwrap());
    }

    #[test]
    fn zero_max_failures_never_locks() {
        let p = VerifyPolicy {
            max_failures: 0,
            ..policy()
        };
        let mut u = User::new("u", FirstFactor::None);
        u.failures = 1000;
        assert!(!p.is_locked(&u));
        u.locked = true;
        assert!(p.is_locked(&u), "an administrator's lock still holds");
        let p = VerifyPolicy {
            max_failures: 3,
            ..policy()
        };
        u.locked = false;
        u.failures = 2;
        assert!(!p.is_locked(&u));
        u.failures = 3;
        assert!(p.is_locked(&u));
    }

    #[test]
    fn only_attempts_that_may_linger_reuse_a_code() {
        let m = setup(Step::Time(30));
        let clock = FixedClock(1_700_000_000);
        let g = gate(
            &m,
            &clock,
            VerifyPolicy {
                linger: 300,
                ..policy()
            },
        );
        let code = totp_at(clock.0);
        assert!(matches!(
            g.verify(attempt(&code, Some("pw"))).unwrap(),
            Outcome::Accepted { .. }
        ));
        let portal = Attempt {
            linger: false,
            ..attempt(&code, Some("pw"))
        };
        assert_eq!(g.verify(portal).unwrap(), Outcome::Rejected(Rejection::Replayed));
        assert!(matches!(
            g.verify(attempt(&code, Some("pw"))).unwrap(),
            Outcome::Accepted {
                via: Via::Linger(0),
                ..
            }
        ));
    }
}

//! The factor seams: where a password is checked outside the directory (htpasswd, htdigest;
//! LDAP next), and the begin/finish shape every second factor has (a code now; push
//! approval and passkeys next), each with the conformance suite its implementations pass.

use crate::gate::{Attempt, Gate, GateError, Outcome, Rejection, Via};
use crate::model::User;
use crate::password::PasswordError;

/// A first-factor provider outside the directory, for users whose first factor is
/// `External` (the `+` PIN of a users file, or `first_factor = "external"`).
pub trait PasswordSource: Send + Sync {
    /// Short name for messages and logs (`htpasswd`, `htdigest`, `ldap`).
    fn name(&self) -> &'static str;
    /// `Some(right)` when this source knows `user`; `None` when it does not (the caller then
    /// spends the time of a verification anyway, so unknown users are not faster).
    fn check(&self, user: &str, password: &str) -> Result<Option<bool>, PasswordError>;
    /// A digest that changes whenever `user`'s password here changes (`None`: not known
    /// here), kept in each session so a change made in the source ends the sessions made
    /// with the old password. It must not reveal the password (a keyed or salted digest).
    fn fingerprint(&self, user: &str) -> Result<Option<[u8; 16]>, PasswordError>;
    /// Spends, for a name nobody has, the time a refused `check` of a known name takes, so
    /// the answer does not tell who exists. Files: one password verification.
    fn spend(&self, typed: &str, password: &str) -> Result<(), PasswordError> {
        let _ = (typed, crate::password::verify_dummy(password));
        Ok(())
    }
    /// The one name this source knows the person by, for what they typed (an e-mail
    /// address, another case); `None` when it knows nobody by it. Lockout, replay,
    /// regulation and sessions are all keyed on that name. Files: names are as typed.
    fn canonical(&self, typed: &str) -> Result<Option<String>, PasswordError> {
        let _ = typed;
        Ok(None)
    }
    /// Whether `user`, known here, may enroll a token themselves at their first login
    /// (`[ldap] auto_enroll`, for members of `auto_enroll_groups`).
    fn may_enroll(&self, user: &str) -> Result<bool, PasswordError> {
        let _ = user;
        Ok(false)
    }
    /// Whether [`PasswordSource::profile`] ever says anything (a directory server does;
    /// a password file does not).
    fn gives_profiles(&self) -> bool {
        false
    }
    /// What this source says about `user` (a directory server's groups, name and mail),
    /// read at login and at every session refresh; `None`: nothing beyond the password.
    fn profile(&self, user: &str) -> Result<Option<Profile>, PasswordError> {
        let _ = user;
        Ok(None)
    }
}

/// What a password source knows about a person besides the password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Group names (and, for a directory server, their full DNs) for access rules.
    pub groups: Vec<String>,
    /// The name to show.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// A token kept at the source (an LDAP attribute): it replaces the user's tokens, with
    /// the replay state the portcullis store keeps for it.
    pub token: Option<crate::model::Token>,
}

/// The conformance suite every [`PasswordSource`] passes (htpasswd, htdigest; LDAP next).
/// The source must know `user` with `password` and nobody called `nobody`; `change` gives
/// `user` the password `"changed pw"` in the source.
#[allow(clippy::unwrap_used)] // a conformance check: a failed step is a failed test
pub fn check_password_source_contract(s: &dyn PasswordSource, user: &str, password: &str, change: &dyn Fn()) {
    assert!(!s.name().is_empty());
    assert_eq!(s.check(user, password).unwrap(), Some(true), "the right password");
    assert_eq!(s.check(user, "not it").unwrap(), Some(false), "a wrong one");
    assert_eq!(s.check(user, "").unwrap(), Some(false), "an empty one");
    assert_eq!(
        s.check("nobody", password).unwrap(),
        None,
        "an unknown user is not known"
    );
    assert_eq!(s.fingerprint("nobody").unwrap(), None);
    let before = s.fingerprint(user).unwrap().expect("a known user has a fingerprint");
    assert_eq!(
        s.fingerprint(user).unwrap(),
        Some(before),
        "stable while nothing changes"
    );
    change();
    assert_eq!(
        s.check(user, password).unwrap(),
        Some(false),
        "the old password is gone"
    );
    assert_eq!(s.check(user, "changed pw").unwrap(), Some(true));
    let after = s.fingerprint(user).unwrap().expect("still known");
    assert_ne!(after, before, "a new password is a new fingerprint");
}

/// What a second factor asks of the person once the first factor is done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// Type a one-time or scratch code.
    Code,
    /// Approve elsewhere (a push); poll with [`Answer::Poll`] quoting `handle`.
    Pending {
        /// What identifies this approval request to the factor.
        handle: String,
    },
    /// Sign this challenge (a passkey); answer with [`Answer::Assertion`].
    Assertion {
        /// The options to hand the browser, as the factor encodes them.
        options: String,
    },
}

/// The person's answer to a [`Challenge`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Answer<'a> {
    /// A typed code.
    Code(&'a str),
    /// "Has it been approved yet?" for a pending challenge.
    Poll(&'a str),
    /// A signed assertion, as the browser sent it.
    Assertion(&'a str),
}

/// Where an answer leaves the second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Accepted: the user as stored after the attempt (replay state, failures cleared).
    Accepted {
        /// The user as stored after the attempt.
        user: Box<User>,
        /// What matched.
        via: Via,
    },
    /// Refused, with the reason (for logs; the person sees one generic message).
    Refused(Rejection),
    /// Not decided yet (a push not answered): ask again later.
    StillPending,
}

/// Who is answering, from where: what a factor needs besides the answer.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The user who passed the first factor.
    pub user: &'a str,
    /// The client's address, for linger and logs.
    pub client_ip: Option<&'a str>,
    /// Whether a code accepted moments ago may be resent (HTTP Basic clients only).
    pub linger: bool,
}

/// A second factor: `begin` says what to ask, `finish` judges the answer. Anything that
/// must happen once (a code, an approval, a signature counter) is used up inside `finish`,
/// atomically in the store, so two answers never both win.
pub trait SecondFactor: Send + Sync {
    /// Short name for logs (`code`, `duo`, `passkey`).
    fn name(&self) -> &'static str;
    /// Whether `user` has this factor enrolled.
    fn enrolled(&self, user: &User) -> bool;
    /// What to ask `ctx.user` for.
    fn begin(&self, ctx: &Context<'_>) -> Result<Challenge, GateError>;
    /// Judges `answer` to `challenge`; an answer of the wrong shape is refused.
    fn finish(&self, ctx: &Context<'_>, challenge: &Challenge, answer: Answer<'_>) -> Result<Finish, GateError>;
}

/// One-time and scratch codes (TOTP, HOTP, mOTP, scratch), checked by the [`Gate`] with its
/// replay, drift and lockout rules: a code finishes at once.
pub struct Codes<'g, 'a>(pub &'g Gate<'a>);

impl SecondFactor for Codes<'_, '_> {
    fn name(&self) -> &'static str {
        "code"
    }

    fn enrolled(&self, user: &User) -> bool {
        !user.tokens.is_empty() || !user.scratch.is_empty()
    }

    fn begin(&self, _ctx: &Context<'_>) -> Result<Challenge, GateError> {
        Ok(Challenge::Code)
    }

    fn finish(&self, ctx: &Context<'_>, challenge: &Challenge, answer: Answer<'_>) -> Result<Finish, GateError> {
        let (Challenge::Code, Answer::Code(code)) = (challenge, answer) else {
            return Ok(Finish::Refused(Rejection::WrongCode));
        };
        let outcome = self.0.verify_code(Attempt {
            user: ctx.user,
            password: None,
            code,
            client_ip: ctx.client_ip,
            linger: ctx.linger,
        })?;
        Ok(match outcome {
            Outcome::Accepted { user, via } => Finish::Accepted { user, via },
            Outcome::Rejected(r) => Finish::Refused(r),
        })
    }
}

impl crate::authz::Authorizer<'_> {
    /// Checks an attempt's first factor (when given) and then its code through the
    /// [`SecondFactor`] seam: every way in (portal, Basic, `check`, PAM) asks here.
    pub fn verify(&self, attempt: Attempt<'_>) -> Result<Outcome, GateError> {
        let stored = self.gate.directory.user(attempt.user)?;
        self.verify_of(attempt, stored.as_ref())
    }

    /// [`Authorizer::verify`] for the user as the caller has just read it.
    pub fn verify_of(&self, attempt: Attempt<'_>, stored: Option<&User>) -> Result<Outcome, GateError> {
        if let Some(r) = self.gate.refuse_before_code_of(attempt, stored)? {
            return Ok(Outcome::Rejected(r));
        }
        let factor: &dyn SecondFactor = &Codes(&self.gate);
        let ctx = Context {
            user: attempt.user,
            client_ip: attempt.client_ip,
            linger: attempt.linger,
        };
        let challenge = factor.begin(&ctx)?;
        Ok(match factor.finish(&ctx, &challenge, Answer::Code(attempt.code))? {
            Finish::Accepted { user, via } => Outcome::Accepted { user, via },
            Finish::Refused(r) => Outcome::Rejected(r),
            // A one-shot attempt cannot wait for an approval.
            Finish::StillPending => Outcome::Rejected(Rejection::NotApproved),
        })
    }
}

/// How the conformance suite drives one factor for one enrolled user.
pub trait FactorDriver {
    /// The answer that is right now for `challenge` (a current code; for a push, after
    /// approving it at the stand-in service; for a passkey, a fresh signature).
    fn right(&self, challenge: &Challenge) -> String;
    /// An answer of the right shape that is wrong.
    fn wrong(&self, challenge: &Challenge) -> String;
    /// The answer for `challenge` as the factor takes it.
    fn answer<'x>(&self, challenge: &Challenge, text: &'x str) -> Answer<'x>;
    /// Locks the user in the directory (the administrator's `user lock`).
    fn lock(&self);
}

/// The conformance suite every [`SecondFactor`] passes. `enrolled` is enrolled and has no
/// failures; `other` exists and is not enrolled; nobody is called `nobody`.
#[allow(clippy::unwrap_used)] // a conformance check: a failed step is a failed test
pub fn check_second_factor_contract(f: &dyn SecondFactor, d: &dyn FactorDriver, enrolled: &User, other: &User) {
    let ctx = Context {
        user: &enrolled.name,
        client_ip: Some("192.0.2.7"),
        linger: false,
    };
    assert!(
        f.enrolled(enrolled) && !f.enrolled(other),
        "enrolment is read from the user"
    );
    let challenge = f.begin(&ctx).unwrap();
    // Poll until decided: a pending factor may take a few rounds.
    let finish = |challenge: &Challenge, text: &str| loop {
        match f.finish(&ctx, challenge, d.answer(challenge, text)).unwrap() {
            Finish::StillPending => std::thread::yield_now(),
            done => break done,
        }
    };
    assert!(
        matches!(finish(&challenge, &d.wrong(&challenge)), Finish::Refused(_)),
        "a wrong answer is refused"
    );
    let right = d.right(&challenge);
    let Finish::Accepted { user, .. } = finish(&challenge, &right) else {
        panic!("the right answer is accepted");
    };
    assert_eq!(user.name, enrolled.name);
    assert_eq!(user.failures, 0, "an accepted answer clears the failures");
    assert!(
        matches!(finish(&challenge, &right), Finish::Refused(_)),
        "the same answer is accepted once"
    );
    let other_shape = match challenge {
        Challenge::Code => Answer::Assertion("{}"),
        _ => Answer::Code("123456"),
    };
    assert!(
        matches!(f.finish(&ctx, &challenge, other_shape).unwrap(), Finish::Refused(_)),
        "an answer of another shape is refused"
    );
    let nobody = Context { user: "nobody", ..ctx };
    let challenge_nobody = f.begin(&nobody).unwrap_or(Challenge::Code);
    assert!(
        matches!(
            f.finish(&nobody, &challenge_nobody, d.answer(&challenge_nobody, &right))
                .unwrap(),
            Finish::Refused(_)
        ),
        "an unknown user is refused"
    );
    d.lock();
    let challenge = f.begin(&ctx).unwrap();
    assert_eq!(
        finish(&challenge, &d.right(&challenge)),
        Finish::Refused(Rejection::Locked),
        "a locked user is refused, even with the right answer"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::clock::ManualClock;
    use crate::gate::VerifyPolicy;
    use crate::model::{FirstFactor, Step, Token, TokenKind};
    use crate::store::Directory;
    use crate::testing::Memory;
    use portcullis_otp::{Algorithm, Secret};

    const T0: i64 = 1_700_000_000;

    fn policy() -> VerifyPolicy {
        VerifyPolicy {
            totp_window: 1,
            hotp_look_ahead: 3,
            motp_window: 3,
            linger: 0,
            max_failures: 5,
        }
    }

    struct CodeDriver<'a> {
        directory: &'a Memory,
        clock: &'a ManualClock,
        token: Option<Token>,
        scratch: Option<&'a str>,
    }

    impl FactorDriver for CodeDriver<'_> {
        fn right(&self, _: &Challenge) -> String {
            match (&self.token, self.scratch) {
                (Some(t), _) => match t.step {
                    Step::Time(period) => {
                        portcullis_otp::totp(&t.secret, self.clock.now(), period, t.digits, t.algorithm).to_string()
                    }
                    Step::Event => {
                        let stored = self.directory.user("ann").unwrap().unwrap();
                        portcullis_otp::hotp(&t.secret, stored.tokens[0].counter, t.digits, t.algorithm).to_string()
                    }
                },
                (None, Some(code)) => code.to_string(),
                (None, None) => unreachable!("a driver has a token or a scratch code"),
            }
        }
        fn wrong(&self, challenge: &Challenge) -> String {
            let right = self.right(challenge);
            // Same length, every digit moved: wrong for certain.
            right
                .chars()
                .map(|c| c.to_digit(10).map_or('0', |d| char::from(b'0' + ((d as u8 + 1) % 10))))
                .collect()
        }
        fn answer<'x>(&self, _: &Challenge, text: &'x str) -> Answer<'x> {
            Answer::Code(text)
        }
        fn lock(&self) {
            self.directory
                .update("ann", &mut |u| {
                    u.locked = true;
                    true
                })
                .unwrap();
            // A new step, so a time code is not refused as used instead of as locked.
            self.clock.advance(30);
        }
    }

    fn run(token: Option<Token>, scratch: Option<&str>) {
        let directory = Memory::default();
        let clock = ManualClock::at(T0);
        let mut ann = User::new("ann", FirstFactor::None);
        if let Some(t) = &token {
            ann.tokens.push(t.clone());
        }
        if let Some(code) = scratch {
            ann.scratch.push(crate::scratch::hash(code));
        }
        directory.create(&ann).unwrap();
        let bob = User::new("bob", FirstFactor::None);
        directory.create(&bob).unwrap();
        let gate = Gate {
            directory: &directory,
            clock: &clock,
            policy: policy(),
            external: None,
        };
        let driver = CodeDriver {
            directory: &directory,
            clock: &clock,
            token,
            scratch,
        };
        check_second_factor_contract(&Codes(&gate), &driver, &ann, &bob);
    }

    fn key() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn totp_codes_keep_the_second_factor_contract() {
        run(
            Some(Token::new(TokenKind::Oath, Step::Time(30), key(), Algorithm::Sha1, 6)),
            None,
        );
    }

    #[test]
    fn hotp_codes_keep_the_second_factor_contract() {
        run(
            Some(Token::new(TokenKind::Oath, Step::Event, key(), Algorithm::Sha256, 8)),
            None,
        );
    }

    #[test]
    fn scratch_codes_keep_the_second_factor_contract() {
        run(None, Some("12345678"));
    }
}

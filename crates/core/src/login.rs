//! The portal's login flow as core calls: the password step, the code step, the one-page
//! form, "this page needs only one factor", who is signed in, sign-out and enrollment
//! confirmation. The portal parses forms and renders pages; every decision is made here.

use crate::access::{self, Policy, Resource, Subject};
use crate::authz::{Attempted, AuthEvent, Authorizer, StepResult};
use crate::gate::{GateError, Rejection};
use crate::invite::{Invite, InviteStore};
use crate::model::{Token, User};
use crate::session::{Level, Session, SessionId};
use std::net::IpAddr;

/// What a login form carried.
#[derive(Debug, Clone)]
pub struct LoginAttempt<'a> {
    /// The name as typed (trimmed).
    pub user: &'a str,
    /// The password or PIN.
    pub password: &'a str,
    /// The code, on the one-page form; `None` when the code has a page of its own.
    pub code: Option<&'a str>,
    /// The page the person signs in for (from a validated return URL), if any: a rule that
    /// asks only one factor there lets the login end after the password.
    pub target: Option<Resource<'a>>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The session the browser holds now; it is replaced, never kept (no fixation).
    pub current: Option<&'a str>,
}

/// Why a login step was refused. People see one message for all but `Locked`/`NoToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A factor was wrong, replayed or expired, or the user is unknown (the reason is for logs).
    Rejected(Rejection),
    /// The user or the address is banned for now; answer as slowly as a checked password.
    Banned,
    /// The code step without a live session: start again at the password.
    NotSignedIn,
}

impl Refusal {
    fn of(result: StepResult) -> Self {
        match result {
            StepResult::Refused(r) => Refusal::Rejected(r),
            StepResult::Banned | StepResult::Passed(_) => Refusal::Banned,
        }
    }
}

/// Where a login step leaves the person.
#[derive(Debug)]
pub enum LoginOutcome {
    /// A new session; `complete` when nothing more is asked for the target (else the code
    /// page comes next).
    SignedIn {
        /// The new session's cookie value.
        session: SessionId,
        /// The level it has.
        level: Level,
        /// True when the login is over.
        complete: bool,
    },
    /// Refused.
    Refused(Refusal),
    /// The password is right and the person has no second factor yet, which they may
    /// enroll themselves now (`[ldap] auto_enroll`): send them to an enrollment link.
    Enroll {
        /// Whose token it will be.
        user: String,
    },
}

/// A login step's outcome and the attempts it made, for the adapter to log and count.
#[derive(Debug)]
pub struct LoginStep {
    /// Where the person stands now.
    pub outcome: LoginOutcome,
    /// One event per factor checked.
    pub events: Vec<AuthEvent>,
}

/// An opened invitation, and whether this was the first look at its key.
pub type Opened = (Invite, bool);

/// The outcome of an enrollment confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrollment {
    /// The new token is the user's; the user's other sessions have ended.
    Done,
    /// The code does not fit the new token.
    WrongCode,
    /// Banned for now, or the key was never revealed: nothing checked.
    Refused,
    /// The invitation is unknown, used or expired.
    Expired,
}

impl Authorizer<'_> {
    /// The session behind a cookie value with the same checks as every request: expiry, the
    /// client address when bound, and the periodic re-read of the user (a lock, a removal or a
    /// new password ends it).
    pub fn signed_in(&self, id: &str, ip: IpAddr) -> Result<Option<Session>, GateError> {
        let now = self.clock.now();
        let Some((mut s, due)) = self.sessions.get_and_due(id, now, Some(ip))? else {
            return Ok(None);
        };
        Ok((!due || self.refresh_session(id, &mut s, now)?).then_some(s))
    }

    /// Ends the session behind a cookie value; true when there was one.
    pub fn sign_out(&self, id: &str) -> Result<bool, GateError> {
        Ok(self.sessions.revoke(id)?)
    }

    /// The login form: the password, then the code on the same form, or a session of one
    /// factor when the code has its own page or the target asks only one factor.
    pub fn login(&self, a: &LoginAttempt<'_>) -> Result<LoginStep, GateError> {
        let (first, e1) = self.password_step(a.user, a.password, a.client_ip)?;
        let mut events = vec![e1];
        let StepResult::Passed(u) = first else {
            return Ok(LoginStep {
                outcome: LoginOutcome::Refused(Refusal::of(first)),
                events,
            });
        };
        if self.gate.enrolls_now(&u)? {
            return Ok(LoginStep {
                outcome: LoginOutcome::Enroll { user: u.name.clone() },
                events,
            });
        }
        // Without a first factor nothing is proven yet: never a one-factor login.
        let has_first = u.first_factor.exists();
        let enough = has_first && a.target.as_ref().is_some_and(|t| self.one_factor_enough(t, &u));
        // A push user who typed no code goes on to the push page (a session of one factor).
        // So does a passkey user (to the code page, where the passkey is offered).
        let push_next = (self.pushes_for(&u) || self.passkeys_for(&u)) && a.code.is_none_or(|c| c.trim().is_empty());
        let Some(code) = a.code.filter(|_| !enough && !push_next) else {
            let level = if has_first { Level::OneFactor } else { Level::Named };
            let session = self.start_session(a.current, &u, level, a.client_ip)?;
            return Ok(LoginStep {
                outcome: LoginOutcome::SignedIn {
                    session,
                    level,
                    complete: enough,
                },
                events,
            });
        };
        let (second, e2) = self.code_step(&u.name, code, a.client_ip)?;
        events.push(e2);
        let outcome = match second {
            StepResult::Passed(u) => LoginOutcome::SignedIn {
                session: self.start_session(a.current, &u, Level::TwoFactor, a.client_ip)?,
                level: Level::TwoFactor,
                complete: true,
            },
            other => LoginOutcome::Refused(Refusal::of(other)),
        };
        Ok(LoginStep { outcome, events })
    }

    /// The code page: `current` must be a live session of the user who passed the password
    /// step; a right code replaces it by a two-factor session.
    pub fn login_code(&self, current: &str, code: &str, ip: IpAddr) -> Result<LoginStep, GateError> {
        let Some(s) = self.signed_in(current, ip)? else {
            return Ok(LoginStep {
                outcome: LoginOutcome::Refused(Refusal::NotSignedIn),
                events: Vec::new(),
            });
        };
        // A push user without a token of their own types a Duo passcode here.
        if let Some(step) = self.code_as_passcode(&s.user, code, ip, false)? {
            return self.passcode_step(current, step, Vec::new(), ip);
        }
        let (result, event) = self.code_step(&s.user, code, ip)?;
        if result == StepResult::Refused(Rejection::WrongCode)
            && let Some(step) = self.code_as_passcode(&s.user, code, ip, true)?
        {
            return self.passcode_step(current, step, vec![event], ip);
        }
        let outcome = match result {
            StepResult::Passed(u) => LoginOutcome::SignedIn {
                session: self.start_session(Some(current), &u, Level::TwoFactor, ip)?,
                level: Level::TwoFactor,
                complete: true,
            },
            other => LoginOutcome::Refused(Refusal::of(other)),
        };
        Ok(LoginStep {
            outcome,
            events: vec![event],
        })
    }

    /// The code page's answer after the push service judged the code as a passcode.
    fn passcode_step(
        &self,
        current: &str,
        (step, event): (crate::push::PushStep, Option<AuthEvent>),
        mut events: Vec<AuthEvent>,
        ip: IpAddr,
    ) -> Result<LoginStep, GateError> {
        use crate::push::PushStep;
        events.extend(event);
        let outcome = match step {
            PushStep::Approved { user, .. } => LoginOutcome::SignedIn {
                session: self.start_session(Some(current), &user, Level::TwoFactor, ip)?,
                level: Level::TwoFactor,
                complete: true,
            },
            PushStep::Banned => LoginOutcome::Refused(Refusal::Banned),
            PushStep::Refused(r) => LoginOutcome::Refused(Refusal::Rejected(r)),
            PushStep::Unavailable => return Err(GateError::Unavailable("duo")),
            _ => LoginOutcome::Refused(Refusal::Rejected(Rejection::WrongCode)),
        };
        Ok(LoginStep { outcome, events })
    }

    /// True when `target` needs no second factor from `user` (a one_factor or bypass rule,
    /// which may name a network), so the code step is skipped.
    fn one_factor_enough(&self, target: &Resource<'_>, user: &User) -> bool {
        let subject = Subject {
            user: &user.name,
            groups: &user.groups,
        };
        matches!(
            self.access.policy_for(target, Some(&subject)),
            Ok(access::RuleOutcome::Policy(Policy::OneFactor | Policy::Bypass))
        )
    }

    /// A new session for `user`, replacing `old` (every login step gets a new id).
    pub(crate) fn start_session(
        &self,
        old: Option<&str>,
        user: &User,
        level: Level,
        ip: IpAddr,
    ) -> Result<SessionId, GateError> {
        Ok(self.sessions.rotate(old, self.session_for(user, level, ip)?)?)
    }

    /// Opens an invitation for showing its key: `fresh` becomes its pending token unless it
    /// has one. Returns the invitation and whether this is the first look at the key (the
    /// only time it may be shown), and the event of that first look.
    pub fn open_enrollment(
        &self,
        invites: &dyn InviteStore,
        token: &str,
        fresh: Token,
        ip: IpAddr,
    ) -> Result<(Option<Opened>, Option<AuthEvent>), GateError> {
        let opened = invites.open(token, self.clock.now(), fresh)?;
        let event = match &opened {
            Some((invite, true)) => {
                Some(self.record_attempt(ip, &invite.user, "enroll-reveal", Attempted::Passed, self.clock.now())?)
            }
            _ => None,
        };
        Ok((opened, event))
    }

    /// Enrollment confirmation: a right first code from the invitation's new token makes it
    /// the user's only token, clears the failure count, uses the invitation up and ends the
    /// user's sessions. A wrong code counts toward a ban like any wrong factor.
    pub fn confirm_enrollment(
        &self,
        invites: &dyn InviteStore,
        token: &str,
        code: &str,
        ip: IpAddr,
    ) -> Result<(Enrollment, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(invite) = invites.find(token, now)? else {
            return Ok((Enrollment::Expired, None));
        };
        let user = invite.user.as_str();
        if self.regulator.is_banned(Some(user), ip, now)? {
            let event = self.record_attempt(ip, user, "enroll", Attempted::Banned, now)?;
            return Ok((Enrollment::Refused, Some(event)));
        }
        let Some(mut pending) = invite.pending.clone() else {
            return Ok((Enrollment::Refused, None));
        };
        if !self.gate.confirms(&mut pending, code) {
            let event = self.record_attempt(ip, user, "enroll", Attempted::Refused(Rejection::WrongCode), now)?;
            return Ok((Enrollment::WrongCode, Some(event)));
        }
        let saved = self.gate.directory.update(user, &mut |u| {
            u.tokens = vec![pending.clone()];
            u.failures = 0;
            true
        })?;
        if !saved {
            return Err(GateError::Store(crate::StoreError::NotFound(user.to_string())));
        }
        invites.consume(token)?;
        self.sessions.revoke_user(user)?;
        self.regulator.record_success(user)?;
        let event = self.record_attempt(ip, user, "enroll", Attempted::Passed, now)?;
        Ok((Enrollment::Done, Some(event)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::authz::Decision;
    use crate::invite::MemoryInvites;
    use crate::model::{FirstFactor, Step};
    use crate::store::Directory;
    use crate::testing::{World, rule};
    use portcullis_otp::{Algorithm, Hotp, totp_step};
    use zeroize::Zeroizing;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    /// A world where `alice` has PIN `1234` and one TOTP token; a code generator for it.
    fn world() -> (World, impl Fn(i64) -> String) {
        let w = World::new();
        let code = crate::testing::alice_with_pin_and_token(&w);
        (w, code)
    }

    fn attempt<'a>(user: &'a str, password: &'a str, code: Option<&'a str>) -> LoginAttempt<'a> {
        LoginAttempt {
            user,
            password,
            code,
            target: None,
            client_ip: IP,
            current: None,
        }
    }

    fn signed_in(step: LoginStep) -> (SessionId, Level, bool) {
        match step.outcome {
            LoginOutcome::SignedIn {
                session,
                level,
                complete,
            } => (session, level, complete),
            LoginOutcome::Refused(r) => panic!("refused: {r:?}"),
            LoginOutcome::Enroll { user } => panic!("sent to enroll {user}"),
        }
    }

    fn refused(step: LoginStep) -> Refusal {
        match step.outcome {
            LoginOutcome::Refused(r) => r,
            LoginOutcome::SignedIn { level, .. } => panic!("signed in at {level:?}"),
            LoginOutcome::Enroll { user } => panic!("sent to enroll {user}"),
        }
    }

    #[test]
    fn the_one_page_form_signs_in_with_both_factors_and_replaces_the_old_session() {
        let (w, code) = world();
        let now = w.clock.0;
        let old = signed_in(w.authorizer().login(&attempt("alice", "1234", None)).unwrap()).0;
        let c = code(now);
        let step = w
            .authorizer()
            .login(&LoginAttempt {
                current: Some(old.as_str()),
                ..attempt("alice", "1234", Some(&c))
            })
            .unwrap();
        assert_eq!(step.events.len(), 2, "one event per factor");
        assert!(step.events.iter().all(|e| e.failure.is_none()));
        let (id, level, complete) = signed_in(step);
        assert_eq!((level, complete), (Level::TwoFactor, true));
        assert!(
            w.authorizer().signed_in(old.as_str(), IP).unwrap().is_none(),
            "no fixation"
        );
        let s = w.authorizer().signed_in(id.as_str(), IP).unwrap().unwrap();
        assert_eq!((s.user.as_str(), s.level), ("alice", Level::TwoFactor));
        // The code is used up: the same form again is a replay.
        let again = w.authorizer().login(&attempt("alice", "1234", Some(&c))).unwrap();
        assert_eq!(refused(again), Refusal::Rejected(Rejection::Replayed));
    }

    #[test]
    fn a_wrong_password_asks_no_code_and_a_wrong_code_is_refused_by_its_reason() {
        let (w, code) = world();
        let step = w
            .authorizer()
            .login(&attempt("alice", "9999", Some(&code(w.clock.0))))
            .unwrap();
        assert_eq!(step.events.len(), 1, "the code is not looked at");
        assert_eq!(refused(step), Refusal::Rejected(Rejection::WrongPassword));
        let step = w.authorizer().login(&attempt("alice", "1234", Some("000000"))).unwrap();
        assert_eq!(step.events[1].failure, Some("wrong_code"));
        assert_eq!(refused(step), Refusal::Rejected(Rejection::WrongCode));
        let step = w
            .authorizer()
            .login(&attempt("nobody", "1234", Some("000000")))
            .unwrap();
        assert_eq!(refused(step), Refusal::Rejected(Rejection::UnknownUser));
    }

    #[test]
    fn the_code_page_needs_the_password_steps_session() {
        let (w, code) = world();
        let now = w.clock.0;
        let (id, level, complete) = signed_in(w.authorizer().login(&attempt("alice", "1234", None)).unwrap());
        assert_eq!((level, complete), (Level::OneFactor, false));
        let step = w.authorizer().login_code("not-a-session", &code(now), IP).unwrap();
        assert_eq!(refused(step), Refusal::NotSignedIn);
        assert_eq!(
            refused(w.authorizer().login_code(id.as_str(), "000000", IP).unwrap()),
            Refusal::Rejected(Rejection::WrongCode)
        );
        let (two, level, complete) = signed_in(w.authorizer().login_code(id.as_str(), &code(now), IP).unwrap());
        assert_eq!((level, complete), (Level::TwoFactor, true));
        assert!(w.authorizer().signed_in(id.as_str(), IP).unwrap().is_none(), "replaced");
        assert!(w.authorizer().signed_in(two.as_str(), IP).unwrap().is_some());
    }

    #[test]
    fn a_one_factor_page_ends_the_login_after_the_password_but_not_for_a_user_without_one() {
        let (mut w, _) = world();
        w.access =
            crate::access::AccessControl::new(&[rule("^/wiki/", &[], Policy::OneFactor)], Policy::TwoFactor).unwrap();
        let wiki = Resource {
            method: "GET",
            host: "app.example.com",
            path: "/wiki/x",
            client_ip: IP,
        };
        let app = Resource { path: "/app/", ..wiki };
        let to = |target: &Resource<'_>, user| {
            signed_in(
                w.authorizer()
                    .login(&LoginAttempt {
                        target: Some(*target),
                        ..attempt(user, if user == "alice" { "1234" } else { "" }, Some("000000"))
                    })
                    .unwrap(),
            )
        };
        let (_, level, complete) = to(&wiki, "alice");
        assert_eq!(
            (level, complete),
            (Level::OneFactor, true),
            "the wrong code was not even asked"
        );
        let step = w
            .authorizer()
            .login(&LoginAttempt {
                target: Some(app),
                ..attempt("alice", "1234", Some("000000"))
            })
            .unwrap();
        assert_eq!(refused(step), Refusal::Rejected(Rejection::WrongCode));
        // root has no first factor: passing the password page proves nothing.
        let tokens = w.directory.user("alice").unwrap().unwrap().tokens;
        w.directory
            .update("root", &mut |u| {
                u.tokens = tokens.clone();
                true
            })
            .unwrap();
        let step = w
            .authorizer()
            .login(&LoginAttempt {
                target: Some(wiki),
                ..attempt("root", "", None)
            })
            .unwrap();
        let (_, level, complete) = signed_in(step);
        assert_eq!((level, complete), (Level::Named, false));
    }

    #[test]
    fn a_lock_or_a_new_password_signs_the_portal_out_at_the_next_refresh() {
        let (mut w, code) = world();
        let t0 = w.clock.0;
        let c = code(t0);
        let (id, ..) = signed_in(w.authorizer().login(&attempt("alice", "1234", Some(&c))).unwrap());
        w.directory
            .update("alice", &mut |u| {
                u.first_factor = FirstFactor::Pin(Zeroizing::new("5678".into()));
                true
            })
            .unwrap();
        w.clock.0 = t0 + 30;
        assert!(
            w.authorizer().signed_in(id.as_str(), IP).unwrap().is_some(),
            "not re-read yet"
        );
        w.clock.0 = t0 + 61;
        assert!(
            w.authorizer().signed_in(id.as_str(), IP).unwrap().is_none(),
            "the old password's session ended"
        );
        // The same refresh the per-request check applies: a request with it is sent to log in.
        let req = crate::authz::AccessRequest {
            method: "GET",
            host: "app.example.com",
            path: "/app/",
            client_ip: IP,
            session: Some(id.as_str()),
            basic: None,
        };
        assert_eq!(w.authorizer().decide(&req).unwrap().0, Decision::Login);
        // The new password's session stands; a lock ends it the same way.
        let c = code(t0 + 61);
        let (id, ..) = signed_in(w.authorizer().login(&attempt("alice", "5678", Some(&c))).unwrap());
        w.directory
            .update("alice", &mut |u| {
                u.locked = true;
                true
            })
            .unwrap();
        w.clock.0 = t0 + 125;
        assert!(w.authorizer().signed_in(id.as_str(), IP).unwrap().is_none());
        assert!(
            w.authorizer().sign_out(id.as_str()).is_ok_and(|gone| !gone),
            "already revoked"
        );
    }

    #[test]
    fn a_banned_client_is_not_checked() {
        let (w, code) = world();
        for _ in 0..w.regulator.policy().max_retries {
            let _ = w.authorizer().login(&attempt("alice", "9999", None)).unwrap();
        }
        let step = w
            .authorizer()
            .login(&attempt("alice", "1234", Some(&code(w.clock.0))))
            .unwrap();
        assert_eq!(step.events[0].failure, Some("banned"));
        assert_eq!(refused(step), Refusal::Banned);
    }

    #[test]
    fn enrollment_takes_a_right_first_code_once_and_ends_the_users_sessions() {
        let (mut w, _) = world();
        let invites = MemoryInvites::default();
        let t0 = w.clock.0;
        let token = invites.create("alice", t0 + 3600).unwrap();
        let (old, ..) = signed_in(w.authorizer().login(&attempt("alice", "1234", None)).unwrap());
        // Nothing to confirm before the key was shown.
        let (r, _) = w
            .authorizer()
            .confirm_enrollment(&invites, &token, "000000", IP)
            .unwrap();
        assert_eq!(r, Enrollment::Refused);
        let fresh = Token::generate(Step::Time(30), Algorithm::Sha1, 6);
        let (opened, event) = w
            .authorizer()
            .open_enrollment(&invites, &token, fresh.clone(), IP)
            .unwrap();
        let (invite, first) = opened.unwrap();
        assert!(first);
        assert_eq!(event.unwrap().method, "enroll-reveal");
        let (_, event) = w.authorizer().open_enrollment(&invites, &token, fresh, IP).unwrap();
        assert!(event.is_none(), "the key is shown once");
        let pending = invite.pending.unwrap();
        let g = Hotp::new(&pending.secret, pending.algorithm, pending.digits);
        let right = g.code(totp_step(t0, 30)).to_string();
        let wrong = if right == "000000" { "111111" } else { "000000" };
        let (r, event) = w.authorizer().confirm_enrollment(&invites, &token, wrong, IP).unwrap();
        assert_eq!(r, Enrollment::WrongCode);
        assert_eq!(event.unwrap().failure, Some("wrong_code"));
        let (r, event) = w.authorizer().confirm_enrollment(&invites, &token, &right, IP).unwrap();
        assert_eq!(r, Enrollment::Done);
        assert_eq!(event.unwrap().failure, None);
        let alice = w.directory.user("alice").unwrap().unwrap();
        assert_eq!(alice.tokens.len(), 1);
        assert_eq!(alice.tokens[0].secret, pending.secret);
        assert!(
            w.authorizer().signed_in(old.as_str(), IP).unwrap().is_none(),
            "sessions ended"
        );
        let (r, _) = w.authorizer().confirm_enrollment(&invites, &token, &right, IP).unwrap();
        assert_eq!(r, Enrollment::Expired, "used up");
        // The enrollment code itself is spent: it does not sign in.
        w.clock.0 = t0 + 1;
        let step = w.authorizer().login(&attempt("alice", "1234", Some(&right))).unwrap();
        assert_eq!(refused(step), Refusal::Rejected(Rejection::Replayed));
    }

    /// A directory server that knows `newbie` (password `pw`) and lets only them enroll.
    struct Enrolling;

    impl crate::factor::PasswordSource for Enrolling {
        fn name(&self) -> &'static str {
            "test"
        }
        fn check(&self, user: &str, password: &str) -> Result<Option<bool>, crate::password::PasswordError> {
            Ok((user == "newbie" || user == "outsider").then_some(password == "pw"))
        }
        fn fingerprint(&self, _: &str) -> Result<Option<[u8; 16]>, crate::password::PasswordError> {
            Ok(None)
        }
        fn may_enroll(&self, user: &str) -> Result<bool, crate::password::PasswordError> {
            Ok(user == "newbie")
        }
    }

    #[test]
    fn a_person_the_source_lets_enroll_is_added_at_the_right_password_and_sent_to_enroll() {
        let (w, _) = world();
        let source = Enrolling;
        let mut a = w.authorizer();
        a.gate.external = Some(&source);
        for (user, pw) in [("newbie", "wrong"), ("newbie", ""), ("outsider", "pw")] {
            let step = a.login(&attempt(user, pw, None)).unwrap();
            assert!(
                matches!(step.outcome, LoginOutcome::Refused(_)),
                "{user}/{pw}: {:?}",
                step.outcome
            );
            assert!(w.directory.user(user).unwrap().is_none(), "{user} was added");
        }
        let step = a.login(&attempt("newbie", "pw", None)).unwrap();
        match step.outcome {
            LoginOutcome::Enroll { user } => assert_eq!(user, "newbie"),
            other => panic!("{other:?}"),
        }
        let added = w.directory.user("newbie").unwrap().unwrap();
        assert_eq!(added.first_factor, FirstFactor::External);
        assert!(added.tokens.is_empty());
        // Until a token is enrolled the password leads there again; never to a session.
        assert!(matches!(
            a.login(&attempt("newbie", "pw", Some("123456"))).unwrap().outcome,
            LoginOutcome::Enroll { .. }
        ));
    }
}

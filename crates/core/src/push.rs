//! Push approval (Duo) as a second factor: the seam a push service implements, and the
//! policy around it, once for every way in. A push is sent only by a login step that asks
//! for one; one pending push per user and client is joined by re-asking; its answer is
//! handed only to the logins that asked; denials and timeouts count like wrong codes.

use crate::authz::{Attempted, AuthEvent, Authorizer};
use crate::gate::{GateError, Rejection};
use crate::model::User;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Why a push service could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No answer, a server error, or rate limited past the retries: the failmode applies
    /// when this happens before a push is sent.
    #[error("{0}")]
    Unreachable(String),
    /// An answer that refuses or cannot be read (a FAIL reply, a malformed body).
    #[error("{0}")]
    Refused(String),
}

/// What the service says before a push (Duo's `preauth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preauth {
    /// Push to this device.
    Push {
        /// The device's id at the service.
        device: String,
        /// What the person calls it ("iOS (XXX-XXX-0100)").
        name: String,
    },
    /// The service lets this person in without a push (a bypass user).
    Allow,
    /// The service refuses this person (disabled, locked there).
    Deny(String),
    /// The person must enroll at the service first, at this address.
    Enroll(String),
}

/// Where a sent push stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// Not answered yet.
    Waiting,
    /// Approved on the device.
    Allowed,
    /// Denied, timed out at the service, or an answer not understood.
    Denied(String),
}

/// A push provider (Duo's Auth API). `user` is the portcullis name; the provider maps it
/// to its own. Every call is bounded in time by the provider.
pub trait PushService: Send + Sync {
    /// Short name for logs (`duo`).
    fn name(&self) -> &'static str;
    /// Whether and where `user` can be pushed.
    fn preauth(&self, user: &str, client_ip: Option<IpAddr>) -> Result<Preauth, PushError>;
    /// Sends a push to `device`; the transaction id to poll.
    fn push(&self, user: &str, device: &str, client_ip: Option<IpAddr>) -> Result<String, PushError>;
    /// Where push `txid` stands, waiting up to about `wait` for a change.
    fn status(&self, txid: &str, wait: Duration) -> Result<PushStatus, PushError>;
    /// Whether `code` is a right passcode of `user` at the service (used up there).
    fn passcode(&self, user: &str, code: &str, client_ip: Option<IpAddr>) -> Result<bool, PushError>;
}

/// Who asks: the user, the client, and the login step (a one-factor session's hash, a
/// Basic credential's digest, one PAM conversation). A push's answer goes only to the
/// logins that asked for it.
#[derive(Debug, Clone, Copy)]
pub struct PushLogin<'a> {
    /// The user who passed the first factor.
    pub user: &'a User,
    /// The client's address, when known.
    pub client_ip: Option<IpAddr>,
    /// The login step's binding.
    pub login: [u8; 32],
    /// The way in, for the audit event (`portal-push`, `basic-push`, `pam-push`).
    pub method: &'static str,
}

/// Where a push step leaves the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStep {
    /// A push is out (sent now, or one already pending joined): poll for its answer.
    Sent {
        /// The device it went to.
        device: String,
    },
    /// Still waiting for the person.
    Waiting {
        /// The device it went to.
        device: String,
    },
    /// Let in: approved on the device, let through by the service (a bypass user), or by
    /// `failmode = "open"` while the service was out of reach (`failmode_open`).
    Approved {
        /// The user as stored (failures cleared).
        user: Box<User>,
        /// `push`, `passcode`, `bypass` or `failmode_open`.
        how: &'static str,
    },
    /// Refused: denied, timed out, refused by the service, locked, or no push of this login.
    Refused(Rejection),
    /// Banned for now: nothing was sent.
    Banned,
    /// The service wants the person to enroll first, at this address.
    Enroll(String),
    /// The service is out of reach and `failmode = "closed"`: no login now.
    Unavailable,
}

/// The service and the pushes pending on this node.
pub struct Pushes {
    service: Box<dyn PushService>,
    fail_open: bool,
    /// Seconds a person has to approve.
    timeout: u64,
    pending: Mutex<HashMap<(String, Option<IpAddr>), Pending>>,
    changed: Condvar,
}

#[derive(Debug)]
struct Pending {
    /// Empty while the push is being sent (joiners wait for it).
    txid: String,
    device: String,
    started: i64,
    /// One entry per waiting request (two Basic requests with one credential are two).
    logins: Vec<[u8; 32]>,
    state: State,
    /// When it was decided: the answer is collected within [`COLLECT_WITHIN`] seconds.
    decided: i64,
}

/// How long a login waits for another login of the same user and client to send its push.
const SENDING_WAIT: Duration = Duration::from_secs(90);

/// Seconds a decided push's answer waits for the requests that joined it.
const COLLECT_WITHIN: i64 = 10;

impl Pending {
    /// Takes one waiting request of `login` off the push; true when it had one.
    fn take(&mut self, login: &[u8; 32]) -> bool {
        match self.logins.iter().position(|x| x == login) {
            Some(i) => {
                self.logins.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn decide(&mut self, allowed: bool, now: i64) {
        self.state = if allowed { State::Allowed } else { State::Denied };
        self.decided = now;
    }

    /// Decided too long ago for anyone to collect it.
    fn stale(&self, now: i64) -> bool {
        matches!(self.state, State::Allowed | State::Denied) && now > self.decided.saturating_add(COLLECT_WITHIN)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Sending,
    Waiting,
    Allowed,
    Denied,
}

impl Pushes {
    /// Pushes through `service`; `timeout` seconds to approve; `fail_open` lets logins on
    /// when the service cannot be reached before a push.
    pub fn new(service: Box<dyn PushService>, timeout: u64, fail_open: bool) -> Self {
        Pushes {
            service,
            fail_open,
            timeout,
            pending: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
        }
    }

    /// Seconds a person has to approve.
    pub fn timeout(&self) -> u64 {
        self.timeout
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, Option<IpAddr>), Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pushes pending now (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }
}

/// What a second step through the service tries.
enum Ask<'a> {
    Push,
    /// A passcode; `false`: a refusal is not counted (the same code was already counted
    /// as a wrong code of the user's own tokens).
    Passcode(&'a str, bool),
}

impl Authorizer<'_> {
    /// Whether `user` approves logins with a push here (enrolled and `[duo]` configured).
    pub fn pushes_for(&self, user: &User) -> bool {
        user.duo && self.pushes.is_some()
    }

    /// Sends a push for `l` (or joins the one pending for this user and client). Only a
    /// login step that asks for a push calls this; nothing else ever sends one.
    pub fn push_send(&self, l: &PushLogin<'_>) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        self.through_service(l, Ask::Push)
    }

    /// Checks a passcode of the push service (a Duo passcode typed in the code field).
    pub fn push_passcode(&self, l: &PushLogin<'_>, code: &str) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        self.through_service(l, Ask::Passcode(code, true))
    }

    fn through_service(&self, l: &PushLogin<'_>, ask: Ask<'_>) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(pushes) = self.pushes.filter(|_| l.user.duo) else {
            return self.push_refused(l, Rejection::NoToken, now);
        };
        if self.regulator.is_banned_from(Some(&l.user.name), l.client_ip, now)? {
            let event = self.record_attempt_from(l.client_ip, &l.user.name, l.method, Attempted::Banned, now)?;
            return Ok((PushStep::Banned, Some(event)));
        }
        if self.gate.policy.is_locked(l.user) {
            return self.push_refused(l, Rejection::Locked, now);
        }
        let key = (l.user.name.clone(), l.client_ip);
        if matches!(ask, Ask::Push) {
            let mut pending = pushes.lock();
            // Sending is bounded by the client's timeouts; this bounds the wait for it too.
            let waiting_since = std::time::Instant::now();
            loop {
                match pending.get_mut(&key) {
                    Some(p) if p.state == State::Sending && waiting_since.elapsed() > SENDING_WAIT => {
                        return Ok((PushStep::Unavailable, None));
                    }
                    Some(p) if p.state == State::Sending => {
                        // Another login of this user and client is sending: wait for it.
                        pending = pushes
                            .changed
                            .wait_timeout(pending, Duration::from_millis(200))
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                    Some(p) if p.state == State::Waiting && now < p.started.saturating_add_unsigned(pushes.timeout) => {
                        p.logins.push(l.login);
                        return Ok((
                            PushStep::Sent {
                                device: p.device.clone(),
                            },
                            None,
                        ));
                    }
                    Some(p) if p.logins.contains(&l.login) && p.state != State::Waiting && !p.stale(now) => {
                        // This login's push was decided: its poll collects the answer.
                        drop(pending);
                        return self.push_poll(l, Duration::ZERO);
                    }
                    _ => break,
                }
            }
            pending.insert(
                key.clone(),
                Pending {
                    txid: String::new(),
                    device: String::new(),
                    started: now,
                    logins: vec![l.login],
                    state: State::Sending,
                    decided: 0,
                },
            );
        }
        // Outside the lock: the service may take seconds.
        let sent = self.ask_service(pushes, l, &ask);
        let mut pending = pushes.lock();
        let placeholder = matches!(ask, Ask::Push);
        let result = match sent {
            Ok(Sent::Push { txid, device }) => {
                if let Some(p) = pending.get_mut(&key) {
                    p.txid = txid;
                    p.device = device.clone();
                    p.state = State::Waiting;
                }
                pushes.changed.notify_all();
                return Ok((PushStep::Sent { device }, None));
            }
            other => other,
        };
        if placeholder {
            pending.remove(&key);
            pushes.changed.notify_all();
        }
        drop(pending);
        match result {
            Ok(Sent::Push { .. }) => unreachable!("handled above"),
            Ok(Sent::Let(how)) => self.push_approved(l, how, now),
            Ok(Sent::Refused) if matches!(ask, Ask::Passcode(_, false)) => {
                Ok((PushStep::Refused(Rejection::WrongCode), None))
            }
            Ok(Sent::Refused) => self.push_denied(l, now),
            Ok(Sent::Enroll(url)) => Ok((PushStep::Enroll(url), None)),
            Err(()) => Ok((PushStep::Unavailable, None)),
        }
    }

    /// Preauth, then the push or the passcode. `Err(())`: out of reach, failmode closed.
    fn ask_service(&self, pushes: &Pushes, l: &PushLogin<'_>, ask: &Ask<'_>) -> Result<Sent, ()> {
        let service = pushes.service.as_ref();
        let device = match service.preauth(&l.user.name, l.client_ip) {
            Ok(Preauth::Push { device, name }) => (device, name),
            Ok(Preauth::Allow) => return Ok(Sent::Let("bypass")),
            Ok(Preauth::Deny(_)) => return Ok(Sent::Refused),
            Ok(Preauth::Enroll(url)) => return Ok(Sent::Enroll(url)),
            Err(PushError::Unreachable(_)) if pushes.fail_open => return Ok(Sent::Let("failmode_open")),
            Err(PushError::Unreachable(_)) => return Err(()),
            Err(PushError::Refused(_)) => return Ok(Sent::Refused),
        };
        match ask {
            // Any failure once past preauth denies, whatever the failmode.
            Ask::Push => match service.push(&l.user.name, &device.0, l.client_ip) {
                Ok(txid) if !txid.is_empty() => Ok(Sent::Push { txid, device: device.1 }),
                _ => Ok(Sent::Refused),
            },
            Ask::Passcode(code, _) => match service.passcode(&l.user.name, code, l.client_ip) {
                Ok(true) => Ok(Sent::Let("passcode")),
                _ => Ok(Sent::Refused),
            },
        }
    }

    /// The answer to this login's push: waits up to about `wait` for the person (zero:
    /// only what is known here, the service is not asked).
    pub fn push_poll(&self, l: &PushLogin<'_>, wait: Duration) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(pushes) = self.pushes else {
            return Ok((PushStep::Refused(Rejection::NoToken), None));
        };
        let key = (l.user.name.clone(), l.client_ip);
        let (txid, device) = {
            let mut pending = pushes.lock();
            if pending.get(&key).is_some_and(|p| p.stale(now)) {
                pending.remove(&key);
            }
            let Some(p) = pending.get_mut(&key).filter(|p| p.logins.contains(&l.login)) else {
                // No push of this login (another login's, or none): nothing to hand out.
                return Ok((PushStep::Refused(Rejection::NotApproved), None));
            };
            match p.state {
                State::Sending => {
                    return Ok((
                        PushStep::Waiting {
                            device: p.device.clone(),
                        },
                        None,
                    ));
                }
                State::Allowed | State::Denied => {
                    let allowed = p.state == State::Allowed;
                    p.take(&l.login);
                    if p.logins.is_empty() {
                        pending.remove(&key);
                    }
                    drop(pending);
                    // The login that saw the answer counted it; the others collect it.
                    return if allowed {
                        self.push_approved_quietly(l)
                    } else {
                        Ok((PushStep::Refused(Rejection::NotApproved), None))
                    };
                }
                State::Waiting if now >= p.started.saturating_add_unsigned(pushes.timeout) => {
                    p.decide(false, now);
                    drop(pending);
                    return self.decided(pushes, l, &key, false, now);
                }
                // A look without waiting (the push page's first view) asks nobody.
                State::Waiting if wait.is_zero() => {
                    return Ok((
                        PushStep::Waiting {
                            device: p.device.clone(),
                        },
                        None,
                    ));
                }
                State::Waiting => (p.txid.clone(), p.device.clone()),
            }
        };
        let status = pushes.service.status(&txid, wait);
        let allowed = match status {
            Ok(PushStatus::Waiting) => return Ok((PushStep::Waiting { device }, None)),
            Ok(PushStatus::Allowed) => true,
            Ok(PushStatus::Denied(_)) | Err(_) => false,
        };
        {
            let mut pending = pushes.lock();
            match pending.get_mut(&key) {
                // Still this push, undecided: this login decides it.
                Some(p) if p.txid == txid && p.state == State::Waiting => {
                    p.decide(allowed, now);
                }
                // Decided meanwhile by another login, or gone: collect as above.
                _ => {
                    drop(pending);
                    return self.push_poll(l, Duration::ZERO);
                }
            }
        }
        self.decided(pushes, l, &key, allowed, now)
    }

    /// This login saw the push decided: it takes its answer and counts it.
    fn decided(
        &self,
        pushes: &Pushes,
        l: &PushLogin<'_>,
        key: &(String, Option<IpAddr>),
        allowed: bool,
        now: i64,
    ) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        {
            let mut pending = pushes.lock();
            if let Some(p) = pending.get_mut(key) {
                p.take(&l.login);
                if p.logins.is_empty() {
                    pending.remove(key);
                }
            }
        }
        if allowed {
            self.push_approved(l, "push", now)
        } else {
            self.push_denied(l, now)
        }
    }

    /// Let in: failures cleared (a lock set meanwhile still refuses), success counted.
    fn push_approved(
        &self,
        l: &PushLogin<'_>,
        how: &'static str,
        now: i64,
    ) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let (step, _) = self.push_approved_quietly(l)?;
        let step = match step {
            PushStep::Approved { user, .. } => PushStep::Approved { user, how },
            other => other,
        };
        let result = match &step {
            PushStep::Approved { .. } => {
                self.regulator.record_success(&l.user.name)?;
                Attempted::Passed
            }
            PushStep::Refused(r) => Attempted::Refused(*r),
            _ => Attempted::Refused(Rejection::NotApproved),
        };
        let mut event = self.record_attempt_from(l.client_ip, &l.user.name, l.method, result, now)?;
        if how == "failmode_open" && event.failure.is_none() {
            event.warning =
                Some("second factor skipped: the push service cannot be reached and [duo] failmode = \"open\"");
        }
        Ok((step, Some(event)))
    }

    fn push_approved_quietly(&self, l: &PushLogin<'_>) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let policy = &self.gate.policy;
        let mut stored = None;
        self.gate.directory.update(&l.user.name, &mut |u| {
            let locked = policy.is_locked(u);
            let changed = !locked && u.failures != 0;
            if !locked {
                u.failures = 0;
            }
            stored = Some((u.clone(), locked));
            changed
        })?;
        Ok(match stored {
            Some((u, false)) if u.duo => (
                PushStep::Approved {
                    user: Box::new(u),
                    how: "push",
                },
                None,
            ),
            Some((_, true)) => (PushStep::Refused(Rejection::Locked), None),
            _ => (PushStep::Refused(Rejection::NotApproved), None),
        })
    }

    /// Denied or timed out: a failure like a wrong code (regulation and lockout).
    fn push_denied(&self, l: &PushLogin<'_>, now: i64) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        self.gate.directory.update(&l.user.name, &mut |u| {
            u.failures = u.failures.saturating_add(1);
            true
        })?;
        self.push_refused(l, Rejection::NotApproved, now)
    }

    fn push_refused(
        &self,
        l: &PushLogin<'_>,
        why: Rejection,
        now: i64,
    ) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let event = self.record_attempt_from(l.client_ip, &l.user.name, l.method, Attempted::Refused(why), now)?;
        Ok((PushStep::Refused(why), Some(event)))
    }

    /// Sends a push and waits for its answer (Basic, PAM, `check`: clients that hold one
    /// request open): at most the approval timeout, a little more for the last answer.
    pub fn push_and_wait(&self, l: &PushLogin<'_>) -> Result<(PushStep, Vec<AuthEvent>), GateError> {
        let mut events = Vec::new();
        let (mut step, e) = self.push_send(l)?;
        events.extend(e);
        let Some(pushes) = self.pushes else {
            return Ok((step, events));
        };
        // A bound of its own besides the approval timeout the polls enforce: the clock's.
        let end = self
            .clock
            .now()
            .saturating_add_unsigned(pushes.timeout.saturating_add(10));
        for _ in 0..100_000 {
            if !matches!(step, PushStep::Sent { .. } | PushStep::Waiting { .. }) || self.clock.now() > end {
                break;
            }
            if matches!(step, PushStep::Waiting { .. }) {
                // The service answered at once (a stand-in, a fast refusal): don't spin.
                std::thread::sleep(Duration::from_millis(100));
            }
            let (next, e) = self.push_poll(l, Duration::from_secs(5))?;
            events.extend(e);
            step = next;
        }
        if matches!(step, PushStep::Sent { .. } | PushStep::Waiting { .. }) {
            step = PushStep::Refused(Rejection::NotApproved);
        }
        Ok((step, events))
    }
}

/// What the service said to a second step.
enum Sent {
    Push { txid: String, device: String },
    Let(&'static str),
    Refused,
    Enroll(String),
}

/// Where the portal's push page leaves the person.
#[derive(Debug)]
pub enum PushOutcome {
    /// A push is out to this device: show the waiting page.
    Waiting {
        /// The device it went to.
        device: String,
    },
    /// Approved: a new two-factor session.
    SignedIn(crate::session::SessionId),
    /// Refused (denied, timed out, banned, locked): start again.
    Refused(crate::login::Refusal),
    /// Duo wants the person to enroll first, at this address.
    Enroll(String),
    /// The push service is out of reach (failmode closed): try later.
    Unavailable,
    /// No live one-factor session: back to the password.
    NotSignedIn,
}

impl Authorizer<'_> {
    /// The portal's push step for the session `current`: `send` asks for a push (the
    /// "Send a push" button, or the password step of a user with nothing but Duo); else
    /// waits up to about `wait` for the answer to this session's push. Nothing but a
    /// `send` from a live one-factor session ever sends one.
    pub fn login_push(
        &self,
        current: &str,
        ip: IpAddr,
        send: bool,
        wait: Duration,
    ) -> Result<(PushOutcome, Vec<AuthEvent>), GateError> {
        use crate::login::Refusal;
        let Some(s) = self.signed_in(current, ip)? else {
            return Ok((PushOutcome::NotSignedIn, Vec::new()));
        };
        let (Some(user), Some(binding)) = (self.gate.directory.user(&s.user)?, crate::session::token_hash(current))
        else {
            return Ok((PushOutcome::NotSignedIn, Vec::new()));
        };
        if s.level == crate::session::Level::TwoFactor || !self.pushes_for(&user) {
            return Ok((PushOutcome::NotSignedIn, Vec::new()));
        }
        let l = PushLogin {
            user: &user,
            client_ip: Some(ip),
            login: binding,
            method: "portal-push",
        };
        let (step, event) = if send {
            self.push_send(&l)?
        } else {
            self.push_poll(&l, wait)?
        };
        let outcome = match step {
            PushStep::Sent { device } | PushStep::Waiting { device } => PushOutcome::Waiting { device },
            PushStep::Approved { user, .. } => {
                PushOutcome::SignedIn(self.start_session(Some(current), &user, crate::session::Level::TwoFactor, ip)?)
            }
            PushStep::Refused(r) => PushOutcome::Refused(Refusal::Rejected(r)),
            PushStep::Banned => PushOutcome::Refused(Refusal::Banned),
            PushStep::Enroll(url) => PushOutcome::Enroll(url),
            PushStep::Unavailable => PushOutcome::Unavailable,
        };
        Ok((outcome, event.into_iter().collect()))
    }

    /// Whether `user`'s only second factor is a push (their login pushes at once).
    pub fn push_only(&self, user: &User) -> bool {
        self.pushes_for(user) && user.tokens.is_empty() && user.scratch.is_empty() && !self.passkeys_for(user)
    }

    /// A code typed on the code page by a push user: checked with the service (a Duo
    /// passcode) when the user has no token of their own, or when it fits none of them
    /// (`after_wrong`: then a refusal is not counted twice). `None`: not a push user.
    pub(crate) fn code_as_passcode(
        &self,
        user: &str,
        code: &str,
        ip: IpAddr,
        after_wrong: bool,
    ) -> Result<Option<(PushStep, Option<AuthEvent>)>, GateError> {
        let Some(u) = self.gate.directory.user(user)?.filter(|u| self.pushes_for(u)) else {
            return Ok(None);
        };
        if !after_wrong && !self.push_only(&u) {
            return Ok(None);
        }
        let l = PushLogin {
            user: &u,
            client_ip: Some(ip),
            login: [0; 32],
            method: "portal-passcode",
        };
        Ok(Some(self.through_service(&l, Ask::Passcode(code, !after_wrong))?))
    }
}

/// Basic credentials waiting for a push (or a Duo passcode) after their password passed.
#[derive(Clone, PartialEq, Eq)]
pub struct PushTicket {
    user: Box<User>,
    ip: IpAddr,
    digest: [u8; 32],
    passcode: Option<zeroize::Zeroizing<String>>,
    method: String,
    host: String,
    path: String,
}

impl std::fmt::Debug for PushTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushTicket({:?}, {}, redacted)", self.user.name, self.ip)
    }
}

/// What Basic credentials of a push user ask for: `(password, None)` a push,
/// `(password, Some(code))` a Duo passcode; `None`: a code of the user's own tokens.
/// `password,push` pushes; `password,123456` is a passcode; a user with nothing but Duo
/// pushes on the password alone (duo_unix's autopush).
pub fn basic_push_request<'s>(secret: &'s str, user: &User) -> Option<(&'s str, Option<&'s str>)> {
    if let Some(password) = secret.strip_suffix(",push") {
        return Some((password, None));
    }
    if let Some((password, code)) = secret.rsplit_once(',')
        && (6..=9).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
    {
        return Some((password, Some(code)));
    }
    (user.tokens.is_empty() && user.scratch.is_empty()).then_some((secret, None))
}

/// The password in a push user's whole answer: without a `,push` or `,PASSCODE` ending
/// (what a PAM stack hands later modules); the whole answer when it has neither.
pub fn password_part(answer: &str) -> &str {
    let none = User::new("", crate::model::FirstFactor::None);
    basic_push_request(answer, &none).map_or(answer, |(password, _)| password)
}

impl Authorizer<'_> {
    /// Basic credentials of a push user that ask for a push or a passcode: checked up to
    /// the password here; `Some` is the decision (a refusal, or [`Decision::AwaitPush`]).
    /// `None`: not a push (the usual password+code path decides).
    pub(crate) fn basic_push(
        &self,
        creds: &crate::authz::BasicCredentials,
        resource: &crate::access::Resource<'_>,
        now: i64,
    ) -> Result<Option<(crate::authz::Decision, Option<AuthEvent>)>, GateError> {
        use crate::authz::Decision;
        if self.pushes.is_none() {
            return Ok(None);
        }
        let ip = resource.client_ip;
        let digest = self.basic_cache.digest(creds, ip);
        if self.basic_cache.get(&digest, now).is_some() {
            return Ok(None); // approved moments ago: the cache answers (no new push)
        }
        let name = self.gate.canonical(&creds.user)?;
        let Some(user) = self.gate.directory.user(&name)?.filter(|u| self.pushes_for(u)) else {
            return Ok(None);
        };
        let Some((password, code)) = basic_push_request(&creds.secret, &user) else {
            return Ok(None);
        };
        let refused = |r: Attempted| -> Result<_, GateError> {
            let event = self.record_attempt(ip, &name, "basic", r, now)?;
            Ok(Some((Decision::Challenge, Some(event))))
        };
        if self.regulator.is_banned(Some(&name), ip, now)? {
            return refused(Attempted::Banned);
        }
        // The password first: nobody is pushed for a wrong one.
        if !self.gate.check_first_factor(&name, Some(&user), password)? {
            return refused(Attempted::Refused(Rejection::WrongPassword));
        }
        if self.gate.policy.is_locked(&user) {
            return refused(Attempted::Refused(Rejection::Locked));
        }
        Ok(Some((
            Decision::AwaitPush(Box::new(PushTicket {
                user: Box::new(user),
                ip,
                digest,
                passcode: code.map(|c| zeroize::Zeroizing::new(c.to_string())),
                method: resource.method.to_string(),
                host: resource.host.to_string(),
                path: resource.path.to_string(),
            })),
            None,
        )))
    }

    /// Waits for the push (or checks the passcode) of `t`: the final decision. An approval
    /// is remembered for the linger time, so the client's next requests push nobody.
    pub fn finish_basic_push(&self, t: &PushTicket) -> Result<(crate::authz::Decision, Option<AuthEvent>), GateError> {
        use crate::access::{Policy, Resource, RuleOutcome, Subject};
        use crate::authz::{Decision, Identity};
        let l = PushLogin {
            user: &t.user,
            client_ip: Some(t.ip),
            login: t.digest,
            method: "basic-push",
        };
        let (step, mut events) = match &t.passcode {
            Some(code) => {
                let (step, e) = self.push_passcode(&l, code)?;
                (step, e.into_iter().collect())
            }
            None => self.push_and_wait(&l)?,
        };
        let event = events.pop();
        let user = match step {
            PushStep::Approved { user, .. } => user,
            PushStep::Unavailable => return Err(GateError::Unavailable("duo")),
            _ => return Ok((Decision::Challenge, event)),
        };
        let now = self.clock.now();
        let until = now.saturating_add(i64::try_from(self.gate.policy.linger).unwrap_or(0));
        let factor = self.gate.first_factor_fingerprint(&user)?;
        self.basic_cache.put(t.digest, until, user.clone(), factor, now, false);
        let resource = Resource {
            method: &t.method,
            host: &t.host,
            path: &t.path,
            client_ip: t.ip,
        };
        let subject = Subject {
            user: &user.name,
            groups: &user.groups,
        };
        let decision = match self.access.policy_for(&resource, Some(&subject)) {
            Ok(RuleOutcome::Policy(Policy::Deny)) => Decision::Deny,
            Ok(_) => Decision::Allow(Some(Identity::of_user(&user))),
            Err(e) => Decision::BadRequest(e.to_string()),
        };
        Ok((decision, event))
    }

    /// [`Authorizer::decide`] with a push waited for here (a caller with no slots to
    /// spare it from: `check` without a gateway).
    pub fn decide_waiting(
        &self,
        req: &crate::authz::AccessRequest<'_>,
    ) -> Result<(crate::authz::Decision, Option<AuthEvent>), GateError> {
        match self.decide(req)? {
            (crate::authz::Decision::AwaitPush(t), _) => self.finish_basic_push(&t),
            other => Ok(other),
        }
    }
}

impl Authorizer<'_> {
    /// [`Authorizer::check_credentials`] for a push user's whole answer (PAM): split it,
    /// check the password, then push and wait, or check a passcode. An answer that ends in
    /// a code of the user's own token is checked as one.
    pub(crate) fn check_push_credentials(
        &self,
        c: &crate::credentials::Credentials<'_>,
        name: &str,
        now: i64,
    ) -> Result<(crate::authz::StepResult, AuthEvent), GateError> {
        use crate::authz::StepResult;
        let record = |r: Attempted| self.record_attempt_from(c.client_ip, name, c.method, r, now);
        let stored = self.gate.directory.user(name)?;
        let Some(user) = stored.as_ref().filter(|u| self.pushes_for(u)) else {
            let why = match &stored {
                None => {
                    // As slow as a known name's password check.
                    let _ = self.gate.check_first_factor(name, None, c.password.unwrap_or(""))?;
                    Rejection::UnknownUser
                }
                Some(_) => Rejection::NoToken,
            };
            return Ok((StepResult::Refused(why), record(Attempted::Refused(why))?));
        };
        if self.regulator.is_banned_from(Some(name), c.client_ip, now)? {
            return Ok((StepResult::Banned, record(Attempted::Banned)?));
        }
        let digits = user.tokens.first().map_or(6, |t| t.digits as usize);
        let (password, passcode): (Option<&str>, Option<&str>) = match (c.password, c.code) {
            (Some(whole), _) => match basic_push_request(whole, user) {
                Some((p, code)) => (Some(p), code),
                // password+code of the user's own token.
                None => {
                    let (p, code) = crate::credentials::split_password_code(whole, digits).unwrap_or((whole, ""));
                    return self.check_credentials(&crate::credentials::Credentials {
                        password: Some(p),
                        code: Some(code),
                        push: false,
                        ..*c
                    });
                }
            },
            (None, Some(answer)) => match answer.trim() {
                "" | "push" => (None, None),
                code if (6..=9).contains(&code.len())
                    && code.bytes().all(|b| b.is_ascii_digit())
                    && user.tokens.is_empty() =>
                {
                    (None, Some(code))
                }
                code => {
                    return self.check_credentials(&crate::credentials::Credentials {
                        code: Some(code),
                        push: false,
                        ..*c
                    });
                }
            },
            (None, None) => (None, None),
        };
        if let Some(p) = password
            && !self.gate.check_first_factor(name, Some(user), p)?
        {
            let why = Rejection::WrongPassword;
            return Ok((StepResult::Refused(why), record(Attempted::Refused(why))?));
        }
        let mut login = [0u8; 32];
        login.copy_from_slice(&crate::random::bytes(32));
        let l = PushLogin {
            user,
            client_ip: c.client_ip,
            login,
            method: c.method,
        };
        let (step, mut events) = match passcode {
            Some(code) => {
                let (step, e) = self.push_passcode(&l, code)?;
                (step, e.into_iter().collect())
            }
            None => self.push_and_wait(&l)?,
        };
        let result = match step {
            PushStep::Approved { user, .. } => StepResult::Passed(user),
            PushStep::Banned => StepResult::Banned,
            PushStep::Refused(r) => StepResult::Refused(r),
            PushStep::Unavailable => return Err(GateError::Unavailable("duo")),
            _ => StepResult::Refused(Rejection::NotApproved),
        };
        let event = match events.pop() {
            Some(e) => e,
            None => record((&result).into())?,
        };
        Ok((result, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessControl, Policy};
    use crate::authz::{AccessRequest, BasicCache, BasicCredentials, Decision};
    use crate::clock::ManualClock;
    use crate::gate::{Gate, VerifyPolicy};
    use crate::model::FirstFactor;
    use crate::regulation::{RegulationPolicy, Regulator};
    use crate::session::{SessionPolicy, Sessions};
    use crate::store::Directory;
    use crate::testing::Memory;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const T0: i64 = 1_700_000_000;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Allow,
        Deny,
        Wait,
        Unreachable,
        Bypass,
        Enroll,
    }

    /// A push service whose person answers as `fate` says; it counts what it is asked.
    struct Fake {
        fate: Mutex<Fate>,
        pushes: AtomicUsize,
        preauths: AtomicUsize,
    }

    impl Fake {
        fn new(fate: Fate) -> Arc<Fake> {
            Arc::new(Fake {
                fate: Mutex::new(fate),
                pushes: AtomicUsize::new(0),
                preauths: AtomicUsize::new(0),
            })
        }
        fn fate(&self) -> Fate {
            *self.fate.lock().unwrap()
        }
        fn pushes(&self) -> usize {
            self.pushes.load(Ordering::SeqCst)
        }
    }

    impl PushService for Arc<Fake> {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn preauth(&self, _: &str, _: Option<IpAddr>) -> Result<Preauth, PushError> {
            self.preauths.fetch_add(1, Ordering::SeqCst);
            match self.fate() {
                Fate::Unreachable => Err(PushError::Unreachable("down".into())),
                Fate::Bypass => Ok(Preauth::Allow),
                Fate::Enroll => Ok(Preauth::Enroll("https://enroll.example/".into())),
                _ => Ok(Preauth::Push {
                    device: "D1".into(),
                    name: "phone".into(),
                }),
            }
        }
        fn push(&self, user: &str, _: &str, _: Option<IpAddr>) -> Result<String, PushError> {
            let n = self.pushes.fetch_add(1, Ordering::SeqCst);
            Ok(format!("tx-{user}-{n}"))
        }
        fn status(&self, _: &str, _: Duration) -> Result<PushStatus, PushError> {
            Ok(match self.fate() {
                Fate::Allow | Fate::Bypass | Fate::Enroll | Fate::Unreachable => PushStatus::Allowed,
                Fate::Deny => PushStatus::Denied("denied".into()),
                Fate::Wait => PushStatus::Waiting,
            })
        }
        fn passcode(&self, _: &str, code: &str, _: Option<IpAddr>) -> Result<bool, PushError> {
            Ok(code == "135790")
        }
    }

    struct World {
        access: AccessControl,
        sessions: Sessions,
        regulator: Regulator,
        directory: Memory,
        cache: BasicCache,
        clock: ManualClock,
        pushes: Pushes,
        fake: Arc<Fake>,
    }

    fn world(fate: Fate, fail_open: bool) -> World {
        let directory = Memory::default();
        let mut dana = User::new("dana", FirstFactor::Pin(zeroize::Zeroizing::new("pw".into())));
        dana.duo = true;
        directory.create(&dana).unwrap();
        let mut carl = User::new("carl", FirstFactor::Pin(zeroize::Zeroizing::new("pw".into())));
        carl.tokens.push(crate::model::Token::generate(
            crate::model::Step::Time(30),
            portcullis_otp::Algorithm::Sha1,
            6,
        ));
        directory.create(&carl).unwrap();
        let fake = Fake::new(fate);
        World {
            access: AccessControl::new(&[], Policy::TwoFactor).unwrap(),
            sessions: Sessions::new(SessionPolicy::default(), None, T0).unwrap(),
            regulator: Regulator::new(RegulationPolicy {
                max_retries: 3,
                ..RegulationPolicy::default()
            }),
            directory,
            cache: BasicCache::default(),
            clock: ManualClock::at(T0),
            pushes: Pushes::new(Box::new(fake.clone()), 60, fail_open),
            fake,
        }
    }

    impl World {
        fn authorizer(&self) -> Authorizer<'_> {
            Authorizer {
                access: &self.access,
                sessions: &self.sessions,
                regulator: &self.regulator,
                gate: Gate {
                    directory: &self.directory,
                    clock: &self.clock,
                    policy: VerifyPolicy {
                        totp_window: 1,
                        hotp_look_ahead: 3,
                        motp_window: 3,
                        linger: 30,
                        max_failures: 5,
                    },
                    external: None,
                },
                basic_cache: &self.cache,
                pushes: Some(&self.pushes),
                passkeys: None,
                clock: &self.clock,
            }
        }
        fn dana(&self) -> User {
            self.directory.user("dana").unwrap().unwrap()
        }
        fn basic(&self, secret: &str, ip: &str) -> (Decision, Option<AuthEvent>) {
            let a = self.authorizer();
            a.decide_waiting(&AccessRequest {
                method: "GET",
                host: "app.example",
                path: "/",
                client_ip: ip.parse().unwrap(),
                session: None,
                basic: Some(BasicCredentials {
                    user: "dana".into(),
                    secret: zeroize::Zeroizing::new(secret.into()),
                }),
            })
            .unwrap()
        }
    }

    fn login<'u>(user: &'u User, n: u8) -> PushLogin<'u> {
        PushLogin {
            user,
            client_ip: Some("192.0.2.7".parse().unwrap()),
            login: [n; 32],
            method: "portal-push",
        }
    }

    #[test]
    fn an_approved_push_signs_in_the_login_that_asked_and_clears_failures() {
        let w = world(Fate::Allow, false);
        w.directory
            .update("dana", &mut |u| {
                u.failures = 2;
                true
            })
            .unwrap();
        let a = w.authorizer();
        let dana = w.dana();
        let (step, event) = a.push_send(&login(&dana, 1)).unwrap();
        assert_eq!(step, PushStep::Sent { device: "phone".into() });
        assert!(event.is_none(), "nothing decided yet");
        let (step, event) = a.push_poll(&login(&dana, 1), Duration::from_millis(1)).unwrap();
        assert!(matches!(step, PushStep::Approved { how: "push", .. }), "{step:?}");
        assert_eq!(event.unwrap().failure, None);
        assert_eq!(w.dana().failures, 0);
        assert_eq!(w.fake.pushes(), 1);
        // The answer is handed out once: the same login polling again gets nothing.
        let (again, _) = a.push_poll(&login(&dana, 1), Duration::from_millis(1)).unwrap();
        assert_eq!(again, PushStep::Refused(Rejection::NotApproved));
        assert_eq!(w.pushes.pending(), 0);
    }

    #[test]
    fn asking_again_joins_the_pending_push_and_another_login_gets_nothing() {
        let w = world(Fate::Wait, false);
        let a = w.authorizer();
        let dana = w.dana();
        a.push_send(&login(&dana, 1)).unwrap();
        a.push_send(&login(&dana, 1)).unwrap();
        a.push_send(&login(&dana, 2)).unwrap();
        assert_eq!(w.fake.pushes(), 1, "one pending push per user and client");
        // A login that never asked cannot collect it, even once approved.
        *w.fake.fate.lock().unwrap() = Fate::Allow;
        let (stranger, _) = a.push_poll(&login(&dana, 3), Duration::from_millis(1)).unwrap();
        assert_eq!(stranger, PushStep::Refused(Rejection::NotApproved));
        let (first, _) = a.push_poll(&login(&dana, 1), Duration::from_millis(1)).unwrap();
        let (second, _) = a.push_poll(&login(&dana, 2), Duration::from_millis(1)).unwrap();
        assert!(matches!(first, PushStep::Approved { .. }) && matches!(second, PushStep::Approved { .. }));
        // Another client of the same user is another push.
        let mut elsewhere = login(&dana, 4);
        elsewhere.client_ip = Some("198.51.100.1".parse().unwrap());
        a.push_send(&elsewhere).unwrap();
        assert_eq!(w.fake.pushes(), 2);
    }

    #[test]
    fn denials_count_like_wrong_codes_and_a_banned_user_is_not_pushed() {
        let w = world(Fate::Deny, false);
        let a = w.authorizer();
        for i in 0..3u8 {
            let dana = w.dana();
            a.push_send(&login(&dana, i)).unwrap();
            let (step, event) = a.push_poll(&login(&dana, i), Duration::from_millis(1)).unwrap();
            assert_eq!(step, PushStep::Refused(Rejection::NotApproved));
            assert_eq!(event.unwrap().failure, Some("not_approved"));
        }
        assert_eq!(w.dana().failures, 3, "each denial is a failure of the user");
        let dana = w.dana();
        let (step, event) = a.push_send(&login(&dana, 9)).unwrap();
        assert_eq!(step, PushStep::Banned);
        assert_eq!(event.unwrap().failure, Some("banned"));
        assert_eq!(w.fake.pushes(), 3, "no push to a banned user");
    }

    #[test]
    fn a_locked_user_is_not_pushed() {
        let w = world(Fate::Allow, false);
        w.directory
            .update("dana", &mut |u| {
                u.failures = 5;
                true
            })
            .unwrap();
        let dana = w.dana();
        let (step, _) = w.authorizer().push_send(&login(&dana, 1)).unwrap();
        assert_eq!(step, PushStep::Refused(Rejection::Locked));
        assert_eq!(w.fake.pushes(), 0);
    }

    #[test]
    fn an_unanswered_push_times_out_as_a_denial() {
        let w = world(Fate::Wait, false);
        let a = w.authorizer();
        let dana = w.dana();
        a.push_send(&login(&dana, 1)).unwrap();
        let (step, _) = a.push_poll(&login(&dana, 1), Duration::from_millis(1)).unwrap();
        assert!(matches!(step, PushStep::Waiting { .. }));
        w.clock.advance(61);
        let (step, event) = a.push_poll(&login(&dana, 1), Duration::from_millis(1)).unwrap();
        assert_eq!(step, PushStep::Refused(Rejection::NotApproved));
        assert_eq!(event.unwrap().failure, Some("not_approved"));
        assert_eq!(w.dana().failures, 1);
    }

    #[test]
    fn the_failmode_applies_only_to_an_unreachable_service() {
        let closed = world(Fate::Unreachable, false);
        let dana = closed.dana();
        let (step, _) = closed.authorizer().push_send(&login(&dana, 1)).unwrap();
        assert_eq!(step, PushStep::Unavailable);
        let open = world(Fate::Unreachable, true);
        let (step, event) = open.authorizer().push_send(&login(&dana, 1)).unwrap();
        assert!(
            matches!(
                step,
                PushStep::Approved {
                    how: "failmode_open",
                    ..
                }
            ),
            "{step:?}"
        );
        assert!(event.unwrap().warning.is_some(), "a skipped push is logged loudly");
        // A refusal by a service that answers is never skipped, whatever the failmode.
        let enroll = world(Fate::Enroll, true);
        let (step, _) = enroll.authorizer().push_send(&login(&dana, 1)).unwrap();
        assert_eq!(step, PushStep::Enroll("https://enroll.example/".into()));
        let bypass = world(Fate::Bypass, false);
        let (step, _) = bypass.authorizer().push_send(&login(&dana, 1)).unwrap();
        assert!(matches!(step, PushStep::Approved { how: "bypass", .. }));
    }

    #[test]
    fn basic_pushes_only_after_the_password_and_not_again_while_it_lingers() {
        let w = world(Fate::Allow, false);
        let (d, _) = w.basic("wrong,push", "192.0.2.7");
        assert_eq!(d, Decision::Challenge);
        assert_eq!(w.fake.pushes(), 0, "no push for a wrong password");
        let (d, event) = w.basic("pw,push", "192.0.2.7");
        assert!(matches!(d, Decision::Allow(Some(_))), "{d:?}");
        assert_eq!(event.unwrap().method, "basic-push");
        let (d, _) = w.basic("pw,push", "192.0.2.7");
        assert!(matches!(d, Decision::Allow(Some(_))));
        assert_eq!(w.fake.pushes(), 1, "the approval lingers: no second push");
        // Duo-only: the password alone pushes too; a passcode is checked with the service.
        w.clock.advance(31);
        let (d, _) = w.basic("pw", "192.0.2.7");
        assert!(matches!(d, Decision::Allow(Some(_))));
        assert_eq!(w.fake.pushes(), 2);
        let (d, _) = w.basic("pw,135790", "192.0.2.8");
        assert!(matches!(d, Decision::Allow(Some(_))));
        let (d, _) = w.basic("pw,111111", "192.0.2.9");
        assert_eq!(d, Decision::Challenge);
        assert_eq!(w.fake.pushes(), 2, "passcodes push nobody");
    }

    #[test]
    fn a_request_with_a_cookie_or_nothing_never_pushes() {
        let w = world(Fate::Allow, false);
        let a = w.authorizer();
        for session in [None, Some("expired-or-forged")] {
            let (d, _) = a
                .decide(&AccessRequest {
                    method: "GET",
                    host: "app.example",
                    path: "/static/app.js",
                    client_ip: "192.0.2.7".parse().unwrap(),
                    session,
                    basic: None,
                })
                .unwrap();
            assert_eq!(d, Decision::Login);
        }
        assert_eq!(w.fake.preauths.load(Ordering::SeqCst), 0);
        assert_eq!(w.fake.pushes(), 0);
    }

    #[test]
    fn what_basic_credentials_ask_for() {
        let duo_only = {
            let mut u = User::new("d", FirstFactor::None);
            u.duo = true;
            u
        };
        let mut both = duo_only.clone();
        both.tokens.push(crate::model::Token::generate(
            crate::model::Step::Time(30),
            portcullis_otp::Algorithm::Sha1,
            6,
        ));
        assert_eq!(basic_push_request("pw,push", &both), Some(("pw", None)));
        assert_eq!(basic_push_request("a,b,push", &both), Some(("a,b", None)));
        assert_eq!(basic_push_request("pw,123456", &both), Some(("pw", Some("123456"))));
        assert_eq!(
            basic_push_request("pw123456", &both),
            None,
            "a code of the user's token"
        );
        assert_eq!(basic_push_request("pw,12345", &both), None, "too short for a passcode");
        assert_eq!(basic_push_request("pw", &duo_only), Some(("pw", None)));
        assert_eq!(password_part("a,b,push"), "a,b");
        assert_eq!(password_part("pw,135790"), "pw");
        assert_eq!(password_part("pw"), "pw");
    }

    #[test]
    fn a_pam_answer_of_a_push_user_is_split_checked_and_pushed() {
        use crate::authz::StepResult;
        use crate::credentials::{Credentials, Prompt};
        let w = world(Fate::Allow, false);
        let a = w.authorizer();
        assert_eq!(
            a.prompt_for("dana").unwrap(),
            Prompt::Push {
                first_factor: true,
                timeout: 60
            }
        );
        let check = |password: Option<&str>, code: Option<&str>| {
            a.check_credentials(&Credentials {
                user: "dana",
                password,
                code,
                client_ip: Some("192.0.2.7".parse().unwrap()),
                method: "pam",
                push: true,
            })
            .unwrap()
        };
        let (r, e) = check(Some("wrong,push"), None);
        assert_eq!(r, StepResult::Refused(Rejection::WrongPassword));
        assert_eq!(e.failure, Some("wrong_password"));
        assert_eq!(w.fake.pushes(), 0, "no push for a wrong password");
        let (r, e) = check(Some("pw,push"), None);
        assert!(matches!(r, StepResult::Passed(_)), "{r:?}");
        assert_eq!((e.method, e.failure), ("pam", None));
        assert!(
            matches!(check(Some("pw"), None).0, StepResult::Passed(_)),
            "Duo-only: the password alone"
        );
        assert!(matches!(check(Some("pw,135790"), None).0, StepResult::Passed(_)));
        assert_eq!(
            check(Some("pw,111111"), None).0,
            StepResult::Refused(Rejection::NotApproved)
        );
        // Without `combined` (the password was checked before): `push`, empty, a passcode.
        assert!(matches!(check(None, Some("push")).0, StepResult::Passed(_)));
        assert!(matches!(check(None, Some("")).0, StepResult::Passed(_)));
        assert_eq!(w.fake.pushes(), 4);
        // A user without Duo is not pushed, whatever the module asks.
        let (r, _) = a
            .check_credentials(&Credentials {
                user: "carl",
                password: Some("pw,push"),
                code: None,
                client_ip: None,
                method: "pam",
                push: true,
            })
            .unwrap();
        assert_eq!(r, StepResult::Refused(Rejection::NoToken));
        assert_eq!(w.fake.pushes(), 4);
    }
}

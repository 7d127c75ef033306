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
    logins: Vec<[u8; 32]>,
    state: State,
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
    Passcode(&'a str),
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
        self.through_service(l, Ask::Passcode(code))
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
            loop {
                match pending.get_mut(&key) {
                    Some(p) if p.state == State::Sending => {
                        // Another login of this user and client is sending: wait for it.
                        pending = pushes
                            .changed
                            .wait_timeout(pending, Duration::from_millis(200))
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                    Some(p) if p.state == State::Waiting && now < p.started.saturating_add_unsigned(pushes.timeout) => {
                        if !p.logins.contains(&l.login) {
                            p.logins.push(l.login);
                        }
                        return Ok((
                            PushStep::Sent {
                                device: p.device.clone(),
                            },
                            None,
                        ));
                    }
                    Some(p) if p.logins.contains(&l.login) && p.state != State::Waiting => {
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
            Ask::Passcode(code) => match service.passcode(&l.user.name, code, l.client_ip) {
                Ok(true) => Ok(Sent::Let("passcode")),
                _ => Ok(Sent::Refused),
            },
        }
    }

    /// The answer to this login's push: waits up to about `wait` for the person.
    pub fn push_poll(&self, l: &PushLogin<'_>, wait: Duration) -> Result<(PushStep, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(pushes) = self.pushes else {
            return Ok((PushStep::Refused(Rejection::NoToken), None));
        };
        let key = (l.user.name.clone(), l.client_ip);
        let (txid, device) = {
            let mut pending = pushes.lock();
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
                    p.logins.retain(|x| *x != l.login);
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
                    p.state = State::Denied;
                    drop(pending);
                    return self.decided(pushes, l, &key, false, now);
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
                    p.state = if allowed { State::Allowed } else { State::Denied };
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
                p.logins.retain(|x| *x != l.login);
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
    fn push_approved(&self, l: &PushLogin<'_>, how: &'static str, now: i64) -> Result<(PushStep, Option<AuthEvent>), GateError> {
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
        let event = self.record_attempt_from(l.client_ip, &l.user.name, l.method, result, now)?;
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

    fn push_refused(&self, l: &PushLogin<'_>, why: Rejection, now: i64) -> Result<(PushStep, Option<AuthEvent>), GateError> {
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
        let end = self.clock.now().saturating_add_unsigned(pushes.timeout.saturating_add(10));
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

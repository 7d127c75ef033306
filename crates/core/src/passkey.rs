//! Passkeys and security keys (WebAuthn) as a portal factor: the seam a verifier
//! implements (the ceremony itself, in `portcullis-webauthn`), and the policy around it.
//! A ceremony's state stays on this node, bound to the login step that began it (the
//! session's hash, or a passwordless cookie), expires quickly and wins once; a refused
//! assertion counts like a wrong code; a signature counter never goes back.

use crate::authz::{Attempted, AuthEvent, Authorizer};
use crate::gate::{GateError, Rejection};
use crate::login::{LoginOutcome, LoginStep, Refusal};
use crate::model::{Passkey, User};
use crate::session::Level;
use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

/// Why a verifier refused or could not read a ceremony's answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PasskeyError {
    /// The browser's answer is not a WebAuthn response (bad JSON, a missing field).
    #[error("malformed WebAuthn response: {0}")]
    Malformed(String),
    /// A signature, the challenge, the origin, the RP ID or a flag did not verify.
    #[error("WebAuthn response refused: {0}")]
    Refused(String),
    /// The signature counter did not grow: a cloned authenticator, or a replay.
    #[error("the signature counter did not grow (a cloned authenticator?)")]
    Cloned,
    /// The verifier cannot start a ceremony (a misconfigured RP ID or origin).
    #[error("WebAuthn: {0}")]
    Setup(String),
}

/// A verifier's state for one ceremony (never sent to the browser), opaque to the core.
pub struct Ceremony(pub Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ceremony(..)")
    }
}

/// Who a new credential is for.
#[derive(Debug, Clone)]
pub struct Registrant<'a> {
    /// The user handle stored in the authenticator ([`user_handle`]).
    pub handle: [u8; 16],
    /// The login name.
    pub name: &'a str,
    /// The name to show in the authenticator's account picker.
    pub display_name: &'a str,
    /// Credentials the user has already (the authenticator refuses to make a second).
    pub exclude: Vec<Vec<u8>>,
    /// Ask for a discoverable credential (passwordless login needs one).
    pub discoverable: bool,
}

/// A credential the verifier accepted at registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The new credential, label and dates left for the caller.
    pub passkey: Passkey,
    /// The authenticator verified the person (PIN, biometrics).
    pub user_verified: bool,
}

/// What a verified assertion says about the credential.
#[derive(Debug, Clone)]
pub struct Asserted {
    /// The credential that signed.
    pub id: Vec<u8>,
    /// Its signature counter now (0: it keeps none).
    pub counter: u32,
    /// The authenticator verified the person.
    pub user_verified: bool,
    /// Backup eligibility as signed now.
    pub backup_eligible: bool,
    /// Backup state as signed now.
    pub backup_state: bool,
    /// The verifier's record of the credential with the above applied.
    pub data: String,
}

/// The WebAuthn ceremonies (webauthn-rs in `portcullis-webauthn`): options for the browser,
/// and the verification of its answers against the state kept here.
pub trait PasskeyVerifier: Send + Sync {
    /// Options for `navigator.credentials.create()` (JSON), and the state to keep.
    fn start_registration(&self, who: &Registrant<'_>) -> Result<(String, Ceremony), PasskeyError>;
    /// Verifies the browser's answer to a registration.
    fn finish_registration(&self, response: &str, state: &Ceremony) -> Result<Registered, PasskeyError>;
    /// Options for `navigator.credentials.get()` (JSON) allowing `allowed` (none: any
    /// discoverable credential), with user verification required when `verify_user`.
    fn start_authentication(&self, allowed: &[Passkey], verify_user: bool) -> Result<(String, Ceremony), PasskeyError>;
    /// The credential ID and user handle an assertion claims (not verified yet).
    fn claimed(&self, response: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), PasskeyError>;
    /// Verifies an assertion by `credential` against `state`.
    fn finish_authentication(
        &self,
        response: &str,
        state: &Ceremony,
        credential: &Passkey,
    ) -> Result<Asserted, PasskeyError>;
}

/// The user handle of `name` in authenticators: derived from the name (no column to keep),
/// and only a hash of it, as the specification asks (no personal data in the handle).
pub fn user_handle(name: &str) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"portcullis webauthn user handle\0");
    h.update(name.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// What a pending ceremony is for; an answer for another purpose finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    SecondFactor,
    Passwordless,
}

struct Pending {
    purpose: Purpose,
    /// Whose ceremony (none for a passwordless one: the credential says).
    user: Option<String>,
    label: String,
    ip: IpAddr,
    state: Ceremony,
    expires: i64,
}

/// Ceremonies pending on this node at most (each holds a few hundred bytes).
const MAX_PENDING: usize = 10_000;
/// Passwordless ceremonies one address may hold open (they need no password to begin).
const MAX_PASSWORDLESS_PER_IP: usize = 8;

/// The verifier, the settings around it and the ceremonies pending on this node.
pub struct Passkeys {
    verifier: Box<dyn PasskeyVerifier>,
    /// `[webauthn] passwordless`: a discoverable passkey with user verification is a whole login.
    passwordless: bool,
    /// `[webauthn] user_verification = "required"` for the second factor too.
    verify_user: bool,
    /// Seconds a ceremony stays open.
    ttl: i64,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

impl Passkeys {
    /// Ceremonies through `verifier`, open `ttl` seconds each.
    pub fn new(verifier: Box<dyn PasskeyVerifier>, passwordless: bool, verify_user: bool, ttl: u64) -> Self {
        Passkeys {
            verifier,
            passwordless,
            verify_user,
            ttl: i64::try_from(ttl).unwrap_or(600),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a passkey alone may sign in.
    pub fn passwordless(&self) -> bool {
        self.passwordless
    }

    /// Ceremonies pending now (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `p` under `binding` (replacing that binding's earlier ceremony); false when
    /// this node holds too many open ceremonies (or this address too many passwordless ones).
    fn put(&self, binding: [u8; 32], p: Pending, now: i64) -> bool {
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING / 2 {
            pending.retain(|_, x| x.expires > now);
        }
        if p.purpose == Purpose::Passwordless
            && pending
                .values()
                .filter(|x| x.purpose == Purpose::Passwordless && x.ip == p.ip)
                .count()
                >= MAX_PASSWORDLESS_PER_IP
        {
            return false;
        }
        if pending.len() >= MAX_PENDING && !pending.contains_key(&binding) {
            return false;
        }
        pending.insert(binding, p);
        true
    }

    /// Takes the ceremony of `binding` for `purpose` out (so two answers never both use it).
    fn take(&self, binding: &[u8; 32], purpose: Purpose, now: i64) -> Taken {
        let mut pending = self.lock();
        match pending.get(binding) {
            Some(p) if p.purpose != purpose => Taken::None,
            Some(p) if p.expires <= now => {
                pending.remove(binding);
                Taken::Expired
            }
            Some(_) => pending.remove(binding).map_or(Taken::None, Taken::Found),
            None => Taken::None,
        }
    }

    /// Puts back a ceremony whose answer was refused: the right answer may still come.
    fn put_back(&self, binding: [u8; 32], p: Pending) {
        self.lock().entry(binding).or_insert(p);
    }
}

enum Taken {
    Found(Pending),
    Expired,
    None,
}

/// The browser options of a begun ceremony, or why there is none.
#[derive(Debug)]
pub enum PasskeyBegin {
    /// Hand these to `navigator.credentials` (JSON).
    Options(String),
    /// No live session of the right level (start again at the password).
    NotSignedIn,
    /// Refused before asking the authenticator (banned, locked, no passkey).
    Refused(Refusal),
    /// Passkeys are not configured, or too many ceremonies are open right now.
    Unavailable,
}

/// What a registration step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// The new passkey is the user's, under this label.
    Added(String),
    /// The session is not a two-factor one (or gone).
    NotSignedIn,
    /// The credential is registered already (to this user or another).
    Duplicate,
    /// The authenticator's answer did not verify (why, for the log).
    Refused(String),
    /// No registration of this session is open (expired, or already finished).
    Expired,
}

/// The longest label kept for a passkey.
pub const MAX_LABEL: usize = 64;

/// A label as kept: trimmed, control characters dropped, at most [`MAX_LABEL`] characters,
/// `passkey` when empty.
pub fn clean_label(label: &str) -> String {
    let l: String = label.chars().filter(|c| !c.is_control()).collect();
    let l: String = l.trim().chars().take(MAX_LABEL).collect();
    if l.is_empty() { "passkey".into() } else { l }
}

impl Authorizer<'_> {
    /// Whether `user` may use a passkey on the portal now.
    pub fn passkeys_for(&self, user: &User) -> bool {
        self.passkeys.is_some() && !user.passkeys.is_empty()
    }

    /// Whether "Sign in with a passkey" is offered on the first page.
    pub fn passwordless(&self) -> bool {
        self.passkeys.is_some_and(Passkeys::passwordless)
    }

    /// The code page's "Use your passkey": options for the passkeys of the one-factor
    /// session `current`, the ceremony bound to that session.
    pub fn passkey_login_begin(&self, current: &str, ip: IpAddr) -> Result<(PasskeyBegin, Vec<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(pk) = self.passkeys else {
            return Ok((PasskeyBegin::Unavailable, Vec::new()));
        };
        let Some((s, binding)) = self.live(current, ip)? else {
            return Ok((PasskeyBegin::NotSignedIn, Vec::new()));
        };
        if s.level == Level::TwoFactor {
            return Ok((PasskeyBegin::NotSignedIn, Vec::new()));
        }
        let Some(user) = self.gate.directory.user(&s.user)? else {
            return Ok((PasskeyBegin::NotSignedIn, Vec::new()));
        };
        if self.regulator.is_banned(Some(&user.name), ip, now)? {
            let event = self.record_attempt(ip, &user.name, "portal-passkey", Attempted::Banned, now)?;
            return Ok((PasskeyBegin::Refused(Refusal::Banned), vec![event]));
        }
        if self.gate.policy.is_locked(&user) {
            return Ok((PasskeyBegin::Refused(Refusal::Rejected(Rejection::Locked)), Vec::new()));
        }
        if user.passkeys.is_empty() {
            return Ok((PasskeyBegin::Refused(Refusal::Rejected(Rejection::NoToken)), Vec::new()));
        }
        let Ok((options, state)) = pk.verifier.start_authentication(&user.passkeys, pk.verify_user) else {
            return Ok((PasskeyBegin::Unavailable, Vec::new()));
        };
        let kept = pk.put(
            binding,
            Pending {
                purpose: Purpose::SecondFactor,
                user: Some(user.name.clone()),
                label: String::new(),
                ip,
                state,
                expires: now.saturating_add(pk.ttl),
            },
            now,
        );
        Ok((
            if kept {
                PasskeyBegin::Options(options)
            } else {
                PasskeyBegin::Unavailable
            },
            Vec::new(),
        ))
    }

    /// The browser's assertion for the ceremony of the one-factor session `current`: a
    /// verified one replaces the session by a two-factor one.
    pub fn passkey_login_finish(&self, current: &str, response: &str, ip: IpAddr) -> Result<LoginStep, GateError> {
        let now = self.clock.now();
        let refused = |r| LoginStep {
            outcome: LoginOutcome::Refused(r),
            events: Vec::new(),
        };
        let Some(pk) = self.passkeys else {
            return Ok(refused(Refusal::NotSignedIn));
        };
        let Some((s, binding)) = self.live(current, ip)? else {
            return Ok(refused(Refusal::NotSignedIn));
        };
        if s.level == Level::TwoFactor {
            return Ok(refused(Refusal::NotSignedIn));
        }
        let pending = match pk.take(&binding, Purpose::SecondFactor, now) {
            Taken::Found(p) if p.user.as_deref() == Some(s.user.as_str()) => p,
            other => {
                // A replayed answer (its ceremony was used), or one from another session.
                let why = if matches!(other, Taken::Expired) {
                    Rejection::Expired
                } else {
                    Rejection::Replayed
                };
                let event = self.record_attempt(ip, &s.user, "portal-passkey", Attempted::Refused(why), now)?;
                return Ok(LoginStep {
                    outcome: LoginOutcome::Refused(Refusal::Rejected(why)),
                    events: vec![event],
                });
            }
        };
        let (result, event) = self.assertion(pk, &s.user, response, &pending, false, ip, now)?;
        self.after_assertion(pk, binding, pending, result, event, Some(current), ip)
    }

    /// A two-factor session for a verified assertion (replacing `current`); a refused one
    /// leaves its ceremony open for the right answer.
    #[allow(clippy::too_many_arguments)]
    fn after_assertion(
        &self,
        pk: &Passkeys,
        binding: [u8; 32],
        pending: Pending,
        result: Result<Box<User>, Refusal>,
        event: AuthEvent,
        current: Option<&str>,
        ip: IpAddr,
    ) -> Result<LoginStep, GateError> {
        let outcome = match result {
            Ok(user) => LoginOutcome::SignedIn {
                session: self.start_session(current, &user, Level::TwoFactor, ip)?,
                level: Level::TwoFactor,
                complete: true,
            },
            Err(r) => {
                pk.put_back(binding, pending);
                LoginOutcome::Refused(r)
            }
        };
        Ok(LoginStep {
            outcome,
            events: vec![event],
        })
    }

    /// "Sign in with a passkey" (`[webauthn] passwordless`): options for any discoverable
    /// credential with user verification, bound to `token` (a random cookie the portal
    /// sets; its hash is the key here).
    pub fn passwordless_begin(&self, token: &str, ip: IpAddr) -> Result<PasskeyBegin, GateError> {
        let now = self.clock.now();
        let (Some(pk), Some(binding)) = (
            self.passkeys.filter(|p| p.passwordless),
            crate::session::token_hash(token),
        ) else {
            return Ok(PasskeyBegin::Unavailable);
        };
        if self.regulator.is_banned_from(None, Some(ip), now)? {
            return Ok(PasskeyBegin::Refused(Refusal::Banned));
        }
        let Ok((options, state)) = pk.verifier.start_authentication(&[], true) else {
            return Ok(PasskeyBegin::Unavailable);
        };
        let kept = pk.put(
            binding,
            Pending {
                purpose: Purpose::Passwordless,
                user: None,
                label: String::new(),
                ip,
                state,
                expires: now.saturating_add(pk.ttl),
            },
            now,
        );
        Ok(if kept {
            PasskeyBegin::Options(options)
        } else {
            PasskeyBegin::Unavailable
        })
    }

    /// The assertion for the passwordless ceremony of `token`: the credential names its
    /// owner; a verified one (user verification required) is a two-factor session that
    /// replaces `current`.
    pub fn passwordless_finish(
        &self,
        token: &str,
        current: Option<&str>,
        response: &str,
        ip: IpAddr,
    ) -> Result<LoginStep, GateError> {
        let now = self.clock.now();
        let (Some(pk), Some(binding)) = (
            self.passkeys.filter(|p| p.passwordless),
            crate::session::token_hash(token),
        ) else {
            return Ok(LoginStep {
                outcome: LoginOutcome::Refused(Refusal::NotSignedIn),
                events: Vec::new(),
            });
        };
        let anonymous = |why: Rejection| -> Result<LoginStep, GateError> {
            let b = self.regulator.record_failure_from(None, Some(ip), now)?;
            Ok(LoginStep {
                outcome: LoginOutcome::Refused(Refusal::Rejected(why)),
                events: vec![AuthEvent {
                    client_ip: Some(ip),
                    user: "-".into(),
                    method: "portal-passwordless",
                    failure: Some(why.label()),
                    banned: b.ip,
                    warning: None,
                }],
            })
        };
        if self.regulator.is_banned_from(None, Some(ip), now)? {
            return Ok(LoginStep {
                outcome: LoginOutcome::Refused(Refusal::Banned),
                events: Vec::new(),
            });
        }
        let pending = match pk.take(&binding, Purpose::Passwordless, now) {
            Taken::Found(p) => p,
            Taken::Expired => return anonymous(Rejection::Expired),
            Taken::None => return anonymous(Rejection::Replayed),
        };
        // The credential names its owner; the signature, checked next, proves it.
        let owner = match pk.verifier.claimed(response) {
            Ok((id, _)) => self.gate.directory.passkey_owner(&id)?,
            Err(_) => None,
        };
        let Some(owner) = owner else {
            pk.put_back(binding, pending);
            return anonymous(Rejection::BadPasskey);
        };
        let (result, event) = self.assertion(pk, &owner, response, &pending, true, ip, now)?;
        self.after_assertion(pk, binding, pending, result, event, current, ip)
    }

    /// Checks `response` as `name`'s assertion for `pending` and, when it verifies, moves
    /// the credential's counter on in the same atomic update that clears the failures.
    /// `passwordless`: the passkey is the whole login (user verification required, and
    /// the user handle must be the owner's).
    #[allow(clippy::too_many_arguments)]
    fn assertion(
        &self,
        pk: &Passkeys,
        name: &str,
        response: &str,
        pending: &Pending,
        passwordless: bool,
        ip: IpAddr,
        now: i64,
    ) -> Result<(Result<Box<User>, Refusal>, AuthEvent), GateError> {
        let method = if passwordless {
            "portal-passwordless"
        } else {
            "portal-passkey"
        };
        if self.regulator.is_banned(Some(name), ip, now)? {
            let event = self.record_attempt(ip, name, method, Attempted::Banned, now)?;
            return Ok((Err(Refusal::Banned), event));
        }
        let Some(user) = self.gate.directory.user(name)? else {
            let event = self.record_attempt(ip, name, method, Attempted::Refused(Rejection::UnknownUser), now)?;
            return Ok((Err(Refusal::Rejected(Rejection::UnknownUser)), event));
        };
        let verified = self.verify_assertion(pk, &user, response, pending, passwordless);
        let asserted = match verified {
            Ok(a) => a,
            Err(why) => return self.assertion_refused(name, method, why, ip, now),
        };
        let policy = &self.gate.policy;
        let mut stored: Option<Result<User, Rejection>> = None;
        self.gate.directory.update(name, &mut |u| {
            if policy.is_locked(u) {
                stored = Some(Err(Rejection::Locked));
                return false;
            }
            let Some(p) = u.passkeys.iter_mut().find(|p| p.id == asserted.id) else {
                // Removed while the person was touching it.
                stored = Some(Err(Rejection::BadPasskey));
                return false;
            };
            // Checked again here, atomically: two assertions with one counter never both win.
            if (asserted.counter > 0 || p.counter > 0) && asserted.counter <= p.counter {
                stored = Some(Err(Rejection::ClonedPasskey));
                return false;
            }
            p.counter = asserted.counter;
            p.backup_eligible = asserted.backup_eligible;
            p.backup_state = asserted.backup_state;
            p.data.clone_from(&asserted.data);
            p.last_used = Some(now);
            u.failures = 0;
            stored = Some(Ok(u.clone()));
            true
        })?;
        match stored {
            Some(Ok(u)) => {
                self.regulator.record_success(name)?;
                let event = self.record_attempt(ip, name, method, Attempted::Passed, now)?;
                Ok((Ok(Box::new(u)), event))
            }
            Some(Err(why)) => self.assertion_refused(name, method, why, ip, now),
            None => {
                let event = self.record_attempt(ip, name, method, Attempted::Refused(Rejection::UnknownUser), now)?;
                Ok((Err(Refusal::Rejected(Rejection::UnknownUser)), event))
            }
        }
    }

    /// The verifier's judgement of `response` by one of `user`'s passkeys.
    fn verify_assertion(
        &self,
        pk: &Passkeys,
        user: &User,
        response: &str,
        pending: &Pending,
        passwordless: bool,
    ) -> Result<Asserted, Rejection> {
        if self.gate.policy.is_locked(user) {
            return Err(Rejection::Locked);
        }
        let (id, handle) = pk.verifier.claimed(response).map_err(|_| Rejection::BadPasskey)?;
        let credential = user.passkeys.iter().find(|p| p.id == id).ok_or(Rejection::BadPasskey)?;
        let own = user_handle(&user.name);
        if passwordless && handle.as_deref() != Some(own.as_slice()) {
            return Err(Rejection::BadPasskey);
        }
        if handle.is_some_and(|h| h != own) {
            return Err(Rejection::BadPasskey);
        }
        let asserted = pk
            .verifier
            .finish_authentication(response, &pending.state, credential)
            .map_err(|e| match e {
                PasskeyError::Cloned => Rejection::ClonedPasskey,
                _ => Rejection::BadPasskey,
            })?;
        if asserted.id != credential.id || (passwordless && !asserted.user_verified) {
            return Err(Rejection::BadPasskey);
        }
        Ok(asserted)
    }

    /// A refused assertion: a failure like a wrong code (lockout and regulation).
    fn assertion_refused(
        &self,
        name: &str,
        method: &'static str,
        why: Rejection,
        ip: IpAddr,
        now: i64,
    ) -> Result<(Result<Box<User>, Refusal>, AuthEvent), GateError> {
        if why != Rejection::Locked {
            self.gate.directory.update(name, &mut |u| {
                u.failures = u.failures.saturating_add(1);
                true
            })?;
        }
        let event = self.record_attempt(ip, name, method, Attempted::Refused(why), now)?;
        Ok((Err(Refusal::Rejected(why)), event))
    }

    /// "Add a passkey" on the settings page of the two-factor session `current`: options
    /// for a new credential, the ceremony bound to that session and to `label`.
    pub fn passkey_register_begin(&self, current: &str, ip: IpAddr, label: &str) -> Result<PasskeyBegin, GateError> {
        let Some((s, binding)) = self.live(current, ip)? else {
            return Ok(PasskeyBegin::NotSignedIn);
        };
        if s.level != Level::TwoFactor {
            return Ok(PasskeyBegin::NotSignedIn);
        }
        self.register_begin_for(&s.user, binding, ip, label)
    }

    /// Begins a registration for `user` bound to `binding` (a session's or an
    /// invitation's hash).
    pub fn register_begin_for(
        &self,
        name: &str,
        binding: [u8; 32],
        ip: IpAddr,
        label: &str,
    ) -> Result<PasskeyBegin, GateError> {
        let now = self.clock.now();
        let Some(pk) = self.passkeys else {
            return Ok(PasskeyBegin::Unavailable);
        };
        let Some(user) = self.gate.directory.user(name)? else {
            return Ok(PasskeyBegin::NotSignedIn);
        };
        if self.gate.policy.is_locked(&user) {
            return Ok(PasskeyBegin::Refused(Refusal::Rejected(Rejection::Locked)));
        }
        let display = user.display_name.clone().unwrap_or_else(|| user.name.clone());
        let who = Registrant {
            handle: user_handle(&user.name),
            name: &user.name,
            display_name: &display,
            exclude: user.passkeys.iter().map(|p| p.id.clone()).collect(),
            discoverable: pk.passwordless,
        };
        let Ok((options, state)) = pk.verifier.start_registration(&who) else {
            return Ok(PasskeyBegin::Unavailable);
        };
        let kept = pk.put(
            binding,
            Pending {
                purpose: Purpose::Register,
                user: Some(user.name.clone()),
                label: clean_label(label),
                ip,
                state,
                expires: now.saturating_add(pk.ttl),
            },
            now,
        );
        Ok(if kept {
            PasskeyBegin::Options(options)
        } else {
            PasskeyBegin::Unavailable
        })
    }

    /// The authenticator's answer to the registration of the two-factor session `current`.
    pub fn passkey_register_finish(
        &self,
        current: &str,
        response: &str,
        ip: IpAddr,
    ) -> Result<(Registration, Option<AuthEvent>), GateError> {
        let Some((s, binding)) = self.live(current, ip)? else {
            return Ok((Registration::NotSignedIn, None));
        };
        if s.level != Level::TwoFactor {
            return Ok((Registration::NotSignedIn, None));
        }
        self.register_finish_for(&s.user, binding, response, ip)
    }

    /// Finishes the registration bound to `binding` for `name`: the credential is added
    /// unless any user has it already.
    pub fn register_finish_for(
        &self,
        name: &str,
        binding: [u8; 32],
        response: &str,
        ip: IpAddr,
    ) -> Result<(Registration, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let Some(pk) = self.passkeys else {
            return Ok((Registration::Expired, None));
        };
        let pending = match pk.take(&binding, Purpose::Register, now) {
            Taken::Found(p) if p.user.as_deref() == Some(name) => p,
            _ => return Ok((Registration::Expired, None)),
        };
        let mut registered = match pk.verifier.finish_registration(response, &pending.state) {
            Ok(r) => r,
            Err(e) => {
                let event = self.record_attempt(
                    ip,
                    name,
                    "passkey-register",
                    Attempted::Refused(Rejection::BadPasskey),
                    now,
                )?;
                return Ok((Registration::Refused(e.to_string()), Some(event)));
            }
        };
        // One credential, one owner (the store refuses a second owner too). Someone showing
        // a credential that is registered already is logged and counted.
        let duplicate = |this: &Self| -> Result<(Registration, Option<AuthEvent>), GateError> {
            let why = Attempted::Refused(Rejection::BadPasskey);
            let event = this.record_attempt(ip, name, "passkey-register", why, now)?;
            Ok((Registration::Duplicate, Some(event)))
        };
        if self.gate.directory.passkey_owner(&registered.passkey.id)?.is_some() {
            return duplicate(self);
        }
        registered.passkey.label = pending.label.clone();
        registered.passkey.created = now;
        let mut outcome = Registration::Duplicate;
        let saved = self.gate.directory.update(name, &mut |u| {
            if u.passkeys.iter().any(|p| p.id == registered.passkey.id) {
                return false;
            }
            // Labels name one key each: "laptop", "laptop (2)".
            let mut label = registered.passkey.label.clone();
            let mut n = 1;
            while u.passkeys.iter().any(|p| p.label == label) {
                n += 1;
                label = format!("{} ({n})", registered.passkey.label);
            }
            let mut p = registered.passkey.clone();
            p.label.clone_from(&label);
            u.passkeys.push(p);
            outcome = Registration::Added(label);
            true
        });
        match saved {
            Ok(true) => {}
            Ok(false) => return Ok((Registration::NotSignedIn, None)),
            Err(crate::StoreError::Exists(_)) => return duplicate(self),
            Err(e) => return Err(e.into()),
        }
        let event = if matches!(outcome, Registration::Added(_)) {
            Some(self.record_attempt(ip, name, "passkey-register", Attempted::Passed, now)?)
        } else {
            None
        };
        Ok((outcome, event))
    }

    /// "Register a passkey" through an invitation link (`user invite NAME --passkey`): the
    /// ceremony is bound to the invitation, which must be valid.
    pub fn invite_passkey_begin(
        &self,
        invites: &dyn crate::invite::InviteStore,
        token: &str,
        ip: IpAddr,
        label: &str,
    ) -> Result<PasskeyBegin, GateError> {
        let now = self.clock.now();
        let (Some(invite), Some(binding)) = (invites.find(token, now)?, crate::session::token_hash(token)) else {
            return Ok(PasskeyBegin::NotSignedIn);
        };
        if self.regulator.is_banned(Some(&invite.user), ip, now)? {
            return Ok(PasskeyBegin::Refused(Refusal::Banned));
        }
        self.register_begin_for(&invite.user, binding, ip, label)
    }

    /// The authenticator's answer for an invitation's registration: a new passkey uses the
    /// invitation up.
    pub fn invite_passkey_finish(
        &self,
        invites: &dyn crate::invite::InviteStore,
        token: &str,
        response: &str,
        ip: IpAddr,
    ) -> Result<(Registration, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let (Some(invite), Some(binding)) = (invites.find(token, now)?, crate::session::token_hash(token)) else {
            return Ok((Registration::Expired, None));
        };
        let done = self.register_finish_for(&invite.user, binding, response, ip)?;
        if matches!(done.0, Registration::Added(_)) {
            invites.consume(token)?;
            self.regulator.record_success(&invite.user)?;
        }
        Ok(done)
    }

    /// Removes the passkey `id_text` (base64url credential ID) of the two-factor session
    /// `current`'s user; false when the session may not or the key is not theirs.
    pub fn passkey_remove(&self, current: &str, ip: IpAddr, id_text: &str) -> Result<bool, GateError> {
        let Some((s, _)) = self.live(current, ip)? else {
            return Ok(false);
        };
        if s.level != Level::TwoFactor {
            return Ok(false);
        }
        let mut removed = false;
        self.gate.directory.update(&s.user, &mut |u| {
            let before = u.passkeys.len();
            u.passkeys.retain(|p| p.id_text() != id_text);
            removed = u.passkeys.len() != before;
            removed
        })?;
        Ok(removed)
    }

    /// The live session behind `current` and its binding (the hash ceremonies are kept under).
    fn live(&self, current: &str, ip: IpAddr) -> Result<Option<(crate::session::Session, [u8; 32])>, GateError> {
        let Some(binding) = crate::session::token_hash(current) else {
            return Ok(None);
        };
        Ok(self.signed_in(current, ip)?.map(|s| (s, binding)))
    }
}

/// Passkeys through the [`SecondFactor`](crate::factor::SecondFactor) seam: `begin` opens a
/// ceremony bound to its own options (their challenge is 256 random bits), `finish` judges
/// an assertion for it. The portal binds ceremonies to sessions instead; this is the shape
/// the conformance suite drives.
pub struct PasskeyFactor<'x, 'a>(pub &'x Authorizer<'a>);

fn options_binding(options: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(options.as_bytes()).into()
}

impl crate::factor::SecondFactor for PasskeyFactor<'_, '_> {
    fn name(&self) -> &'static str {
        "passkey"
    }

    fn enrolled(&self, user: &User) -> bool {
        !user.passkeys.is_empty()
    }

    fn begin(&self, ctx: &crate::factor::Context<'_>) -> Result<crate::factor::Challenge, GateError> {
        let a = self.0;
        let (Some(pk), Some(user)) = (a.passkeys, a.gate.directory.user(ctx.user)?) else {
            return Err(GateError::Store(crate::StoreError::NotFound(ctx.user.to_string())));
        };
        let (options, state) = pk
            .verifier
            .start_authentication(&user.passkeys, pk.verify_user)
            .map_err(|e| GateError::Store(crate::StoreError::Source(e.to_string())))?;
        let now = a.clock.now();
        let ip = ctx
            .client_ip
            .and_then(|i| i.parse().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let p = Pending {
            purpose: Purpose::SecondFactor,
            user: Some(user.name.clone()),
            label: String::new(),
            ip,
            state,
            expires: now.saturating_add(pk.ttl),
        };
        if !pk.put(options_binding(&options), p, now) {
            return Err(GateError::Unavailable("passkeys"));
        }
        Ok(crate::factor::Challenge::Assertion { options })
    }

    fn finish(
        &self,
        ctx: &crate::factor::Context<'_>,
        challenge: &crate::factor::Challenge,
        answer: crate::factor::Answer<'_>,
    ) -> Result<crate::factor::Finish, GateError> {
        use crate::factor::{Answer, Challenge, Finish};
        let a = self.0;
        let (Some(pk), Challenge::Assertion { options }, Answer::Assertion(response)) = (a.passkeys, challenge, answer)
        else {
            return Ok(Finish::Refused(Rejection::BadPasskey));
        };
        let now = a.clock.now();
        let binding = options_binding(options);
        let pending = match pk.take(&binding, Purpose::SecondFactor, now) {
            Taken::Found(p) if p.user.as_deref() == Some(ctx.user) => p,
            Taken::Found(p) => {
                pk.put_back(binding, p);
                return Ok(Finish::Refused(Rejection::BadPasskey));
            }
            Taken::Expired => return Ok(Finish::Refused(Rejection::Expired)),
            Taken::None => return Ok(Finish::Refused(Rejection::Replayed)),
        };
        let ip = pending.ip;
        let (result, _event) = a.assertion(pk, ctx.user, response, &pending, false, ip, now)?;
        Ok(match result {
            Ok(user) => Finish::Accepted {
                user,
                via: crate::gate::Via::Passkey,
            },
            Err(r) => {
                pk.put_back(binding, pending);
                Finish::Refused(match r {
                    Refusal::Rejected(r) => r,
                    _ => Rejection::Locked,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cleaned_and_handles_are_stable_per_name() {
        assert_eq!(clean_label("  laptop \u{7} "), "laptop");
        assert_eq!(clean_label(""), "passkey");
        assert_eq!(clean_label(&"x".repeat(100)).chars().count(), MAX_LABEL);
        assert_eq!(user_handle("alice"), user_handle("alice"));
        assert_ne!(user_handle("alice"), user_handle("alicf"));
    }
}

//! The one decision every integration asks for: an `AccessRequest` in, a `Decision` out.
//! Adapters (portal, forward-auth, Apache, PAM) only translate their protocol to and from
//! these types; rules, sessions, factors, regulation and replay live here once.

use crate::access::{self, AccessControl, Policy, Resource, Subject};
use crate::clock::Clock;
use crate::gate::{Attempt, Gate, GateError, Outcome, Rejection, Via};
use crate::model::User;
use crate::regulation::Regulator;
use crate::session::{Level, Session, Sessions};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Who a request was let in as; becomes `Remote-User` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Login name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

impl Identity {
    /// Takes the session's copy of who its user is (the session itself is a copy made for
    /// this request: moving it, not cloning it, keeps the check free of allocations).
    fn of_session(s: Session) -> Self {
        Identity {
            user: s.user,
            groups: s.groups,
            display_name: s.display_name,
            email: s.email,
        }
    }

    pub(crate) fn of_user(u: &User) -> Self {
        Identity {
            user: u.name.clone(),
            groups: u.groups.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
        }
    }

    /// The groups as the one comma-separated value an application gets (`Remote-Groups`,
    /// `PORTCULLIS_GROUPS`). A group whose name holds a comma is left out: the application
    /// splits on commas and would read its pieces as other groups (an LDAP group's DN
    /// `cn=x\,admins,ou=groups,…` or a cn `x,admins` would put it in `admins`). The
    /// `[access]` rules still see every group, DNs included.
    pub fn groups_value(&self) -> String {
        let mut value = String::new();
        for g in self.groups.iter().filter(|g| !g.contains(',')) {
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(g);
        }
        value
    }
}

/// HTTP Basic credentials (`user`, `password` immediately followed by the code).
#[derive(Clone)]
pub struct BasicCredentials {
    /// User name.
    pub user: String,
    /// Password and one-time code, concatenated.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({:?}, redacted)", self.user)
    }
}

/// One request to decide on, whatever protocol brought it.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Host the client asked for.
    pub host: &'a str,
    /// Path and query as the client sent them.
    pub path: &'a str,
    /// The client's address (already resolved through trusted proxies).
    pub client_ip: IpAddr,
    /// The session cookie value, if any.
    pub session: Option<&'a str>,
    /// Basic credentials, if any.
    pub basic: Option<BasicCredentials>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through; `None` for a bypassed resource with no session.
    Allow(Option<Identity>),
    /// Send a browser to the portal.
    Login,
    /// Ask for Basic credentials (401 with `WWW-Authenticate`): none given, or wrong —
    /// every wrong factor and a ban get this same answer.
    Challenge,
    /// Refused by a rule (403).
    Deny,
    /// The request cannot be judged (malformed path): 400.
    BadRequest(String),
    /// Basic credentials that ask for a push (`password,push`) passed the password: the
    /// adapter waits for the answer with [`Authorizer::finish_basic_push`], outside the
    /// login slots (a person takes seconds to approve).
    AwaitPush(Box<crate::push::PushTicket>),
}

/// An authentication attempt to log and count; carries no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    /// Client address (`None`: a local login, with no remote host).
    pub client_ip: Option<IpAddr>,
    /// Name as typed (untrusted: log it quoted).
    pub user: String,
    /// `portal-password`, `portal-code`, `basic`, `enroll`, …
    pub method: &'static str,
    /// None for success, else why it failed (`banned` included).
    pub failure: Option<&'static str>,
    /// A ban started with this failure.
    pub banned: bool,
    /// Something an administrator must hear about a success (a factor skipped by
    /// `failmode = "open"`): logged at WARN.
    pub warning: Option<&'static str>,
}

/// The result of a login step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Passed; the user as stored.
    Passed(Box<User>),
    /// Refused (show one generic message; the reason is for logs).
    Refused(Rejection),
    /// The user or address is banned for now (shown like any failure).
    Banned,
}

/// How an attempt ended, as the regulator and the audit log see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempted {
    /// Every factor asked for was right.
    Passed,
    /// Not checked: banned.
    Banned,
    /// Checked and refused.
    Refused(Rejection),
}

impl From<&StepResult> for Attempted {
    fn from(r: &StepResult) -> Self {
        match r {
            StepResult::Passed(_) => Attempted::Passed,
            StepResult::Banned => Attempted::Banned,
            StepResult::Refused(r) => Attempted::Refused(*r),
        }
    }
}

/// The shared decision maker.
pub struct Authorizer<'a> {
    /// The access rules.
    pub access: &'a AccessControl,
    /// Login sessions.
    pub sessions: &'a Sessions,
    /// Brute-force regulation.
    pub regulator: &'a Regulator,
    /// Factor checks.
    pub gate: Gate<'a>,
    /// Recently accepted Basic credentials.
    pub basic_cache: &'a BasicCache,
    /// Push approval (`[duo]`), if configured.
    pub pushes: Option<&'a crate::push::Pushes>,
    /// Passkeys (`[webauthn]`), if configured.
    pub passkeys: Option<&'a crate::passkey::Passkeys>,
    /// Time.
    pub clock: &'a dyn Clock,
}

/// Basic credentials accepted moments ago, so a WebDAV client resending them on every
/// request costs a hash lookup instead of an argon2 verification. An entry lives no
/// longer than the linger window of the code it holds, and only for the same address.
pub struct BasicCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], CachedBasic>>,
    /// Seconds an entry is trusted before the credentials are checked in full again.
    refresh: i64,
}

/// An accepted Basic credential: until when it stands (unix seconds), for whom, when the
/// user was last read from the directory, and whether an app password was the credential.
struct CachedBasic {
    until: i64,
    user: Box<User>,
    /// The first factor's fingerprint when accepted (an htpasswd line lives outside `user`).
    factor: [u8; 16],
    checked: i64,
    app_password: bool,
}

/// A cache hit: the user as cached, and whether the directory must be read again first.
pub(crate) struct Hit {
    user: Box<User>,
    factor: [u8; 16],
    due: bool,
}

/// True while `now` still has the standing `then` had when its password+code was accepted:
/// not locked, same first factor, same token secrets. (A code cannot be checked again: a
/// later login may have moved the token on.)
fn still_stands(now: &User, then: &User, policy: &crate::gate::VerifyPolicy) -> bool {
    !policy.is_locked(now)
        && now.first_factor == then.first_factor
        && now.tokens.len() == then.tokens.len()
        && now.tokens.iter().zip(&then.tokens).all(|(a, b)| a.secret == b.secret)
}

/// Entries kept at most; the cache is emptied of expired entries when it is full.
const BASIC_CACHE_MAX: usize = 10_000;

impl Default for BasicCache {
    fn default() -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&crate::random::bytes(32));
        BasicCache {
            key,
            entries: Mutex::new(HashMap::new()),
            refresh: 60,
        }
    }
}

impl BasicCache {
    /// A cache whose entries are checked in full again after `refresh` seconds, so that a
    /// lock, a new password, a reset token or a revoked app password stops a Basic client
    /// within that time, not only when the linger time runs out (0 = every request).
    pub fn with_refresh(refresh: u64) -> Self {
        BasicCache {
            refresh: i64::try_from(refresh).unwrap_or(i64::MAX),
            ..Self::default()
        }
    }

    /// Applies a change reported from elsewhere: a changed user's entries go (the next
    /// request is checked in full), and all of them when messages may have been missed.
    pub fn revoked(&self, what: crate::session::Revocation<'_>) {
        use crate::session::Revocation;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match what {
            Revocation::Session(_) => {}
            Revocation::User(name) => entries.retain(|_, e| e.user.name != name),
            Revocation::All => entries.clear(),
        }
    }

    /// The entry under `digest` while its linger time lasts.
    fn live<'m>(map: &'m HashMap<[u8; 32], CachedBasic>, digest: &[u8; 32], now: i64) -> Option<&'m CachedBasic> {
        map.get(digest).filter(|e| now < e.until)
    }

    fn due(&self, e: &CachedBasic, now: i64) -> bool {
        now.saturating_sub(e.checked) >= self.refresh
    }

    /// A keyed digest of user, secret and address (the secret is never kept).
    pub(crate) fn digest(&self, creds: &BasicCredentials, ip: IpAddr) -> [u8; 32] {
        use sha2::Digest;
        // Prefixed with a random per-process key: the digest is only a map key, and the
        // password+code cannot be tested against it offline.
        sha2::Sha256::new()
            .chain_update(self.key)
            .chain_update(creds.user.as_bytes())
            .chain_update([0])
            .chain_update(creds.secret.as_bytes())
            .chain_update([0])
            .chain_update(ip.to_string().as_bytes())
            .finalize()
            .into()
    }

    /// A live entry; one accepted by app password and due for a check is left to a full
    /// check (its hash is checked again, which also sees a revocation).
    pub(crate) fn get(&self, digest: &[u8; 32], now: i64) -> Option<Hit> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = Self::live(&map, digest, now)?;
        let due = self.due(e, now);
        (!(due && e.app_password)).then(|| Hit {
            user: e.user.clone(),
            factor: e.factor,
            due,
        })
    }

    /// Records a fresh read of the entry's user.
    fn checked(&self, digest: &[u8; 32], now: i64, user: Box<User>) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(digest) {
            e.checked = now;
            e.user = user;
        }
    }

    fn remove(&self, digest: &[u8; 32]) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(digest);
    }

    pub(crate) fn put(
        &self,
        digest: [u8; 32],
        until: i64,
        user: Box<User>,
        factor: [u8; 16],
        now: i64,
        app_password: bool,
    ) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= BASIC_CACHE_MAX {
            map.retain(|_, e| now < e.until);
            if map.len() >= BASIC_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(
            digest,
            CachedBasic {
                until,
                user,
                factor,
                checked: now,
                app_password,
            },
        );
    }

    /// True when these credentials were accepted from this address and still stand, so
    /// deciding on them hashes no password: an adapter may then decide without moving the
    /// work to a blocking thread.
    pub fn is_fresh(&self, creds: &BasicCredentials, ip: IpAddr, now: i64) -> bool {
        let digest = self.digest(creds, ip);
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Self::live(&map, &digest, now).is_some_and(|e| !(e.app_password && self.due(e, now)))
    }

    /// Forgets everything (after a lock, unlock or token change).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn level_meets(level: Level, policy: Policy) -> bool {
    match policy {
        Policy::Bypass => true,
        Policy::OneFactor => matches!(level, Level::OneFactor | Level::TwoFactor),
        Policy::TwoFactor => matches!(level, Level::TwoFactor),
        Policy::Deny => false,
    }
}

impl Authorizer<'_> {
    /// Decides a request; returns the decision and, when credentials were checked, the event.
    pub fn decide(&self, req: &AccessRequest<'_>) -> Result<(Decision, Option<AuthEvent>), GateError> {
        let now = self.clock.now();
        let session = match req.session {
            Some(id) => self.signed_in(id, req.client_ip)?,
            None => None,
        };
        let resource = Resource {
            method: req.method,
            host: req.host,
            path: req.path,
            client_ip: req.client_ip,
        };
        let subject = session.as_ref().map(|s| Subject {
            user: &s.user,
            groups: &s.groups,
        });
        let policy = match self.access.policy_for(&resource, subject.as_ref()) {
            Ok(access::RuleOutcome::Policy(p)) => Some(p),
            Ok(access::RuleOutcome::NeedsSubject) => None,
            Err(e) => return Ok((Decision::BadRequest(e.to_string()), None)),
        };
        match (policy, session) {
            (Some(Policy::Bypass), s) => return Ok((Decision::Allow(s.map(Identity::of_session)), None)),
            (Some(Policy::Deny), _) => return Ok((Decision::Deny, None)),
            (Some(p), Some(s)) if level_meets(s.level, p) => {
                return Ok((Decision::Allow(Some(Identity::of_session(s))), None));
            }
            _ => {}
        }
        let Some(basic) = &req.basic else {
            return Ok((Decision::Login, None));
        };
        if let Some(early) = self.basic_push(basic, &resource, now)? {
            return Ok(early);
        }
        // Basic credentials carry both factors, so they satisfy any policy; the rules are
        // then asked again with the subject, as users/groups rules may still deny.
        let (result, event) = self.basic(basic, req.client_ip, now)?;
        let StepResult::Passed(user) = result else {
            return Ok((Decision::Challenge, event));
        };
        let subject = Subject {
            user: &user.name,
            groups: &user.groups,
        };
        let decision = match self.access.policy_for(&resource, Some(&subject)) {
            Ok(access::RuleOutcome::Policy(Policy::Deny)) => Decision::Deny,
            Ok(_) => Decision::Allow(Some(Identity::of_user(&user))),
            Err(e) => Decision::BadRequest(e.to_string()),
        };
        Ok((decision, event))
    }

    /// Reads a session's user again: the session of a removed or locked user, or of one whose
    /// first factor changed since the login (a new password), ends (false); otherwise its
    /// groups, name and e-mail are brought up to date in `s` and the table.
    pub(crate) fn refresh_session(&self, id: &str, s: &mut Session, now: i64) -> Result<bool, GateError> {
        let stands = |u: &User| -> Result<bool, GateError> {
            Ok(!self.gate.policy.is_locked(u) && s.factor == Some(self.gate.first_factor_fingerprint(u)?))
        };
        match self.gate.directory.user(&s.user)? {
            Some(u) if stands(&u)? => {
                self.sessions
                    .refreshed(id, now, &u.groups, u.display_name.as_deref(), u.email.as_deref())?;
                s.groups = u.groups;
                s.display_name = u.display_name;
                s.email = u.email;
                Ok(true)
            }
            _ => {
                self.sessions.revoke(id)?;
                Ok(false)
            }
        }
    }

    /// Authorization only, for a user some other step has already authenticated (Apache's
    /// `Require portcullis-authz`, whose `REMOTE_USER` comes from any authn provider): may
    /// `user` reach `resource` under the `[access]` rules?
    ///
    /// The user is looked up in the directory (its groups as stored now); an empty name, an
    /// unknown user and a locked one (by an administrator or by too many wrong codes) are
    /// denied. A matching `deny` rule denies; any other policy allows, with the identity: how
    /// the user signed in (which factors) is the authenticating step's business, not known
    /// here. No credential is checked, so there is no event to log or count.
    pub fn authorize_user(&self, user: &str, resource: &Resource<'_>) -> Result<Decision, GateError> {
        if user.is_empty() {
            return Ok(Decision::Deny);
        }
        let Some(stored) = self.gate.directory.user(&self.gate.canonical(user)?)? else {
            return Ok(Decision::Deny);
        };
        if self.gate.policy.is_locked(&stored) {
            return Ok(Decision::Deny);
        }
        let subject = Subject {
            user: &stored.name,
            groups: &stored.groups,
        };
        Ok(match self.access.policy_for(resource, Some(&subject)) {
            Ok(access::RuleOutcome::Policy(Policy::Deny)) => Decision::Deny,
            Ok(access::RuleOutcome::Policy(_)) => Decision::Allow(Some(Identity::of_user(&stored))),
            // Not reached with a subject; refuse rather than guess.
            Ok(access::RuleOutcome::NeedsSubject) => Decision::Deny,
            Err(e) => Decision::BadRequest(e.to_string()),
        })
    }

    /// Checks Basic credentials: password+code split by the user's code length, with linger.
    /// A cache hit (same credentials, same address, inside the linger time) is not an event.
    fn basic(
        &self,
        creds: &BasicCredentials,
        ip: IpAddr,
        now: i64,
    ) -> Result<(StepResult, Option<AuthEvent>), GateError> {
        let digest = self.basic_cache.digest(creds, ip);
        if let Some(hit) = self.basic_cache.get(&digest, now) {
            if !hit.due {
                return Ok((StepResult::Passed(hit.user), None));
            }
            // Past the refresh interval: the user is read again, so a lock, a new password or
            // a reset token stops this client now rather than when the linger time ends.
            let current = self.gate.directory.user(&hit.user.name)?;
            let stands = match &current {
                Some(c) => {
                    still_stands(c, &hit.user, &self.gate.policy)
                        && self.gate.first_factor_fingerprint(c)? == hit.factor
                }
                None => false,
            };
            return Ok(match current {
                Some(current) if stands => {
                    let current = Box::new(current);
                    self.basic_cache.checked(&digest, now, current.clone());
                    (StepResult::Passed(current), None)
                }
                current => {
                    self.basic_cache.remove(&digest);
                    let why = match current {
                        None => Rejection::UnknownUser,
                        Some(u) if self.gate.policy.is_locked(&u) => Rejection::Locked,
                        Some(_) => Rejection::WrongPassword,
                    };
                    let result = StepResult::Refused(why);
                    let event = self.record_attempt(ip, &hit.user.name, "basic", (&result).into(), now)?;
                    (result, Some(event))
                }
            });
        }
        let ip_text = ip.to_string();
        let name = self.gate.canonical(&creds.user)?;
        let stored = self.gate.directory.user(&name)?;
        if let Some(user) = stored.as_ref().filter(|u| !u.app_passwords.is_empty() && !u.locked)
            && !self.regulator.is_banned(Some(&name), ip, now)?
            && user
                .app_passwords
                .iter()
                .any(|a| crate::password::verify_hash(&a.hash, &creds.secret))
        {
            let user = Box::new(user.clone());
            let until = now.saturating_add(i64::try_from(self.gate.policy.linger).unwrap_or(0));
            let factor = self.gate.first_factor_fingerprint(&user)?;
            self.basic_cache.put(digest, until, user.clone(), factor, now, true);
            self.regulator.record_success(&name)?;
            let result = StepResult::Passed(user);
            let event = self.record_attempt(ip, &name, "basic-app-password", (&result).into(), now)?;
            return Ok((result, Some(event)));
        }
        let digits = stored
            .as_ref()
            .and_then(|u| u.tokens.first())
            .map_or(6, |t| t.digits as usize);
        let secret = creds.secret.as_str();
        // A secret too short for a code yields an empty code, which is wrong.
        let (password, code) = crate::credentials::split_password_code(secret, digits).unwrap_or((secret, ""));
        let mut accepted_at = now;
        let result = self.guarded(&name, ip, now, || {
            let attempt = Attempt {
                user: &name,
                password: Some(password),
                code,
                client_ip: Some(&ip_text),
                linger: true,
            };
            // The user read above: the first factor costs one read, as an unknown name's does.
            let outcome = self.verify_of(attempt, stored.as_ref())?;
            if let Outcome::Accepted {
                user,
                via: Via::Token(i) | Via::Linger(i),
            } = &outcome
            {
                accepted_at = user.tokens.get(*i).and_then(|t| t.last_used).unwrap_or(now);
            }
            Ok(outcome)
        })?;
        if let StepResult::Passed(user) = &result {
            let until = accepted_at.saturating_add(i64::try_from(self.gate.policy.linger).unwrap_or(0));
            let factor = self.gate.first_factor_fingerprint(user)?;
            self.basic_cache.put(digest, until, user.clone(), factor, now, false);
        }
        let event = self.record_attempt(ip, &name, "basic", (&result).into(), now)?;
        Ok((result, Some(event)))
    }

    /// Runs a check unless banned, and feeds its result to the regulator.
    fn guarded(
        &self,
        user: &str,
        ip: IpAddr,
        now: i64,
        check: impl FnOnce() -> Result<Outcome, GateError>,
    ) -> Result<StepResult, GateError> {
        if self.regulator.is_banned(Some(user), ip, now)? {
            return Ok(StepResult::Banned);
        }
        Ok(match check()? {
            Outcome::Accepted { user: u, via } => {
                if !matches!(via, Via::Linger(_)) {
                    self.regulator.record_success(user)?;
                }
                StepResult::Passed(u)
            }
            Outcome::Rejected(r) => StepResult::Refused(r),
        })
    }

    /// Records an attempt's result with the regulator (a refusal counts toward a ban) and
    /// returns the event describing it, for the adapter to log and count.
    pub(crate) fn record_attempt(
        &self,
        ip: IpAddr,
        user: &str,
        method: &'static str,
        result: Attempted,
        now: i64,
    ) -> Result<AuthEvent, GateError> {
        self.record_attempt_from(Some(ip), user, method, result, now)
    }

    /// [`Authorizer::record_attempt`] for a client whose address may be unknown.
    pub(crate) fn record_attempt_from(
        &self,
        ip: Option<IpAddr>,
        user: &str,
        method: &'static str,
        result: Attempted,
        now: i64,
    ) -> Result<AuthEvent, GateError> {
        let (failure, banned) = match result {
            Attempted::Passed => (None, false),
            Attempted::Banned => (Some("banned"), false),
            Attempted::Refused(r) => {
                let b = self.regulator.record_failure_from(Some(user), ip, now)?;
                (Some(r.label()), b.user || b.ip)
            }
        };
        Ok(AuthEvent {
            client_ip: ip,
            user: user.to_string(),
            method,
            failure,
            banned,
            warning: None,
        })
    }

    /// Portal step one: the password (or PIN). Does not touch token state.
    pub fn password_step(&self, user: &str, password: &str, ip: IpAddr) -> Result<(StepResult, AuthEvent), GateError> {
        let now = self.clock.now();
        let user = &self.gate.canonical(user)?;
        let result = if self.regulator.is_banned(Some(user), ip, now)? {
            StepResult::Banned
        } else {
            let stored = match self.gate.directory.user(user)? {
                Some(u) => Some(u),
                None => self.gate.self_enrolling(user, password)?,
            };
            let ok = self.gate.check_first_factor(user, stored.as_ref(), password)?;
            match stored {
                None => StepResult::Refused(Rejection::UnknownUser),
                Some(_) if !ok => StepResult::Refused(Rejection::WrongPassword),
                Some(u) if u.locked => StepResult::Refused(Rejection::Locked),
                Some(u) => StepResult::Passed(Box::new(u)),
            }
        };
        let event = self.record_attempt(ip, user, "portal-password", (&result).into(), now)?;
        Ok((result, event))
    }

    /// Portal step two (or the single-page form's second half): the code.
    pub fn code_step(&self, user: &str, code: &str, ip: IpAddr) -> Result<(StepResult, AuthEvent), GateError> {
        let now = self.clock.now();
        let ip_text = ip.to_string();
        let result = self.guarded(user, ip, now, || {
            self.verify(Attempt {
                user,
                password: None,
                code,
                client_ip: Some(&ip_text),
                linger: false,
            })
        })?;
        let event = self.record_attempt(ip, user, "portal-code", (&result).into(), now)?;
        Ok((result, event))
    }

    /// A session record for `user` at `level`, as of now.
    pub fn session_for(&self, user: &User, level: Level, ip: IpAddr) -> Result<Session, GateError> {
        let now = self.clock.now();
        Ok(Session {
            user: user.name.clone(),
            groups: user.groups.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            level,
            created: now,
            last_seen: now,
            client_ip: Some(ip),
            factor: Some(self.gate.first_factor_fingerprint(user)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::model::FirstFactor;
    use crate::store::Directory;
    use crate::testing::{World, rule};

    #[test]
    fn the_groups_value_leaves_out_names_an_application_would_split() {
        let id = Identity {
            user: "bob".into(),
            groups: vec![
                "staff".into(),
                "cn=staff,ou=groups,dc=example,dc=com".into(),
                "x,admins".into(),
                "cn=x\\2Cadmins,ou=groups,dc=example,dc=com".into(),
                "Domain Users".into(),
            ],
            display_name: None,
            email: None,
        };
        assert_eq!(id.groups_value(), "staff,Domain Users");
        assert_eq!(Identity { groups: vec![], ..id }.groups_value(), "");
    }

    /// Issue 13.7: a first factor kept outside the directory (an htpasswd line) ends the
    /// sessions made with it when it changes, as a new argon2 hash or PIN does.
    #[test]
    fn a_new_htpasswd_line_ends_the_sessions_made_with_the_old_one() {
        let w = World::new();
        w.directory
            .update("alice", &mut |u| {
                u.first_factor = FirstFactor::External;
                true
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let set = |pw: &str| std::fs::write(&file, format!("alice:{}\n", bcrypt::hash(pw, 4).unwrap())).unwrap();
        set("old pw");
        let source = crate::password::ExternalSource::Htpasswd(file.clone());
        let mut authorizer = w.authorizer();
        authorizer.gate.external = Some(&source);
        let alice = w.directory.user("alice").unwrap().unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut session = authorizer.session_for(&alice, Level::TwoFactor, ip).unwrap();
        let id = w.sessions.create(session.clone()).unwrap();
        let now = w.clock.now();
        assert!(
            authorizer.refresh_session(id.as_str(), &mut session, now).unwrap(),
            "unchanged: stands"
        );
        set("new pw");
        assert!(
            !authorizer.refresh_session(id.as_str(), &mut session, now).unwrap(),
            "changed: ended"
        );
        assert!(w.sessions.get(id.as_str(), now, Some(ip)).is_none(), "and revoked");
    }

    #[test]
    fn authorize_user_applies_group_rules_to_the_stored_user() {
        let w = World::new();
        let Decision::Allow(Some(id)) = w.authorize("root", "/admin/x") else {
            panic!("root is in admins");
        };
        assert_eq!(id.user, "root");
        assert_eq!(id.groups, ["staff", "admins"]);
        assert_eq!(id.email.as_deref(), Some("root@example.com"));
        assert_eq!(w.authorize("alice", "/admin/x"), Decision::Deny);
        // Normalised like every path: no way around the rule by encoding.
        assert_eq!(w.authorize("alice", "/public/../%61dmin/x"), Decision::Deny);
        assert!(matches!(w.authorize("alice", "/app/"), Decision::Allow(Some(_))));
        assert_eq!(w.authorize("root", "/private/"), Decision::Deny);
        assert!(matches!(w.authorize("root", "/x%2fy"), Decision::BadRequest(_)));
    }

    #[test]
    fn authorize_user_refuses_unknown_empty_and_locked_users() {
        let w = World::new();
        assert_eq!(w.authorize("", "/app/"), Decision::Deny);
        assert_eq!(w.authorize("mallory", "/app/"), Decision::Deny);
        assert_eq!(w.authorize("locked", "/admin/"), Decision::Deny);
        assert_eq!(w.authorize("failed", "/admin/"), Decision::Deny);
        // Groups are read from the directory now, not from what the user had at login.
        w.directory
            .update("alice", &mut |u| {
                u.groups.push("admins".into());
                true
            })
            .unwrap();
        assert!(matches!(w.authorize("alice", "/admin/x"), Decision::Allow(Some(_))));
    }

    /// A two-factor session for `user` created at `now`, and its cookie value.
    fn signed_in(w: &World, user: &str, now: i64) -> String {
        let u = w.directory.user(user).unwrap().unwrap();
        let id = w
            .sessions
            .create(Session {
                user: u.name.clone(),
                groups: u.groups.clone(),
                display_name: u.display_name.clone(),
                email: u.email.clone(),
                level: Level::TwoFactor,
                created: now,
                last_seen: now,
                client_ip: None,
                factor: Some(u.first_factor.fingerprint()),
            })
            .unwrap();
        id.as_str().to_string()
    }

    fn decide_at(w: &mut World, now: i64, session: &str, path: &str) -> Decision {
        w.clock = FixedClock(now);
        let req = AccessRequest {
            method: "GET",
            host: "app.example.com",
            path,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            session: Some(session),
            basic: None,
        };
        w.authorizer().decide(&req).unwrap().0
    }

    #[test]
    fn a_lock_ends_live_sessions_within_the_refresh_interval() {
        let mut w = World::new();
        let t0 = w.clock.0;
        let id = signed_in(&w, "alice", t0);
        assert!(matches!(
            decide_at(&mut w, t0 + 1, &id, "/app/"),
            Decision::Allow(Some(_))
        ));
        w.directory
            .update("alice", &mut |u| {
                u.locked = true;
                true
            })
            .unwrap();
        // Not yet re-read: the session still stands...
        assert!(matches!(
            decide_at(&mut w, t0 + 59, &id, "/app/"),
            Decision::Allow(Some(_))
        ));
        // ...and once the refresh interval has passed, it is gone for good.
        assert_eq!(decide_at(&mut w, t0 + 61, &id, "/app/"), Decision::Login);
        assert!(w.sessions.get(&id, t0 + 62, None).is_none(), "the session was revoked");
        // A removed user's session ends the same way.
        let root = signed_in(&w, "root", t0 + 100);
        w.directory.remove("root").unwrap();
        assert_eq!(decide_at(&mut w, t0 + 161, &root, "/app/"), Decision::Login);
    }

    #[test]
    fn group_changes_reach_live_sessions_within_the_refresh_interval() {
        let mut w = World::new();
        let t0 = w.clock.0;
        let id = signed_in(&w, "root", t0);
        assert!(matches!(
            decide_at(&mut w, t0 + 1, &id, "/admin/x"),
            Decision::Allow(Some(_))
        ));
        w.directory
            .update("root", &mut |u| {
                u.groups.retain(|g| g != "admins");
                u.email = Some("new@example.com".into());
                true
            })
            .unwrap();
        assert_eq!(decide_at(&mut w, t0 + 61, &id, "/admin/x"), Decision::Deny);
        let Decision::Allow(Some(identity)) = decide_at(&mut w, t0 + 62, &id, "/app/") else {
            panic!("root still has a session");
        };
        assert_eq!(identity.groups, ["staff"]);
        assert_eq!(identity.email.as_deref(), Some("new@example.com"));
    }

    #[test]
    fn a_cached_basic_login_stands_while_the_user_is_unchanged_and_unlocked() {
        let w = World::new();
        let policy = w.authorizer().gate.policy;
        let then = w.directory.user("alice").unwrap().unwrap();
        let mut now = then.clone();
        now.failures = 2;
        now.groups.push("admins".into());
        assert!(still_stands(&now, &then, &policy), "counters and groups may move");
        now.locked = true;
        assert!(!still_stands(&now, &then, &policy));
        let mut now = then.clone();
        now.failures = 5;
        assert!(!still_stands(&now, &then, &policy), "locked out by wrong codes");
        let mut now = then.clone();
        now.first_factor = FirstFactor::Pin(Zeroizing::new("1234".to_string()));
        assert!(!still_stands(&now, &then, &policy), "a new password ends it");
    }

    /// Gives `alice` (no password) a TOTP token; returns a function for its code at a time.
    fn with_token(w: &World) -> impl Fn(i64) -> String + use<> {
        use crate::model::{Step, Token, TokenKind};
        use portcullis_otp::{Algorithm, Hotp, Secret, totp_step};
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        w.directory
            .update("alice", &mut |u| {
                u.tokens.push(Token::new(
                    TokenKind::Oath,
                    Step::Time(30),
                    secret.clone(),
                    Algorithm::Sha1,
                    6,
                ));
                true
            })
            .unwrap();
        let generator = Hotp::new(&secret, Algorithm::Sha1, 6);
        move |t| generator.code(totp_step(t, 30)).to_string()
    }

    /// A world where `alice` (30 s linger, cache re-read after `refresh` s) has just signed
    /// in with Basic at t0 (mid-step, so the cache, not the step, decides at t0 + 30): the
    /// world, t0, the code used and the login's event.
    fn basic_login(refresh: u64) -> (World, i64, String, Option<AuthEvent>) {
        let mut w = World::new();
        w.linger = 30;
        w.cache = BasicCache::with_refresh(refresh);
        let code = with_token(&w);
        let t0 = 1_700_000_010;
        let ok = code(t0);
        let (d, event) = basic_at(&mut w, t0, "alice", &ok);
        assert!(matches!(d, Decision::Allow(Some(_))), "{d:?}");
        (w, t0, ok, event)
    }

    fn basic_at(w: &mut World, now: i64, user: &str, secret: &str) -> (Decision, Option<AuthEvent>) {
        w.clock = FixedClock(now);
        let req = AccessRequest {
            method: "GET",
            host: "app.example.com",
            path: "/app/",
            client_ip: IpAddr::from([127, 0, 0, 1]),
            session: None,
            basic: Some(BasicCredentials {
                user: user.into(),
                secret: Zeroizing::new(secret.into()),
            }),
        };
        w.authorizer().decide(&req).unwrap()
    }

    #[test]
    fn cached_basic_credentials_stand_until_the_linger_ends_and_are_rechecked_on_time() {
        let (mut w, t0, ok, event) = basic_login(10);
        assert!(event.is_some_and(|e| e.failure.is_none()), "a full check is an event");
        let (d, event) = basic_at(&mut w, t0 + 1, "alice", &ok);
        assert!(
            matches!(d, Decision::Allow(Some(_))) && event.is_none(),
            "a cache hit is no event"
        );
        assert!(w.cache.is_fresh(
            &BasicCredentials {
                user: "alice".into(),
                secret: Zeroizing::new(ok.clone())
            },
            IpAddr::from([127, 0, 0, 1]),
            t0 + 1
        ));
        // Other credentials from the same address are not the cached ones.
        let (d, _) = basic_at(&mut w, t0 + 2, "alice", "000000");
        assert_eq!(d, Decision::Challenge);
        // A lock is seen once `refresh` (10 s) has passed since the last read, not before.
        w.directory
            .update("alice", &mut |u| {
                u.locked = true;
                true
            })
            .unwrap();
        assert!(matches!(
            basic_at(&mut w, t0 + 9, "alice", &ok).0,
            Decision::Allow(Some(_))
        ));
        let (d, event) = basic_at(&mut w, t0 + 10, "alice", &ok);
        assert_eq!(d, Decision::Challenge);
        assert_eq!(event.and_then(|e| e.failure), Some("locked"));
    }

    #[test]
    fn a_cached_basic_login_ends_exactly_when_its_linger_does() {
        let (mut w, t0, ok, _) = basic_login(3600);
        assert!(matches!(
            basic_at(&mut w, t0 + 29, "alice", &ok).0,
            Decision::Allow(Some(_))
        ));
        // At t0 + 30 the code's linger is over: checked in full, it is a replay.
        let (d, event) = basic_at(&mut w, t0 + 30, "alice", &ok);
        assert_eq!(d, Decision::Challenge);
        assert_eq!(event.and_then(|e| e.failure), Some("replayed"));
    }

    #[test]
    fn a_new_token_secret_ends_a_cached_basic_login() {
        let (mut w, t0, ok, _) = basic_login(0);
        assert!(matches!(
            basic_at(&mut w, t0 + 1, "alice", &ok).0,
            Decision::Allow(Some(_))
        ));
        w.directory
            .update("alice", &mut |u| {
                u.tokens[0].secret = portcullis_otp::Secret::from_bytes(b"another secret 12345".to_vec());
                true
            })
            .unwrap();
        assert_eq!(basic_at(&mut w, t0 + 2, "alice", &ok).0, Decision::Challenge);
    }

    #[test]
    fn basic_credentials_debug_hides_the_secret() {
        let c = BasicCredentials {
            user: "alice".into(),
            secret: Zeroizing::new("pw123456".into()),
        };
        assert_eq!(format!("{c:?}"), "BasicCredentials(\"alice\", redacted)");
    }

    #[test]
    fn a_cached_app_password_is_verified_again_once_due_and_a_revocation_ends_it() {
        let mut w = World::new();
        w.linger = 300;
        w.cache = BasicCache::with_refresh(10);
        let hash = crate::password::hash_password("app-secret-1").unwrap();
        w.directory
            .update("alice", &mut |u| {
                u.app_passwords.push(crate::model::AppPassword {
                    label: "phone".into(),
                    hash: hash.clone(),
                    created: 0,
                });
                true
            })
            .unwrap();
        let t0 = 1_700_000_000;
        let creds = BasicCredentials {
            user: "alice".into(),
            secret: Zeroizing::new("app-secret-1".into()),
        };
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (d, event) = basic_at(&mut w, t0, "alice", "app-secret-1");
        assert!(matches!(d, Decision::Allow(Some(_))), "{d:?}");
        assert_eq!(event.map(|e| e.method), Some("basic-app-password"));
        assert!(
            w.cache.is_fresh(&creds, ip, t0 + 9),
            "a hit costs no hash before refresh"
        );
        assert!(!w.cache.is_fresh(&creds, ip, t0 + 10), "due: the hash is checked again");
        let (d, event) = basic_at(&mut w, t0 + 5, "alice", "app-secret-1");
        assert!(matches!(d, Decision::Allow(Some(_))) && event.is_none());
        w.directory
            .update("alice", &mut |u| {
                u.app_passwords.clear();
                true
            })
            .unwrap();
        assert!(matches!(
            basic_at(&mut w, t0 + 9, "alice", "app-secret-1").0,
            Decision::Allow(_)
        ));
        assert_eq!(
            basic_at(&mut w, t0 + 10, "alice", "app-secret-1").0,
            Decision::Challenge
        );
        // Forgetting everything makes nothing fresh.
        let (d, _) = basic_at(&mut w, t0 + 11, "root", "");
        assert_eq!(d, Decision::Challenge);
        w.cache.clear();
        assert!(!w.cache.is_fresh(&creds, ip, t0 + 11));
    }

    #[test]
    fn a_recheck_lasts_another_refresh_and_a_refusal_drops_the_entry() {
        let (mut w, t0, ok, _) = basic_login(10);
        // Re-read at t0 + 10 (still standing): good until t0 + 20, so a lock at t0 + 11
        // is seen at t0 + 20, not before. That bound is the cache's whole promise.
        assert!(matches!(
            basic_at(&mut w, t0 + 10, "alice", &ok),
            (Decision::Allow(_), None)
        ));
        let lock = |w: &World, locked: bool| {
            w.directory
                .update("alice", &mut |u| {
                    u.locked = locked;
                    true
                })
                .unwrap()
        };
        lock(&w, true);
        assert!(matches!(basic_at(&mut w, t0 + 19, "alice", &ok).0, Decision::Allow(_)));
        assert_eq!(basic_at(&mut w, t0 + 20, "alice", &ok).0, Decision::Challenge);
        // The refused entry is gone: after an unlock the credentials are checked in full
        // (the code lingers for this address), which is an event again.
        lock(&w, false);
        let (d, event) = basic_at(&mut w, t0 + 21, "alice", &ok);
        assert!(matches!(d, Decision::Allow(_)), "{d:?}");
        assert!(event.is_some(), "checked in full, not answered from the cache");
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_and_else_everything() {
        let cache = BasicCache::default();
        let user = Box::new(User::new("u", FirstFactor::None));
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        let now = 1000;
        for i in 0..BASIC_CACHE_MAX - 1 {
            // Expired: one just now (an entry stands while now < until), the rest earlier.
            let until = if i == 0 { now } else { now - 1 };
            cache.put(key(i), until, user.clone(), [0; 16], now - 10, false);
        }
        cache.put(key(BASIC_CACHE_MAX - 1), now + 100, user.clone(), [0; 16], now, false);
        // Full: the expired ones go, the live one stays, the new one is added.
        cache.put(key(BASIC_CACHE_MAX), now + 100, user.clone(), [0; 16], now, false);
        assert!(cache.get(&key(BASIC_CACHE_MAX - 1), now).is_some());
        assert!(cache.get(&key(BASIC_CACHE_MAX), now).is_some());
        assert_eq!(cache.entries.lock().unwrap().len(), 2);
        // Full of live entries: all go (a flood of logins cannot grow it without bound).
        let cache = BasicCache::default();
        for i in 0..BASIC_CACHE_MAX {
            cache.put(key(i), now + 100, user.clone(), [0; 16], now, false);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), BASIC_CACHE_MAX);
        cache.put(key(BASIC_CACHE_MAX + 1), now + 100, user.clone(), [0; 16], now, false);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
        assert!(cache.get(&key(BASIC_CACHE_MAX + 1), now).is_some());
    }

    #[test]
    fn clearing_the_cache_forgets_live_entries() {
        let cache = BasicCache::default();
        let creds = BasicCredentials {
            user: "u".into(),
            secret: Zeroizing::new("pw123456".into()),
        };
        let ip = IpAddr::from([127, 0, 0, 1]);
        let digest = cache.digest(&creds, ip);
        cache.put(
            digest,
            2000,
            Box::new(User::new("u", FirstFactor::None)),
            [0; 16],
            1000,
            false,
        );
        assert!(cache.is_fresh(&creds, ip, 1001));
        assert!(
            !cache.is_fresh(&creds, IpAddr::from([127, 0, 0, 2]), 1001),
            "another address"
        );
        cache.clear();
        assert!(!cache.is_fresh(&creds, ip, 1001));
    }

    #[test]
    fn a_one_factor_session_meets_only_one_factor_rules() {
        let mut w = World::new();
        w.access = AccessControl::new(&[rule("^/wiki/", &[], Policy::OneFactor)], Policy::TwoFactor).unwrap();
        let t0 = w.clock.0;
        let u = w.directory.user("alice").unwrap().unwrap();
        let mut s = w
            .authorizer()
            .session_for(&u, Level::OneFactor, IpAddr::from([127, 0, 0, 1]))
            .unwrap();
        s.created = t0;
        s.last_seen = t0;
        let id = w.sessions.create(s).unwrap().as_str().to_string();
        assert!(matches!(
            decide_at(&mut w, t0 + 1, &id, "/wiki/page"),
            Decision::Allow(Some(_))
        ));
        assert_eq!(decide_at(&mut w, t0 + 2, &id, "/app/"), Decision::Login);
        let two = signed_in(&w, "alice", t0);
        assert!(matches!(
            decide_at(&mut w, t0 + 3, &two, "/app/"),
            Decision::Allow(Some(_))
        ));
    }

    #[test]
    fn a_bypassed_path_needs_no_session_and_names_one_if_there_is() {
        let mut w = World::new();
        w.access = AccessControl::new(&[rule("^/public/", &[], Policy::Bypass)], Policy::TwoFactor).unwrap();
        let t0 = w.clock.0;
        assert_eq!(
            decide_at(&mut w, t0, "no-such-session", "/public/x"),
            Decision::Allow(None)
        );
        let id = signed_in(&w, "alice", t0);
        let Decision::Allow(Some(identity)) = decide_at(&mut w, t0 + 1, &id, "/public/x") else {
            panic!("a bypassed path still names the signed-in user");
        };
        assert_eq!(identity.user, "alice");
    }

    /// Issue 13.7: the Basic cache sees a new htpasswd line too (it lives outside the
    /// directory record the cache compares), at the next refresh.
    #[test]
    fn a_new_htpasswd_line_ends_a_cached_basic_login() {
        let mut w = World::new();
        w.linger = 30;
        w.cache = BasicCache::with_refresh(0);
        let code = with_token(&w);
        w.directory
            .update("alice", &mut |u| {
                u.first_factor = FirstFactor::External;
                true
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let set = |pw: &str| std::fs::write(&file, format!("alice:{}\n", bcrypt::hash(pw, 4).unwrap())).unwrap();
        set("pw");
        let source = crate::password::ExternalSource::Htpasswd(file.clone());
        let t0 = 1_700_000_010;
        let secret = format!("pw{}", code(t0));
        let decide = |w: &World| {
            let mut a = w.authorizer();
            a.gate.external = Some(&source);
            a.decide(&AccessRequest {
                method: "GET",
                host: "app.example.com",
                path: "/app/",
                client_ip: IpAddr::from([127, 0, 0, 1]),
                session: None,
                basic: Some(BasicCredentials {
                    user: "alice".into(),
                    secret: Zeroizing::new(secret.clone()),
                }),
            })
            .unwrap()
        };
        w.clock = FixedClock(t0);
        assert!(matches!(decide(&w).0, Decision::Allow(Some(_))));
        w.clock = FixedClock(t0 + 1);
        let (d, event) = decide(&w);
        assert!(
            matches!(d, Decision::Allow(Some(_))) && event.is_none(),
            "a cache hit, line unchanged"
        );
        set("new pw");
        w.clock = FixedClock(t0 + 2);
        let (d, event) = decide(&w);
        assert_eq!(d, Decision::Challenge);
        assert_eq!(event.and_then(|e| e.failure), Some("wrong_password"));
    }

    #[test]
    fn a_changed_password_ends_a_cached_basic_login_as_a_wrong_password() {
        let (mut w, t0, ok, _) = basic_login(0);
        w.directory
            .update("alice", &mut |u| {
                u.first_factor = FirstFactor::Pin(Zeroizing::new("1234".into()));
                true
            })
            .unwrap();
        let (d, event) = basic_at(&mut w, t0 + 1, "alice", &ok);
        assert_eq!(d, Decision::Challenge);
        assert_eq!(event.and_then(|e| e.failure), Some("wrong_password"));
    }

    #[test]
    fn the_password_step_tells_unknown_wrong_locked_and_banned_apart() {
        let w = World::new();
        let ip = IpAddr::from([192, 0, 2, 1]);
        let step = |user: &str, pw: &str| w.authorizer().password_step(user, pw, ip).unwrap();
        assert!(matches!(step("alice", "").0, StepResult::Passed(u) if u.name == "alice"));
        assert_eq!(step("alice", "x").0, StepResult::Refused(Rejection::WrongPassword));
        assert_eq!(step("mallory", "").0, StepResult::Refused(Rejection::UnknownUser));
        assert_eq!(step("locked", "").0, StepResult::Refused(Rejection::Locked));
        assert_eq!(step("locked", "x").0, StepResult::Refused(Rejection::WrongPassword));
        // The fifth failure from one address bans it; its event says so, then all is refused.
        let (_, fifth) = step("alice", "x");
        assert_eq!(
            (fifth.method, fifth.failure),
            ("portal-password", Some("wrong_password"))
        );
        assert!(fifth.banned, "the address's fifth failure starts a ban");
        assert_eq!(step("alice", "").0, StepResult::Banned);
    }

    #[test]
    fn a_ban_of_the_address_alone_is_reported() {
        let w = World::new();
        let ip = IpAddr::from([192, 0, 2, 2]);
        let events: Vec<AuthEvent> = ["u1", "u2", "u3", "u4", "u5"]
            .iter()
            .map(|u| w.authorizer().password_step(u, "x", ip).unwrap().1)
            .collect();
        assert!(events[..4].iter().all(|e| !e.banned));
        assert!(events[4].banned, "the address is banned though no user is");
    }

    #[test]
    fn a_lingering_code_does_not_clear_the_users_failures() {
        let (mut w, t0, ok, _) = basic_login(0);
        // Four wrong codes for alice, each from another address (so no address is banned).
        for i in 0..4u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            let (r, e) = w.authorizer().code_step("alice", "000000", ip).unwrap();
            assert!(matches!(r, StepResult::Refused(_)) && !e.banned);
        }
        // The resent code lingers (no new proof of the token), so the count stands...
        w.cache.clear();
        let (d, _) = basic_at(&mut w, t0 + 1, "alice", &ok);
        assert!(matches!(d, Decision::Allow(_)), "{d:?}");
        // ...and the fifth wrong code bans alice.
        let (_, e) = w
            .authorizer()
            .code_step("alice", "000000", IpAddr::from([198, 51, 100, 9]))
            .unwrap();
        assert!(e.banned, "the linger hit must not have reset alice's failures");
    }

    #[test]
    fn app_passwords_do_not_open_a_locked_account_or_a_banned_address() {
        let mut w = World::new();
        w.linger = 300;
        let hash = crate::password::hash_password("app-secret-2").unwrap();
        for name in ["alice", "locked"] {
            w.directory
                .update(name, &mut |u| {
                    u.app_passwords.push(crate::model::AppPassword {
                        label: "phone".into(),
                        hash: hash.clone(),
                        created: 0,
                    });
                    true
                })
                .unwrap();
        }
        let t0 = 1_700_000_000;
        assert_eq!(basic_at(&mut w, t0, "locked", "app-secret-2").0, Decision::Challenge);
        for i in 0..5 {
            let (d, _) = basic_at(&mut w, t0 + 1 + i, "alice", "wrong-secret");
            assert_eq!(d, Decision::Challenge);
        }
        assert_eq!(
            basic_at(&mut w, t0 + 10, "alice", "app-secret-2").0,
            Decision::Challenge,
            "banned: even the right app password is refused"
        );
    }
}

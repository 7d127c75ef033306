//! Login sessions: an in-memory table keyed by the SHA-256 of the cookie value, written
//! through to an optional backend so sessions survive a restart.

use crate::store::StoreError;
use packed::Packed;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

mod packed;

/// Length of a bearer token (session cookie, invite link): 32 bytes in base64url, no padding.
pub const TOKEN_LEN: usize = 43;

/// `last_seen` is written to the backend only when it moved by at least this many seconds,
/// so the hot path rarely touches the disk.
pub const TOUCH_INTERVAL: i64 = 60;

/// A fresh bearer token: 256 random bits, base64url without padding.
pub fn random_token() -> Zeroizing<String> {
    Zeroizing::new(data_encoding::BASE64URL_NOPAD.encode(&crate::random::bytes(32)))
}

/// A fresh bearer token with the hash to store it under.
pub fn new_token() -> (Zeroizing<String>, [u8; 32]) {
    let t = random_token();
    let h = digest(&t);
    (t, h)
}

/// The SHA-256 under which a bearer token is stored, or `None` if `token` cannot be one
/// (wrong length or alphabet), so junk cookies cost no hashing.
pub fn token_hash(token: &str) -> Option<[u8; 32]> {
    let b = token.as_bytes();
    if b.len() != TOKEN_LEN || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
        return None;
    }
    Some(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How far a session's user has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Named only: a user without a first factor (no password, no PIN) is past the login
    /// page but has proven nothing yet. A login in progress that satisfies no rule.
    Named,
    /// The first factor (password) only: a login in progress, or a one_factor login.
    OneFactor,
    /// Password and one-time code.
    TwoFactor,
}

impl Level {
    /// A stable label for storage and logs.
    pub fn label(self) -> &'static str {
        match self {
            Level::Named => "named",
            Level::OneFactor => "one_factor",
            Level::TwoFactor => "two_factor",
        }
    }

    /// The level a `label` names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "named" => Some(Level::Named),
            "one_factor" => Some(Level::OneFactor),
            "two_factor" => Some(Level::TwoFactor),
            _ => None,
        }
    }
}

/// What a session knows about its user (copied at login so the hot path needs no directory lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Login name.
    pub user: String,
    /// Group names, for access rules.
    pub groups: Vec<String>,
    /// Display name, for headers passed upstream.
    pub display_name: Option<String>,
    /// E-mail address, for headers passed upstream.
    pub email: Option<String>,
    /// How far the user has authenticated.
    pub level: Level,
    /// When the session was created (unix seconds); the absolute limit counts from here.
    pub created: i64,
    /// The last request seen (unix seconds); the idle limit counts from here.
    pub last_seen: i64,
    /// The address that logged in, checked when `SessionPolicy::bind_ip` is on.
    pub client_ip: Option<IpAddr>,
    /// [`crate::FirstFactor::fingerprint`] of the first factor the user signed in with: a
    /// session outlives no password change. `None` (a session stored by an older version)
    /// ends at its first refresh.
    pub factor: Option<[u8; 16]>,
}

/// The cookie value: 256 random bits, base64url without padding (43 chars). Only its SHA-256 is stored anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(Zeroizing<String>);

impl SessionId {
    /// The value to put in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(redacted)")
    }
}

/// How long sessions live and whether they are tied to the login address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Seconds from creation after which a session ends whatever its use (default 12 h).
    pub absolute: u64,
    /// Seconds without a request after which a session ends (default 30 min).
    pub idle: u64,
    /// Refuse a session from another client address than the one that logged in (default off:
    /// mobile clients and dual-stack hosts change address legitimately).
    pub bind_ip: bool,
    /// Seconds between re-reading a signed-in user from the directory, so that a lock, a
    /// removal or a change of groups reaches live sessions (0 = on every request).
    pub refresh: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        // NIST 800-63B AAL2 reauthentication limits.
        SessionPolicy {
            absolute: 12 * 3600,
            idle: 30 * 60,
            bind_ip: false,
            refresh: 60,
        }
    }
}

/// What changed elsewhere (another node, the CLI), as a backend with messages reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation<'a> {
    /// The session under this hash ended.
    Session(&'a [u8; 32]),
    /// This user changed (locked, removed, a new password, token or group): read it again
    /// before trusting a copy of it, in a session or in the Basic cache.
    User(&'a str),
    /// Messages may have been missed (a lost connection): forget every cached copy.
    All,
}

/// What an administrator's change to a user means for that user's live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// Locked, removed or given a new password: every session of theirs ends, everywhere.
    Ends,
    /// Anything else (tokens, scratch codes, app passwords, an unlock): every process reads
    /// the user again before it trusts a cached copy (a session, a Basic credential).
    Reread,
}

impl UserChange {
    /// Records the change in the session store, which tells every process watching it.
    pub fn announce(self, sessions: &dyn SessionBackend, user: &str) -> Result<(), StoreError> {
        match self {
            UserChange::Ends => sessions.delete_user(user),
            UserChange::Reread => sessions.announce_user(user),
        }
    }
}

/// What a backend calls when something changed elsewhere.
pub type Revoked = Arc<dyn Fn(Revocation<'_>) + Send + Sync>;

/// Persistence behind the in-memory table (SQLite by default; None = memory only).
pub trait SessionBackend: Send + Sync {
    /// Sessions to restore at start-up; `Sessions` drops any its policy says have expired.
    fn load(&self, now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError>;
    /// The session under `hash`, if held: a session made by another process or node is
    /// found here (read-through), and one revoked elsewhere is gone.
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;
    /// Stores (or replaces) the session under `hash`.
    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError>;
    /// Records a later `last_seen` for the session under `hash`.
    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError>;
    /// Deletes the session under `hash`, if any.
    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError>;
    /// Deletes every session of `user`.
    fn delete_user(&self, user: &str) -> Result<(), StoreError>;
    /// Deletes sessions created at or before `now_minus_absolute` or last seen at or before `now_minus_idle`.
    fn purge(&self, now_minus_absolute: i64, now_minus_idle: i64) -> Result<(), StoreError>;
    /// Whether the store answers now (for `/api/health`); a local file always does.
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Tells every process watching this store that `user` changed, so that each reads it
    /// again at once. A backend without messages does nothing: the change then reaches
    /// each process within the refresh interval.
    fn announce_user(&self, user: &str) -> Result<(), StoreError> {
        let _ = user;
        Ok(())
    }
    /// Calls `revoked` whenever sessions end or users change elsewhere, so that cached
    /// copies go at once. A backend without such messages does nothing: revocations then
    /// reach this process within the refresh interval.
    fn watch(&self, revoked: Revoked) -> Result<(), StoreError> {
        let _ = revoked;
        Ok(())
    }
}

impl<T: SessionBackend + ?Sized> SessionBackend for Arc<T> {
    fn load(&self, now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
        (**self).load(now)
    }
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        (**self).get(hash)
    }
    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
        (**self).put(hash, s)
    }
    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
        (**self).touch(hash, last_seen)
    }
    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        (**self).delete(hash)
    }
    fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        (**self).delete_user(user)
    }
    fn purge(&self, now_minus_absolute: i64, now_minus_idle: i64) -> Result<(), StoreError> {
        (**self).purge(now_minus_absolute, now_minus_idle)
    }
    fn ping(&self) -> Result<(), StoreError> {
        (**self).ping()
    }
    fn announce_user(&self, user: &str) -> Result<(), StoreError> {
        (**self).announce_user(user)
    }
    fn watch(&self, revoked: Revoked) -> Result<(), StoreError> {
        (**self).watch(revoked)
    }
}

/// One live session: what it knows is fixed at login; only the activity times move, and
/// atomically, so `get` never needs the write lock.
struct Entry {
    session: Packed,
    last_seen: AtomicI64,
    /// The `last_seen` the backend holds.
    persisted: AtomicI64,
    /// When the user was last read from the directory (login, or a refresh).
    verified: AtomicI64,
}

impl Entry {
    /// An entry whose user was read from the directory at `verified`.
    fn new(session: Session, verified: i64) -> Self {
        Entry {
            last_seen: AtomicI64::new(session.last_seen),
            persisted: AtomicI64::new(session.last_seen),
            verified: AtomicI64::new(verified),
            session: Packed::new(&session),
        }
    }

    fn expired(&self, policy: &SessionPolicy, now: i64) -> bool {
        let last_seen = self.last_seen.load(Ordering::Relaxed);
        now.saturating_sub(self.session.created) >= secs(policy.absolute)
            || now.saturating_sub(last_seen) >= secs(policy.idle)
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// The live sessions, in memory, with write-through persistence.
pub struct Sessions {
    policy: SessionPolicy,
    backend: Option<Box<dyn SessionBackend>>,
    /// Shared with the backend's revocation watcher.
    table: Arc<RwLock<HashMap<[u8; 32], Arc<Entry>>>>,
    /// Set when `touch_error` holds something, so `get` checks a flag, not a mutex.
    failed: AtomicBool,
    touch_error: Mutex<Option<StoreError>>,
}

impl Sessions {
    /// Whether the session store (if any) answers now.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.backend.as_ref().map_or(Ok(()), |b| b.ping())
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A session table under `policy`, restoring the unexpired sessions `backend` holds.
    pub fn new(policy: SessionPolicy, backend: Option<Box<dyn SessionBackend>>, now: i64) -> Result<Self, StoreError> {
        Self::watching(policy, backend, now, None)
    }

    /// [`Sessions::new`], passing every revocation the backend reports on to `also` after
    /// the table has applied it (the Engine's Basic cache listens there).
    pub fn watching(
        policy: SessionPolicy,
        backend: Option<Box<dyn SessionBackend>>,
        now: i64,
        also: Option<Revoked>,
    ) -> Result<Self, StoreError> {
        let mut table = HashMap::new();
        if let Some(b) = &backend {
            let (abs, idle) = Self::purge_bounds(&policy, now);
            b.purge(abs, idle)?;
            for (hash, s) in b.load(now)? {
                // Restored sessions have their user read again on first use.
                let e = Entry::new(s, i64::MIN);
                if !e.expired(&policy, now) {
                    table.insert(hash, Arc::new(e));
                }
            }
        }
        let table = Arc::new(RwLock::new(table));
        if let Some(b) = &backend {
            // Weak: the watcher must not keep a dropped table alive.
            let watched = Arc::downgrade(&table);
            b.watch(Arc::new(move |what: Revocation<'_>| {
                if let Some(table) = watched.upgrade() {
                    match what {
                        Revocation::Session(h) => {
                            table.write().unwrap_or_else(|p| p.into_inner()).remove(h);
                        }
                        // Due at once: the next request reads the user again.
                        Revocation::User(name) => {
                            let t = table.read().unwrap_or_else(|p| p.into_inner());
                            for e in t.values().filter(|e| e.session.user() == name) {
                                e.verified.store(i64::MIN, Ordering::Relaxed);
                            }
                        }
                        Revocation::All => table.write().unwrap_or_else(|p| p.into_inner()).clear(),
                    }
                }
                if let Some(also) = &also {
                    also(what);
                }
            }))?;
        }
        Ok(Sessions {
            policy,
            backend,
            table,
            failed: AtomicBool::new(false),
            touch_error: Mutex::new(None),
        })
    }

    /// The rules in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Whether the sessions live in this table alone (no store keeps them).
    pub fn in_memory_only(&self) -> bool {
        self.backend.is_none()
    }

    /// Takes the sessions of `old` into this table (a reloaded configuration keeps the
    /// memory-only sessions of the one before it; the new rules apply to them from now).
    pub fn take_from(&self, old: &Sessions) {
        let entries: Vec<_> = old.read().iter().map(|(k, v)| (*k, v.clone())).collect();
        self.write().extend(entries);
    }

    // A panic elsewhere cannot leave the map half-updated (each change is one insert or
    // remove), so a poisoned lock is still sound to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], Arc<Entry>>> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], Arc<Entry>>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Backend cut-offs: the backend's `last_seen` may lag ours by up to `TOUCH_INTERVAL`,
    /// so it is only trusted to be idle beyond that margin.
    fn purge_bounds(policy: &SessionPolicy, now: i64) -> (i64, i64) {
        (
            now.saturating_sub(secs(policy.absolute)),
            now.saturating_sub(secs(policy.idle)).saturating_sub(TOUCH_INTERVAL),
        )
    }

    /// Stores a new session and returns the cookie value that names it.
    pub fn create(&self, s: Session) -> Result<SessionId, StoreError> {
        let (id, hash) = new_token();
        if let Some(b) = &self.backend {
            b.put(&hash, &s)?;
        }
        let verified = s.last_seen;
        self.write().insert(hash, Arc::new(Entry::new(s, verified)));
        Ok(SessionId(id))
    }

    /// Records a fresh read of the session's user: its groups, display name and e-mail as
    /// the directory has them now (persisted when they changed).
    pub fn refreshed(
        &self,
        id: &str,
        now: i64,
        groups: &[String],
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(hash) = token_hash(id) else {
            return Ok(());
        };
        let Some(entry) = self.read().get(&hash).cloned() else {
            return Ok(());
        };
        entry.verified.fetch_max(now, Ordering::Relaxed);
        if entry.session.same_profile(groups, display_name, email) {
            return Ok(());
        }
        let mut changed = entry.session.unpack(entry.last_seen.load(Ordering::Relaxed));
        changed.groups = groups.to_vec();
        changed.display_name = display_name.map(str::to_string);
        changed.email = email.map(str::to_string);
        if let Some(b) = &self.backend {
            b.put(&hash, &changed)?;
        }
        let replacement = Arc::new(Entry::new(changed, now));
        replacement
            .persisted
            .store(entry.persisted.load(Ordering::Relaxed), Ordering::Relaxed);
        let mut t = self.write();
        // Only if nobody revoked or replaced it meanwhile.
        if t.get(&hash).is_some_and(|cur| Arc::ptr_eq(cur, &entry)) {
            t.insert(hash, replacement);
        }
        Ok(())
    }

    /// The session for a cookie value if valid now (absolute and idle limits, IP binding when on); slides last_seen.
    /// A store that cannot be read refuses the session here (the error is kept for
    /// `take_background_error`); [`Sessions::get_and_due`] returns it instead.
    pub fn get(&self, id: &str, now: i64, client_ip: Option<IpAddr>) -> Option<Session> {
        match self.get_and_due(id, now, client_ip) {
            Ok(found) => found.map(|(s, _)| s),
            Err(e) => {
                self.record_error(e);
                None
            }
        }
    }

    /// `get`, and whether the session's user is due to be read again from the directory
    /// (`SessionPolicy::refresh` seconds since the last read; see `refreshed`).
    /// A session this table does not hold (made elsewhere), or holds as expired (it may
    /// have been used elsewhere since), is looked up in the backend; a backend that cannot
    /// be read is an error (an outage is a refusal the caller reports as such, never "not
    /// signed in", which would send everyone to the login page).
    pub fn get_and_due(
        &self,
        id: &str,
        now: i64,
        client_ip: Option<IpAddr>,
    ) -> Result<Option<(Session, bool)>, StoreError> {
        let Some(hash) = token_hash(id) else {
            return Ok(None);
        };
        let cached = self.read().get(&hash).cloned();
        let (entry, just_read) = match cached {
            Some(e) if !e.expired(&self.policy, now) => (e, false),
            stale => match self.read_through(&hash, stale.as_ref(), now)? {
                Some(e) => (e, true),
                None => return Ok(None),
            },
        };
        if self.policy.bind_ip && entry.session.client_ip.is_some() && entry.session.client_ip != client_ip {
            // Not removed: the rightful owner may still be using it from the bound address.
            return Ok(None);
        }
        let last_seen = entry.last_seen.fetch_max(now, Ordering::Relaxed).max(now);
        let persisted = entry.persisted.load(Ordering::Relaxed);
        if last_seen - persisted >= TOUCH_INTERVAL
            // Only the thread that wins the exchange writes, so a burst of requests makes one write.
            && entry
                .persisted
                .compare_exchange(persisted, last_seen, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && let Some(b) = &self.backend
            && let Err(e) = b.touch(&hash, last_seen)
        {
            self.record_error(e);
        }
        let s = entry.session.unpack(last_seen);
        let due = now.saturating_sub(entry.verified.load(Ordering::Relaxed)) >= secs(self.policy.refresh);
        // When the user is due to be read again, the session is too: a revocation made by
        // another process or node takes effect within the refresh interval.
        if due
            && !just_read
            && let Some(b) = &self.backend
            && b.get(&hash)?.is_none()
        {
            self.forget_if_same(&hash, &entry);
            return Ok(None);
        }
        Ok(Some((s, due)))
    }

    /// Looks `hash` up in the backend in place of `stale` (absent or expired here): a live
    /// copy there replaces ours, with its user due to be read again; an expired one is deleted.
    fn read_through(
        &self,
        hash: &[u8; 32],
        stale: Option<&Arc<Entry>>,
        now: i64,
    ) -> Result<Option<Arc<Entry>>, StoreError> {
        let Some(b) = &self.backend else {
            if let Some(stale) = stale {
                self.remove_if_same(hash, stale);
            }
            return Ok(None);
        };
        let Some(session) = b.get(hash)? else {
            if let Some(stale) = stale {
                self.forget_if_same(hash, stale);
            }
            return Ok(None);
        };
        let fresh = Arc::new(Entry::new(session, i64::MIN));
        if fresh.expired(&self.policy, now) {
            match stale {
                Some(stale) => self.remove_if_same(hash, stale),
                None => {
                    if let Err(e) = b.delete(hash) {
                        self.record_error(e);
                    }
                }
            }
            return Ok(None);
        }
        let mut t = self.write();
        // Only over what we read as stale (or nothing): a concurrent refresh or revoke wins.
        let ours = match (t.get(hash), stale) {
            (None, None) => true,
            (Some(cur), Some(stale)) => Arc::ptr_eq(cur, stale),
            _ => false,
        };
        if ours {
            t.insert(*hash, fresh.clone());
            Ok(Some(fresh))
        } else {
            Ok(t.get(hash).filter(|e| !e.expired(&self.policy, now)).cloned())
        }
    }

    /// Drops a cached entry the backend no longer holds (revoked elsewhere), unless replaced meanwhile.
    fn forget_if_same(&self, hash: &[u8; 32], entry: &Arc<Entry>) {
        let mut t = self.write();
        if t.get(hash).is_some_and(|cur| Arc::ptr_eq(cur, entry)) {
            t.remove(hash);
        }
    }

    /// The last backend failure met by `get` (which cannot fail), for the caller to log; clears it.
    pub fn take_background_error(&self) -> Option<StoreError> {
        if !self.failed.swap(false, Ordering::Relaxed) {
            return None;
        }
        self.touch_error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn record_error(&self, e: StoreError) {
        *self.touch_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Removes an expired entry unless another thread replaced it meanwhile.
    fn remove_if_same(&self, hash: &[u8; 32], entry: &Arc<Entry>) {
        let removed = {
            let mut t = self.write();
            match t.get(hash) {
                Some(cur) if Arc::ptr_eq(cur, entry) => t.remove(hash).is_some(),
                _ => false,
            }
        };
        if removed
            && let Some(b) = &self.backend
            && let Err(e) = b.delete(hash)
        {
            self.record_error(e);
        }
    }

    /// Replaces `old` by a new id carrying `s` (every login step gets a fresh id: no fixation).
    pub fn rotate(&self, old: Option<&str>, s: Session) -> Result<SessionId, StoreError> {
        // The old id dies first: if that fails, no second live session exists.
        if let Some(old) = old {
            self.revoke(old)?;
        }
        self.create(s)
    }

    /// Ends the session named by a cookie value; false if there was none.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let Some(hash) = token_hash(id) else {
            return Ok(false);
        };
        let cached = self.read().contains_key(&hash);
        // The store first: were it kept there, another table (or ours, reading through)
        // would find the session again. (A watching backend may drop our copy meanwhile.)
        if let Some(b) = &self.backend {
            b.delete(&hash)?;
        }
        Ok(self.write().remove(&hash).is_some() || cached)
    }

    /// Ends every session of `user` (logout everywhere, user removed or locked); returns how many.
    pub fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        // Counted first: a watching backend may drop our copies while it deletes.
        let held = self.read().values().filter(|e| e.session.user() == user).count();
        if let Some(b) = &self.backend {
            b.delete_user(user)?;
        }
        self.write().retain(|_, e| e.session.user() != user);
        Ok(held)
    }

    /// Drops every expired session from memory and the backend; returns how many were in memory.
    pub fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        let removed = {
            let mut t = self.write();
            let before = t.len();
            t.retain(|_, e| !e.expired(&self.policy, now));
            before - t.len()
        };
        if let Some(b) = &self.backend {
            let (abs, idle) = Self::purge_bounds(&self.policy, now);
            b.purge(abs, idle)?;
        }
        Ok(removed)
    }

    /// Sessions in memory (some may have expired but not been purged yet).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

/// A `SessionBackend` in memory, for tests and for sharing one table between `Sessions`
/// instances in a process; it also counts writes.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    rows: Mutex<HashMap<[u8; 32], Session>>,
    touches: AtomicI64,
}

impl MemoryBackend {
    /// How many times `touch` was called.
    pub fn touches(&self) -> i64 {
        self.touches.load(Ordering::Relaxed)
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionBackend for MemoryBackend {
    fn load(&self, _now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
        Ok(self.rows().iter().map(|(h, s)| (*h, s.clone())).collect())
    }
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        Ok(self.rows().get(hash).cloned())
    }
    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
        self.rows().insert(*hash, s.clone());
        Ok(())
    }
    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
        self.touches.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.rows().get_mut(hash) {
            s.last_seen = s.last_seen.max(last_seen);
        }
        Ok(())
    }
    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.rows().remove(hash);
        Ok(())
    }
    fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        self.rows().retain(|_, s| s.user != user);
        Ok(())
    }
    fn purge(&self, now_minus_absolute: i64, now_minus_idle: i64) -> Result<(), StoreError> {
        self.rows()
            .retain(|_, s| s.created > now_minus_absolute && s.last_seen > now_minus_idle);
        Ok(())
    }
}

/// The conformance suite every [`SessionBackend`] passes (memory, SQLite; Redis next).
/// `open` returns a new handle onto one store, empty at first, as another process or node
/// would open it: a session made through one handle is found through another.
#[allow(clippy::unwrap_used)] // a conformance check: a failed step is a failed test
pub fn check_session_backend_contract(open: &dyn Fn() -> Box<dyn SessionBackend>) {
    const T: i64 = 1_700_000_000;
    let session = |user: &str, created: i64| Session {
        user: user.into(),
        // A directory server's group DN holds commas: it comes back whole.
        groups: vec![
            "ops".into(),
            "wiki".into(),
            "cn=a\\,b,ou=groups,dc=example,dc=com".into(),
        ],
        display_name: Some("Ann A.".into()),
        email: Some("ann@example.org".into()),
        level: Level::TwoFactor,
        created,
        last_seen: created,
        client_ip: Some("2001:db8::7".parse().unwrap()),
        factor: Some([7; 16]),
    };
    let b = open();
    assert!(b.load(T).unwrap().is_empty(), "starts empty");
    let (h1, h2, h3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    assert!(b.get(&h1).unwrap().is_none());
    let ann = session("ann", T);
    b.put(&h1, &ann).unwrap();
    assert_eq!(b.get(&h1).unwrap().as_ref(), Some(&ann), "every field comes back");
    let one_factor = Session {
        level: Level::OneFactor,
        groups: Vec::new(),
        display_name: None,
        email: None,
        client_ip: None,
        factor: None,
        ..session("bob", T)
    };
    b.put(&h2, &one_factor).unwrap();
    assert_eq!(b.get(&h2).unwrap().as_ref(), Some(&one_factor), "empty fields too");
    // `touch` only moves last_seen forward: concurrent requests may write out of order.
    b.touch(&h1, T + 100).unwrap();
    b.touch(&h1, T + 50).unwrap();
    assert_eq!(b.get(&h1).unwrap().unwrap().last_seen, T + 100);
    b.touch(&h3, T + 100).unwrap();
    assert!(
        b.get(&h3).unwrap().is_none(),
        "touching an unknown session creates none"
    );
    assert_eq!(b.load(T).unwrap().len(), 2);
    b.delete_user("ann").unwrap();
    assert!(b.get(&h1).unwrap().is_none());
    assert!(b.get(&h2).unwrap().is_some(), "another user's session stays");
    b.delete(&h2).unwrap();
    b.delete(&h2).unwrap();
    assert!(b.get(&h2).unwrap().is_none());
    // Purge: created at or before the first bound, or last seen at or before the second.
    b.put(&h1, &session("old", T - 100)).unwrap();
    b.put(
        &h2,
        &Session {
            last_seen: T - 50,
            ..session("idle", T - 60)
        },
    )
    .unwrap();
    b.put(&h3, &session("fresh", T)).unwrap();
    b.purge(T - 100, T - 50).unwrap();
    let left: Vec<String> = b.load(T).unwrap().into_iter().map(|(_, s)| s.user).collect();
    assert_eq!(left, ["fresh"]);
    b.delete(&h3).unwrap();

    // Two tables on two handles, as two gateways behind one load balancer.
    let policy = SessionPolicy::default();
    let a = Sessions::new(policy, Some(open()), T).unwrap();
    let other = Sessions::new(policy, Some(open()), T).unwrap();
    let id = a.create(session("ann", T)).unwrap();
    let (found, due) = other.get_and_due(id.as_str(), T + 1, None).unwrap().unwrap();
    assert_eq!(found.user, "ann", "a session made elsewhere is found");
    assert!(due, "and its user is read again before it is trusted");
    other.refreshed(id.as_str(), T + 1, &found.groups, None, None).unwrap();
    assert!(a.revoke(id.as_str()).unwrap());
    assert!(
        other.get(id.as_str(), T + 1 + secs(policy.refresh), None).is_none(),
        "a revocation elsewhere holds within the refresh interval"
    );
    // Activity on one gateway keeps the session alive on the other past its idle limit.
    let id = a.create(session("ann", T)).unwrap();
    assert!(other.get(id.as_str(), T, None).is_some());
    for t in (T..=T + secs(policy.idle) + 120).step_by(60) {
        assert!(a.get(id.as_str(), t, None).is_some());
    }
    assert!(
        other.get(id.as_str(), T + secs(policy.idle) + 120, None).is_some(),
        "idle here, in use there: still valid"
    );
    assert!(
        a.get(id.as_str(), T + secs(policy.idle) + 121, None).is_some(),
        "and not deleted"
    );
    assert!(other.take_background_error().is_none() && a.take_background_error().is_none());
    // A session expired everywhere is refused and deleted.
    let late = T + secs(policy.absolute) + 1;
    assert!(other.get(id.as_str(), late, None).is_none());
    assert!(a.get(id.as_str(), late, None).is_none());
    assert!(open().load(late).unwrap().is_empty(), "deleted from the store");
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn session(user: &str, now: i64) -> Session {
        Session {
            user: user.into(),
            groups: vec!["ops".into()],
            display_name: Some("Alice A.".into()),
            email: None,
            level: Level::TwoFactor,
            created: now,
            last_seen: now,
            client_ip: Some("192.0.2.1".parse().unwrap()),
            factor: Some([1; 16]),
        }
    }

    fn table(policy: SessionPolicy) -> Sessions {
        Sessions::new(policy, None, T0).unwrap()
    }

    #[test]
    fn a_users_directory_entry_is_read_again_after_the_refresh_interval() {
        let s = table(SessionPolicy::default());
        let id = s.create(session("alice", T0)).unwrap();
        let due = |t| {
            s.get_and_due(id.as_str(), t, Some("192.0.2.1".parse().unwrap()))
                .unwrap()
                .unwrap()
                .1
        };
        assert!(!due(T0 + 59));
        assert!(due(T0 + 60));
        let groups = vec!["ops".to_string(), "admins".to_string()];
        s.refreshed(id.as_str(), T0 + 60, &groups, Some("Alice A."), None)
            .unwrap();
        assert!(!due(T0 + 61));
        let now = s.get(id.as_str(), T0 + 61, Some("192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(now.groups, groups);
        assert_eq!(now.created, T0, "a refresh keeps the session's limits");
        assert!(s.get_and_due("not a session id", T0 + 1000, None).unwrap().is_none());
    }

    #[test]
    fn levels_are_stored_by_label_and_read_back() {
        for (level, label) in [
            (Level::Named, "named"),
            (Level::OneFactor, "one_factor"),
            (Level::TwoFactor, "two_factor"),
        ] {
            assert_eq!(level.label(), label);
            assert_eq!(Level::parse(label), Some(level));
        }
        assert_eq!(Level::parse("Two_Factor"), None);
        assert_eq!(Level::parse(""), None);
    }

    #[test]
    fn ids_are_43_base64url_chars_and_redacted() {
        let s = table(SessionPolicy::default());
        let id = s.create(session("alice", T0)).unwrap();
        assert_eq!(id.as_str().len(), TOKEN_LEN);
        assert!(token_hash(id.as_str()).is_some());
        assert_eq!(format!("{id:?}"), "SessionId(redacted)");
        let other = s.create(session("alice", T0)).unwrap();
        assert_ne!(id, other);
    }

    #[test]
    fn malformed_cookies_are_refused() {
        let s = table(SessionPolicy::default());
        let id = s.create(session("alice", T0)).unwrap();
        let mut bad = id.as_str().to_string();
        bad.replace_range(0..1, "+");
        for junk in ["", "x", &bad, &format!("{}=", id.as_str()), &id.as_str()[1..]] {
            assert_eq!(token_hash(junk), None, "{junk}");
            assert!(s.get(junk, T0, None).is_none());
        }
        assert!(!s.revoke("junk").unwrap());
    }

    #[test]
    fn absolute_expiry() {
        let p = SessionPolicy {
            absolute: 3600,
            idle: 600,
            bind_ip: false,
            refresh: 60,
        };
        let s = table(p);
        let id = s.create(session("alice", T0)).unwrap();
        // Kept busy, it still ends at the absolute limit.
        let mut t = T0;
        while t < T0 + 3600 - 300 {
            t += 300;
            assert!(s.get(id.as_str(), t, None).is_some(), "at {t}");
        }
        assert!(s.get(id.as_str(), T0 + 3599, None).is_some());
        assert!(s.get(id.as_str(), T0 + 3600, None).is_none());
        assert_eq!(s.len(), 0, "an expired session found by get is removed");
    }

    #[test]
    fn idle_expiry_and_sliding_refresh() {
        let p = SessionPolicy {
            absolute: 12 * 3600,
            idle: 1800,
            bind_ip: false,
            refresh: 60,
        };
        let s = table(p);
        let idle = s.create(session("alice", T0)).unwrap();
        let busy = s.create(session("bob", T0)).unwrap();
        assert!(s.get(idle.as_str(), T0 + 1799, None).is_some());
        // Each request slides the idle limit, so a busy session outlives it many times over.
        for k in 1..=10 {
            let got = s.get(busy.as_str(), T0 + k * 1000, None).unwrap();
            assert_eq!(got.last_seen, T0 + k * 1000);
        }
        assert!(s.get(busy.as_str(), T0 + 10_000 + 1799, None).is_some());
        assert!(s.get(idle.as_str(), T0 + 1799 + 1800, None).is_none());
        assert!(s.get(busy.as_str(), T0 + 10_000 + 1799 + 1800, None).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn an_older_timestamp_does_not_move_last_seen_back() {
        let s = table(SessionPolicy::default());
        let id = s.create(session("alice", T0)).unwrap();
        s.get(id.as_str(), T0 + 100, None).unwrap();
        assert_eq!(s.get(id.as_str(), T0 + 50, None).unwrap().last_seen, T0 + 100);
    }

    #[test]
    fn bind_ip_refuses_another_address() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let bound = table(SessionPolicy {
            bind_ip: true,
            ..SessionPolicy::default()
        });
        let id = bound.create(session("alice", T0)).unwrap();
        assert!(bound.get(id.as_str(), T0, Some(other)).is_none());
        assert!(bound.get(id.as_str(), T0, None).is_none());
        assert!(bound.get(id.as_str(), T0, Some(ip)).is_some(), "the owner keeps it");
        let free = table(SessionPolicy::default());
        let id = free.create(session("alice", T0)).unwrap();
        assert!(free.get(id.as_str(), T0, Some(other)).is_some());
    }

    #[test]
    fn rotate_kills_the_old_id() {
        let s = table(SessionPolicy::default());
        let mut one = session("alice", T0);
        one.level = Level::OneFactor;
        let first = s.rotate(None, one).unwrap();
        let second = s.rotate(Some(first.as_str()), session("alice", T0 + 5)).unwrap();
        assert_ne!(first, second);
        assert!(s.get(first.as_str(), T0 + 6, None).is_none());
        assert_eq!(s.get(second.as_str(), T0 + 6, None).unwrap().level, Level::TwoFactor);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn revoke_and_revoke_user() {
        let s = table(SessionPolicy::default());
        let a1 = s.create(session("alice", T0)).unwrap();
        let a2 = s.create(session("alice", T0)).unwrap();
        let b = s.create(session("bob", T0)).unwrap();
        // A copy of the cookie (another browser, a thief) is the same bearer token.
        let copied = a1.as_str().to_string();
        assert!(s.get(&copied, T0 + 1, None).is_some());
        assert!(s.revoke(a1.as_str()).unwrap());
        assert!(!s.revoke(a1.as_str()).unwrap());
        assert!(s.get(&copied, T0 + 2, None).is_none());
        assert!(s.get(a2.as_str(), T0 + 2, None).is_some());
        assert_eq!(s.revoke_user("alice").unwrap(), 1);
        assert!(s.get(a2.as_str(), T0 + 3, None).is_none());
        assert!(s.get(b.as_str(), T0 + 3, None).is_some());
        assert_eq!(s.revoke_user("alice").unwrap(), 0);
    }

    /// A backend that hands its watcher to the test, to play another node's messages.
    #[derive(Default)]
    struct Announcing {
        rows: MemoryBackend,
        hook: Mutex<Option<Revoked>>,
    }

    impl SessionBackend for Arc<Announcing> {
        fn load(&self, now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
            self.rows.load(now)
        }
        fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
            self.rows.get(hash)
        }
        fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
            self.rows.put(hash, s)
        }
        fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
            self.rows.touch(hash, last_seen)
        }
        fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
            self.rows.delete(hash)
        }
        fn delete_user(&self, user: &str) -> Result<(), StoreError> {
            self.rows.delete_user(user)
        }
        fn purge(&self, a: i64, i: i64) -> Result<(), StoreError> {
            self.rows.purge(a, i)
        }
        fn watch(&self, revoked: Revoked) -> Result<(), StoreError> {
            *self.hook.lock().unwrap() = Some(revoked);
            Ok(())
        }
    }

    #[test]
    fn announcements_end_sessions_make_a_changed_user_due_and_reach_the_listener() {
        let backend = Arc::new(Announcing::default());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let also: Revoked = Arc::new(move |what: Revocation<'_>| log.lock().unwrap().push(format!("{what:?}")));
        let s = Sessions::watching(
            SessionPolicy::default(),
            Some(Box::new(backend.clone())),
            T0,
            Some(also),
        )
        .unwrap();
        let alice = s.create(session("alice", T0)).unwrap();
        let bob = s.create(session("bob", T0)).unwrap();
        let due = |id: &SessionId| s.get_and_due(id.as_str(), T0 + 1, None).unwrap().map(|(_, due)| due);
        assert_eq!((due(&alice), due(&bob)), (Some(false), Some(false)));
        let hook = backend.hook.lock().unwrap().clone().unwrap();
        hook(Revocation::User("alice"));
        assert_eq!(
            (due(&alice), due(&bob)),
            (Some(true), Some(false)),
            "only alice is read again"
        );
        // Another node ended bob's session: gone here, though the backend (shared) still
        // had it when the message came.
        backend.rows.delete(&token_hash(bob.as_str()).unwrap()).unwrap();
        hook(Revocation::Session(&token_hash(bob.as_str()).unwrap()));
        assert_eq!(due(&bob), None);
        hook(Revocation::All);
        assert_eq!(s.len(), 0, "every copy forgotten");
        assert_eq!(due(&alice), Some(true), "read through again from the backend");
        assert_eq!(heard.lock().unwrap().len(), 3, "{:?}", heard.lock().unwrap());
        assert_eq!(heard.lock().unwrap()[0], "User(\"alice\")");
    }

    #[test]
    fn a_user_revoked_is_gone_from_the_backend_too() {
        let backend = Arc::new(MemoryBackend::default());
        let p = SessionPolicy {
            absolute: 3600,
            idle: 600,
            bind_ip: false,
            refresh: 7,
        };
        let s = Sessions::new(p, Some(Box::new(backend.clone())), T0).unwrap();
        assert_eq!(s.policy(), &p);
        assert!(s.is_empty());
        s.create(session("alice", T0)).unwrap();
        s.create(session("bob", T0)).unwrap();
        assert!(!s.is_empty());
        assert!(
            format!("{s:?}").starts_with("Sessions { policy: SessionPolicy {"),
            "{s:?}"
        );
        assert!(format!("{s:?}").contains("len: 2"), "{s:?}");
        assert_eq!(s.revoke_user("alice").unwrap(), 1);
        let users: Vec<String> = backend.load(T0).unwrap().into_iter().map(|(_, s)| s.user).collect();
        assert_eq!(users, vec!["bob".to_string()]);
    }

    #[test]
    fn a_new_display_name_or_e_mail_alone_reaches_the_session_and_the_backend() {
        let backend = Arc::new(MemoryBackend::default());
        let s = Sessions::new(SessionPolicy::default(), Some(Box::new(backend.clone())), T0).unwrap();
        let id = s.create(session("alice", T0)).unwrap();
        let groups = s.get(id.as_str(), T0, None).unwrap().groups;
        s.refreshed(id.as_str(), T0 + 1, &groups, Some("Alice B."), None)
            .unwrap();
        assert_eq!(
            s.get(id.as_str(), T0 + 2, None).unwrap().display_name.as_deref(),
            Some("Alice B.")
        );
        s.refreshed(id.as_str(), T0 + 3, &groups, Some("Alice B."), Some("a@example.com"))
            .unwrap();
        let now = s.get(id.as_str(), T0 + 4, None).unwrap();
        assert_eq!(now.email.as_deref(), Some("a@example.com"));
        let stored = backend.load(T0).unwrap().pop().unwrap().1;
        assert_eq!(
            (stored.display_name.as_deref(), stored.email.as_deref()),
            (Some("Alice B."), Some("a@example.com"))
        );
    }

    #[test]
    fn the_memory_backend_purges_at_or_before_the_bounds() {
        let b = MemoryBackend::default();
        let mut at = session("at-absolute", T0);
        at.last_seen = T0 + 500;
        b.put(&[1; 32], &at).unwrap();
        let mut idle = session("at-idle", T0 + 1);
        idle.last_seen = T0 + 100;
        b.put(&[2; 32], &idle).unwrap();
        let mut live = session("live", T0 + 1);
        live.last_seen = T0 + 101;
        b.put(&[3; 32], &live).unwrap();
        b.purge(T0, T0 + 100).unwrap();
        let users: Vec<String> = b.load(T0).unwrap().into_iter().map(|(_, s)| s.user).collect();
        assert_eq!(users, vec!["live".to_string()]);
    }

    #[test]
    fn purge_expired_drops_memory_and_backend() {
        let backend = Arc::new(MemoryBackend::default());
        let p = SessionPolicy {
            absolute: 3600,
            idle: 600,
            bind_ip: false,
            refresh: 60,
        };
        let s = Sessions::new(p, Some(Box::new(backend.clone())), T0).unwrap();
        s.create(session("old", T0)).unwrap();
        let fresh = s.create(session("new", T0 + 3000)).unwrap();
        assert_eq!(s.purge_expired(T0 + 3300).unwrap(), 1);
        assert_eq!(s.len(), 1);
        assert!(s.get(fresh.as_str(), T0 + 3300, None).is_some());
        let users: Vec<String> = backend.load(T0).unwrap().into_iter().map(|(_, s)| s.user).collect();
        assert_eq!(users, vec!["new".to_string()]);
    }

    #[test]
    fn sessions_survive_a_restart_and_last_seen_is_written_sparingly() {
        let backend = Arc::new(MemoryBackend::default());
        let p = SessionPolicy {
            absolute: 12 * 3600,
            idle: 1800,
            bind_ip: true,
            refresh: 60,
        };
        let first = Sessions::new(p, Some(Box::new(backend.clone())), T0).unwrap();
        let id = first.create(session("alice", T0)).unwrap();
        let gone = first.create(session("bob", T0)).unwrap();
        first.revoke(gone.as_str()).unwrap();
        let ip = Some("192.0.2.1".parse().unwrap());
        for t in 0..=120 {
            first.get(id.as_str(), T0 + t, ip).unwrap();
        }
        assert_eq!(
            backend.touches(),
            2,
            "one write per minute of activity, not per request"
        );
        drop(first);

        let second = Sessions::new(p, Some(Box::new(backend.clone())), T0 + 1000).unwrap();
        assert_eq!(second.len(), 1);
        let got = second.get(id.as_str(), T0 + 1000, ip).unwrap();
        assert_eq!(
            got,
            Session {
                last_seen: T0 + 1000,
                ..session("alice", T0)
            }
        );
        assert!(second.get(gone.as_str(), T0 + 1000, ip).is_none());
        assert!(
            second.get_and_due(id.as_str(), T0 + 1000, ip).unwrap().unwrap().1,
            "a restored session's user is read again on first use"
        );
        drop(second);

        // Restarted after the idle limit: nothing comes back, and the backend is purged.
        let third = Sessions::new(p, Some(Box::new(backend.clone())), T0 + 1000 + 1800 + 120).unwrap();
        assert!(third.is_empty());
        assert!(backend.load(0).unwrap().is_empty());
    }

    #[test]
    fn the_memory_backend_keeps_the_contract() {
        let shared = Arc::new(MemoryBackend::default());
        check_session_backend_contract(&|| Box::new(shared.clone()));
    }

    #[test]
    fn touch_failures_are_reported_not_raised() {
        struct Broken;
        impl SessionBackend for Broken {
            fn load(&self, _: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
                Ok(Vec::new())
            }
            fn get(&self, _: &[u8; 32]) -> Result<Option<Session>, StoreError> {
                Err(StoreError::Format("disk gone".into()))
            }
            fn put(&self, _: &[u8; 32], _: &Session) -> Result<(), StoreError> {
                Ok(())
            }
            fn touch(&self, _: &[u8; 32], _: i64) -> Result<(), StoreError> {
                Err(StoreError::Format("disk full".into()))
            }
            fn delete(&self, _: &[u8; 32]) -> Result<(), StoreError> {
                Ok(())
            }
            fn delete_user(&self, _: &str) -> Result<(), StoreError> {
                Ok(())
            }
            fn purge(&self, _: i64, _: i64) -> Result<(), StoreError> {
                Ok(())
            }
        }
        let policy = SessionPolicy {
            refresh: 600,
            ..SessionPolicy::default()
        };
        let s = Sessions::new(policy, Some(Box::new(Broken)), T0).unwrap();
        let id = s.create(session("alice", T0)).unwrap();
        assert!(s.take_background_error().is_none());
        assert!(s.get(id.as_str(), T0 + 61, None).is_some());
        assert_eq!(s.take_background_error().unwrap().to_string(), "disk full");
        assert!(s.take_background_error().is_none());
        // Due for a refresh, the session is confirmed in the backend: unreadable, it is refused.
        assert!(s.get(id.as_str(), T0 + 601, None).is_none(), "fail closed");
        assert_eq!(s.take_background_error().unwrap().to_string(), "disk gone");
    }

    #[test]
    fn concurrent_get_and_create() {
        let s = Arc::new(table(SessionPolicy::default()));
        let shared: Vec<String> = (0..16)
            .map(|_| s.create(session("alice", T0)).unwrap().as_str().to_string())
            .collect();
        let shared = Arc::new(shared);
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let s = s.clone();
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..500i64 {
                        let now = T0 + i;
                        if i % 10 == 0 {
                            mine.push(s.create(session(&format!("u{n}"), now)).unwrap());
                        }
                        for id in shared.iter() {
                            assert!(s.get(id, now, None).is_some());
                        }
                        for id in &mine {
                            assert_eq!(s.get(id.as_str(), now, None).unwrap().user, format!("u{n}"));
                        }
                    }
                    mine.len()
                })
            })
            .collect();
        let created: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(s.len(), 16 + created);
        assert_eq!(s.revoke_user("alice").unwrap(), 16);
    }
}

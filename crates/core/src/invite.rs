//! Invitations for self-service enrollment: a one-time link that shows a new TOTP secret
//! once and replaces the user's token only after a first correct code.

use crate::model::Token;
use crate::session::{new_token, token_hash};
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// An open invitation.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// Whose token the invitation replaces.
    pub user: String,
    /// Unix seconds from which the link no longer works.
    pub expires: i64,
    /// The token whose secret was shown at the first view, awaiting a confirming code.
    pub pending: Option<Token>,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Token's own Debug would show an mOTP PIN; say only whether one is pending.
        f.debug_struct("Invite")
            .field("user", &self.user)
            .field("expires", &self.expires)
            .field("pending", &self.pending.as_ref().map(|_| "redacted"))
            .finish()
    }
}

/// Where invitations live; every store keeps only the SHA-256 of the link's token.
pub trait InviteStore: Send + Sync {
    /// A new invitation for `user` until `expires`, revoking the user's earlier ones (so an
    /// older link cannot replace the token later); returns the token for the link (256-bit base64url).
    fn create(&self, user: &str, expires: i64) -> Result<Zeroizing<String>, StoreError>;
    /// The invite for `token` if unexpired, changing nothing (a page that only offers to
    /// reveal the key must not reveal it to a link scanner).
    fn find(&self, token: &str, now: i64) -> Result<Option<Invite>, StoreError>;
    /// Atomically: the invite for `token` if unexpired; if it has no pending token yet, stores `fresh` as pending and returns (invite, first_view=true); else (invite, false).
    fn open(&self, token: &str, now: i64, fresh: Token) -> Result<Option<(Invite, bool)>, StoreError>;
    /// Deletes the invite and every other one of its user (after a confirmed code, or to
    /// cancel); false when `token` names none.
    fn consume(&self, token: &str) -> Result<bool, StoreError>;
    /// Deletes expired invitations; returns how many.
    fn purge(&self, now: i64) -> Result<usize, StoreError>;
}

/// Invitations in memory (tests, and deployments without a database).
#[derive(Debug, Default)]
pub struct MemoryInvites {
    invites: Mutex<HashMap<[u8; 32], Invite>>,
}

impl MemoryInvites {
    // Each call makes one whole change to the map, so a poisoned lock is still sound.
    fn invites(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Invite>> {
        self.invites.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl InviteStore for MemoryInvites {
    fn create(&self, user: &str, expires: i64) -> Result<Zeroizing<String>, StoreError> {
        let (token, hash) = new_token();
        let mut invites = self.invites();
        invites.retain(|_, i| i.user != user);
        invites.insert(
            hash,
            Invite {
                user: user.to_string(),
                expires,
                pending: None,
            },
        );
        Ok(token)
    }

    fn find(&self, token: &str, now: i64) -> Result<Option<Invite>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        Ok(self.invites().get(&hash).filter(|i| now < i.expires).cloned())
    }

    fn open(&self, token: &str, now: i64, fresh: Token) -> Result<Option<(Invite, bool)>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let mut invites = self.invites();
        let Some(inv) = invites.get_mut(&hash).filter(|i| now < i.expires) else {
            return Ok(None);
        };
        let first = inv.pending.is_none();
        if first {
            inv.pending = Some(fresh);
        }
        Ok(Some((inv.clone(), first)))
    }

    fn consume(&self, token: &str) -> Result<bool, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        let mut invites = self.invites();
        let Some(user) = invites.get(&hash).map(|i| i.user.clone()) else {
            return Ok(false);
        };
        invites.retain(|_, i| i.user != user);
        Ok(true)
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        let mut invites = self.invites();
        let before = invites.len();
        invites.retain(|_, i| now < i.expires);
        Ok(before - invites.len())
    }
}

/// The behaviour every `InviteStore` must show; run by each implementation's tests.
#[doc(hidden)]
pub fn check_store_contract(store: &dyn InviteStore, fresh: &dyn Fn() -> Token) {
    const T0: i64 = 1_700_000_000;
    let token = store.create("alice", T0 + 3600).unwrap_or_default();
    assert_eq!(token.len(), crate::session::TOKEN_LEN);
    let other = store.create("bob", T0 + 10).unwrap_or_default();
    assert_ne!(token, other);

    // Looking changes nothing: the next open is still the first view.
    let Ok(Some(peeked)) = store.find(&token, T0) else {
        panic!("find sees an open invite");
    };
    assert!(peeked.user == "alice" && peeked.pending.is_none());
    assert!(matches!(store.find(&other, T0 + 10), Ok(None)), "expired");
    let first = fresh();
    let Ok(Some((inv, true))) = store.open(&token, T0, first.clone()) else {
        panic!("the first view shows the new secret");
    };
    assert_eq!(inv.user, "alice");
    assert_eq!(inv.expires, T0 + 3600);
    assert_eq!(inv.pending.as_ref(), Some(&first));
    // A second view gets the same pending token, flagged as not the first: the secret is
    // shown once, and a later confirmation checks against what was shown.
    let Ok(Some((again, false))) = store.open(&token, T0 + 5, fresh()) else {
        panic!("a second view is not the first");
    };
    assert_eq!(again.pending.as_ref(), Some(&first));
    assert!(matches!(store.find(&token, T0 + 5), Ok(Some(i)) if i.pending.as_ref() == Some(&first)));

    // Expired, malformed or unknown tokens open nothing.
    assert!(matches!(store.open(&other, T0 + 10, fresh()), Ok(None)));
    assert!(matches!(store.open("nope", T0, fresh()), Ok(None)));
    let mut flipped = token.to_string();
    flipped.replace_range(0..1, if flipped.starts_with('A') { "B" } else { "A" });
    assert!(matches!(store.open(&flipped, T0, fresh()), Ok(None)));

    assert!(matches!(store.purge(T0 + 9), Ok(0)), "nothing has expired yet");
    assert!(matches!(store.purge(T0 + 10), Ok(1)));
    assert!(matches!(store.consume(&token), Ok(true)));
    assert!(matches!(store.consume(&token), Ok(false)));
    assert!(matches!(store.open(&token, T0 + 6, fresh()), Ok(None)));
    assert!(matches!(store.consume("junk"), Ok(false)));

    // Issue 9.2: a newer link revokes the older ones, and enrolling revokes all of them.
    let old = store.create("carol", T0 + 3600).unwrap_or_default();
    let new = store.create("carol", T0 + 3600).unwrap_or_default();
    let dave = store.create("dave", T0 + 3600).unwrap_or_default();
    assert!(
        matches!(store.open(&old, T0, fresh()), Ok(None)),
        "an older link survived a newer one"
    );
    assert!(matches!(store.open(&new, T0, fresh()), Ok(Some((_, true)))));
    assert!(matches!(store.consume(&new), Ok(true)));
    assert!(matches!(store.open(&new, T0, fresh()), Ok(None)));
    assert!(
        matches!(store.open(&dave, T0, fresh()), Ok(Some(_))),
        "another user's link was revoked"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Step, TokenKind};
    use portcullis_otp::{Algorithm, Secret};

    fn fresh() -> Token {
        Token::new(
            TokenKind::Oath,
            Step::Time(30),
            Secret::from_bytes(crate::random::bytes(20).to_vec()),
            Algorithm::Sha1,
            6,
        )
    }

    #[test]
    fn memory_store_keeps_the_contract() {
        check_store_contract(&MemoryInvites::default(), &fresh);
    }

    #[test]
    fn debug_hides_the_pending_secret() {
        let mut t = fresh();
        t.motp_pin = Some(Zeroizing::new("4711".into()));
        let inv = Invite {
            user: "alice".into(),
            expires: 1,
            pending: Some(t),
        };
        let shown = format!("{inv:?}");
        assert!(!shown.contains("4711"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}

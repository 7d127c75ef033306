//! A directory whose users with an `External` first factor also carry what their password
//! source says about them (an LDAP server's groups, name and mail), read afresh at every
//! load, so a group removed there ends access at the next session refresh. Groups, name
//! and mail from the source are never written into the portcullis store; a token from the
//! source is, with its replay state, so that a code is accepted once.

use crate::factor::{PasswordSource, Profile};
use crate::model::{FirstFactor, User};
use crate::password::PasswordError;
use crate::store::{Directory, StoreError};
use std::sync::Arc;

/// `inner` with the profiles of `source` laid over its `External` users.
pub struct WithProfiles {
    inner: Arc<dyn Directory>,
    source: Arc<dyn PasswordSource>,
}

impl WithProfiles {
    /// Lays `source`'s profiles over `inner`'s users.
    pub fn new(inner: Arc<dyn Directory>, source: Arc<dyn PasswordSource>) -> Self {
        WithProfiles { inner, source }
    }

    fn profile(&self, user: &User) -> Result<Option<Profile>, StoreError> {
        if user.first_factor != FirstFactor::External {
            return Ok(None);
        }
        self.source.profile(&user.name).map_err(unavailable)
    }
}

/// A source that cannot say who is in which group stops the decision (503), as a store
/// outage does: access rules must not be judged on a partial picture.
fn unavailable(e: PasswordError) -> StoreError {
    StoreError::Source(e.to_string())
}

/// `user` with `profile` laid over it; the groups added, to take away again before a save.
/// A token from the source replaces the user's tokens, keeping the replay state of the
/// stored copy of the same key (a new key at the source starts afresh; the old one goes).
fn lay_over(user: &mut User, profile: Profile) -> Vec<String> {
    if let Some(token) = profile.token {
        let kept = user
            .tokens
            .iter()
            .find(|t| t.secret == token.secret && t.step == token.step)
            .cloned();
        user.tokens = vec![kept.unwrap_or(token)];
    }
    let added: Vec<String> = profile
        .groups
        .into_iter()
        .filter(|g| !user.groups.contains(g))
        .collect();
    user.groups.extend(added.iter().cloned());
    if profile.display_name.is_some() {
        user.display_name = profile.display_name;
    }
    if profile.email.is_some() {
        user.email = profile.email;
    }
    added
}

impl Directory for WithProfiles {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let Some(mut user) = self.inner.user(name)? else {
            return Ok(None);
        };
        if let Some(p) = self.profile(&user)? {
            lay_over(&mut user, p);
        }
        Ok(Some(user))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.inner.users()
    }

    fn create(&self, user: &User) -> Result<(), StoreError> {
        self.inner.create(user)
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.remove(name)
    }

    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        // Read before the store's lock is taken: a slow server must not hold the row.
        let profile = match self.inner.user(name)? {
            Some(u) => self.profile(&u)?,
            None => None,
        };
        self.inner.update(name, &mut |user| {
            let Some(p) = profile.clone() else {
                return change(user);
            };
            let (display_name, email) = (user.display_name.clone(), user.email.clone());
            let added = lay_over(user, p);
            let save = change(user);
            // The caller saw the source's view; the store keeps only its own.
            user.groups.retain(|g| !added.contains(g));
            user.display_name = display_name;
            user.email = email;
            save
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }

    fn passkey_owner(&self, id: &[u8]) -> Result<Option<String>, StoreError> {
        self.inner.passkey_owner(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Memory;
    use std::sync::Mutex;

    /// A source whose profile (or outage, `None`) a test sets.
    struct Source(Mutex<Option<Profile>>);

    impl Source {
        fn giving(profile: Profile) -> Arc<Source> {
            Arc::new(Source(Mutex::new(Some(profile))))
        }

        fn set(&self, profile: Option<Profile>) {
            *self.0.lock().unwrap() = profile;
        }
    }

    impl PasswordSource for Source {
        fn name(&self) -> &'static str {
            "test"
        }
        fn check(&self, _: &str, _: &str) -> Result<Option<bool>, PasswordError> {
            Ok(None)
        }
        fn fingerprint(&self, _: &str) -> Result<Option<[u8; 16]>, PasswordError> {
            Ok(None)
        }
        fn profile(&self, _: &str) -> Result<Option<Profile>, PasswordError> {
            match &*self.0.lock().unwrap() {
                Some(p) => Ok(Some(p.clone())),
                None => Err(PasswordError::Server {
                    server: "ldap://x".into(),
                    detail: "down".into(),
                }),
            }
        }
    }

    fn groups(names: &[&str]) -> Profile {
        Profile {
            groups: names.iter().map(|g| g.to_string()).collect(),
            display_name: Some("Alice L.".into()),
            ..Profile::default()
        }
    }

    fn keyed(key: u8) -> Profile {
        use crate::model::{Step, Token, TokenKind};
        let secret = portcullis_otp::Secret::from_bytes(vec![key; 20]);
        Profile {
            token: Some(Token::new(
                TokenKind::Oath,
                Step::Time(30),
                secret,
                portcullis_otp::Algorithm::Sha1,
                6,
            )),
            ..Profile::default()
        }
    }

    #[test]
    fn external_users_carry_the_sources_groups_which_are_never_saved() {
        let inner = Arc::new(Memory::default());
        let mut alice = User::new("alice", FirstFactor::External);
        alice.groups = vec!["staff".into()];
        inner.create(&alice).unwrap();
        inner.create(&User::new("bob", FirstFactor::None)).unwrap();
        let source = Source::giving(groups(&["admins", "staff"]));
        let d = WithProfiles::new(inner.clone(), source.clone());
        let alice = d.user("alice").unwrap().unwrap();
        assert_eq!(alice.groups, ["staff", "admins"]);
        assert_eq!(alice.display_name.as_deref(), Some("Alice L."));
        // A change made through the overlay saves the change, not the source's view.
        d.update("alice", &mut |u| {
            assert_eq!(u.groups, ["staff", "admins"]);
            u.failures = 3;
            u.groups.push("ops".into());
            true
        })
        .unwrap();
        let stored = inner.user("alice").unwrap().unwrap();
        assert_eq!(stored.groups, ["staff", "ops"]);
        assert_eq!(stored.failures, 3);
        assert_ne!(stored.display_name.as_deref(), Some("Alice L."));
        // Taken out of the group at the source: gone at the next read.
        source.set(Some(groups(&[])));
        assert_eq!(d.user("alice").unwrap().unwrap().groups, ["staff", "ops"]);
        // A source that cannot answer is an outage, not "no groups".
        source.set(None);
        assert!(matches!(d.user("alice"), Err(StoreError::Source(m)) if m.contains("ldap://x: down")));
        // Users with their own first factor never ask the source.
        assert!(d.user("bob").unwrap().is_some());
    }

    #[test]
    fn a_token_from_the_source_replaces_the_users_and_keeps_its_replay_state_in_the_store() {
        use crate::model::{Step, Token, TokenKind};
        let inner = Arc::new(Memory::default());
        let mut carol = User::new("carol", FirstFactor::External);
        carol.tokens = vec![Token::new(
            TokenKind::Oath,
            Step::Event,
            portcullis_otp::Secret::from_bytes(vec![9; 20]),
            portcullis_otp::Algorithm::Sha1,
            8,
        )];
        inner.create(&carol).unwrap();
        let source = Source::giving(keyed(1));
        let d = WithProfiles::new(inner.clone(), source.clone());
        let seen = d.user("carol").unwrap().unwrap();
        assert_eq!(seen.tokens.len(), 1);
        assert_eq!(seen.tokens[0].secret, portcullis_otp::Secret::from_bytes(vec![1; 20]));
        // A code accepted: the step is kept in the store with the source's key.
        d.update("carol", &mut |u| {
            u.tokens[0].last_step = Some(77);
            true
        })
        .unwrap();
        let stored = inner.user("carol").unwrap().unwrap();
        assert_eq!(stored.tokens.len(), 1, "the portcullis token gave way");
        assert_eq!(stored.tokens[0].last_step, Some(77));
        assert_eq!(
            d.user("carol").unwrap().unwrap().tokens[0].last_step,
            Some(77),
            "the replay state stands"
        );
        // A new key at the source starts afresh, and the old key is not accepted any more.
        source.set(Some(keyed(2)));
        let seen = d.user("carol").unwrap().unwrap();
        assert_eq!(seen.tokens.len(), 1);
        assert_eq!(seen.tokens[0].last_step, None);
    }
}

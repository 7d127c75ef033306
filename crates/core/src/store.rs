//! The `Directory` trait: where users and tokens live, with atomic read-modify-write.

use crate::model::User;
use std::path::PathBuf;

/// A store failure, naming what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The user already exists.
    #[error("user {0:?} already exists; pick another name or `user remove` it first")]
    Exists(String),
    /// No such user.
    #[error("no user named {0:?}; see `portcullis user list`")]
    NotFound(String),
    /// The backend cannot hold this kind of data.
    #[error("the {backend} store cannot hold {what}; use the sqlite store for this user")]
    Unsupported {
        /// Store name.
        backend: &'static str,
        /// What it cannot hold.
        what: String,
    },
    /// File-level problem with a path.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// The first-factor source (an LDAP server) could not give a user's groups.
    #[error("first-factor source {0}")]
    Source(String),
    /// A users-file problem; the message names the file, line and field.
    #[error("{0}")]
    Format(String),
    /// Database problem (SQLite, PostgreSQL, Redis).
    #[error("database {store}: {message}")]
    Database {
        /// Which database: a file path, or a server's address (never with a password).
        store: String,
        /// What went wrong.
        message: String,
    },
    /// A database server that does not answer (not up yet, restarting, or out of reach):
    /// worth waiting for, unlike a refusal (a wrong password, an untrusted certificate).
    #[error("database {store}: {message}")]
    Unreachable {
        /// The server's address (never with a password).
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether the store's server did not answer at all (as opposed to refusing).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

/// Users, their tokens and their replay/failure state. Implementations make `update`
/// atomic across threads and processes: two verifications of one code never both win.
pub trait Directory: Send + Sync {
    /// Short name of the backend, for messages.
    fn backend(&self) -> &'static str;
    /// One user, if present.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// All users, sorted by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Adds a new user; fails with `Exists` if the name is taken.
    fn create(&self, user: &User) -> Result<(), StoreError>;
    /// Deletes a user; false if there was none.
    fn remove(&self, name: &str) -> Result<bool, StoreError>;
    /// Atomically loads `name`, lets `change` modify it, and saves it if `change` returns
    /// true. Returns false if the user does not exist (then `change` is not called).
    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError>;

    /// The user who has the passkey with credential ID `id`, if anyone does (a store with an
    /// index answers from it; the default reads every user).
    fn passkey_owner(&self, id: &[u8]) -> Result<Option<String>, StoreError> {
        Ok(self
            .users()?
            .into_iter()
            .find(|u| u.passkeys.iter().any(|p| p.id == id))
            .map(|u| u.name))
    }

    /// Whether the store answers now (for `/api/health`); a local file always does.
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The conformance suite every [`Directory`] passes (the tests' memory directory, SQLite,
/// each users-file dialect; PostgreSQL next). `d` must be empty. It uses only what every
/// backend can hold: a PIN and an event token.
#[allow(clippy::unwrap_used)] // a conformance check: a failed step is a failed test
pub fn check_directory_contract(d: &(dyn Directory + 'static)) {
    use crate::model::{FirstFactor, Step, Token, TokenKind};
    use portcullis_otp::{Algorithm, Secret};
    let user = |name: &str, key: u8| {
        let mut u = User::new(name, FirstFactor::Pin(zeroize::Zeroizing::new("4711".into())));
        u.tokens = vec![Token::new(
            TokenKind::Oath,
            Step::Event,
            Secret::from_bytes(vec![key; 20]),
            Algorithm::Sha1,
            6,
        )];
        u
    };
    let counter = |name: &str| d.user(name).unwrap().unwrap().tokens[0].counter;
    assert!(d.users().unwrap().is_empty(), "starts empty");
    assert!(d.user("ann").unwrap().is_none());
    let ann = user("ann", 1);
    d.create(&ann).unwrap();
    assert!(
        matches!(d.create(&ann), Err(StoreError::Exists(_))),
        "a name is taken once"
    );
    let got = d.user("ann").unwrap().unwrap();
    assert_eq!(got.name, "ann");
    assert_eq!(got.first_factor, ann.first_factor);
    assert_eq!(got.tokens.len(), 1);
    assert_eq!(got.tokens[0].secret, ann.tokens[0].secret);
    assert_eq!(got.tokens[0].step, Step::Event);
    d.create(&user("bob", 2)).unwrap();
    let names: Vec<String> = d.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "bob"], "sorted by name");
    // A change that returns false is not saved; an unknown user is not changed at all.
    let before = counter("ann");
    assert!(
        d.update("ann", &mut |u| {
            u.tokens[0].counter += 7;
            false
        })
        .unwrap()
    );
    assert_eq!(counter("ann"), before, "not saved");
    let mut called = false;
    assert!(
        !d.update("nobody", &mut |_| {
            called = true;
            true
        })
        .unwrap()
    );
    assert!(!called, "change not called for an unknown user");
    assert!(
        d.update("ann", &mut |u| {
            u.tokens[0].counter += 5;
            true
        })
        .unwrap()
    );
    assert_eq!(counter("ann"), before + 5, "saved");
    assert_eq!(counter("bob"), 0, "the other user untouched");
    // Read-modify-write is one step: concurrent increments all land.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    d.update("ann", &mut |u| {
                        u.tokens[0].counter += 1;
                        true
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(counter("ann"), before + 45, "no increment lost");
    assert!(d.remove("bob").unwrap());
    assert!(!d.remove("bob").unwrap(), "already gone");
    let names: Vec<String> = d.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann"]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_directory_keeps_the_contract() {
        super::check_directory_contract(&crate::testing::Memory::default());
    }
}

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
    /// A users-file problem; the message names the file, line and field.
    #[error("{0}")]
    Format(String),
    /// Database problem.
    #[error("database {path}: {message}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
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
}

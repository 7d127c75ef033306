//! portcullis stores: the embedded SQLite directory (default) and, via
//! `portcullis-userfiles`, live mod_authn_otp and pam_oath users files.

pub mod sqlite;

pub use sqlite::SqliteStore;

use portcullis_core::config::{Backend, Config};
use portcullis_core::{Directory, StoreError};

/// Opens the store the configuration names.
pub fn open(config: &Config) -> Result<Box<dyn Directory>, StoreError> {
    let path = config.resolve(&config.store.path);
    match config.store.backend {
        Backend::Sqlite => Ok(Box::new(SqliteStore::open(&path)?)),
        Backend::ModAuthnOtp | Backend::PamOath => Err(StoreError::Unsupported {
            backend: "users-file",
            what: "anything yet".into(),
        }),
    }
}

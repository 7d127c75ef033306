//! portcullis stores: the embedded SQLite directory (default) and, via
//! `portcullis-userfiles`, live mod_authn_otp and pam_oath users files.

pub mod sqlite;
pub mod usersfile;

pub use sqlite::SqliteStore;
pub use usersfile::UsersFileStore;

use portcullis_core::config::{Backend, Config};
use portcullis_core::{Directory, StoreError, SystemClock};
use portcullis_userfiles::otp_users::Dialect;

/// Opens the store the configuration names.
pub fn open(config: &Config) -> Result<Box<dyn Directory>, StoreError> {
    let path = config.resolve(&config.store.path);
    match config.store.backend {
        Backend::Sqlite => Ok(Box::new(SqliteStore::open(&path)?)),
        Backend::ModAuthnOtp => Ok(Box::new(UsersFileStore::open(
            &path,
            Dialect::ModAuthnOtp,
            Box::new(SystemClock),
        )?)),
        Backend::PamOath => Ok(Box::new(UsersFileStore::open(
            &path,
            Dialect::PamOath,
            Box::new(SystemClock),
        )?)),
    }
}

//! portcullis stores: the embedded SQLite directory (default) and, via
//! `portcullis-userfiles`, live mod_authn_otp and pam_oath users files.

#[cfg(any(feature = "postgres", feature = "redis", feature = "ldap"))]
mod bridge;
mod columns;
#[cfg(feature = "ldap")]
pub mod ldap;
mod local_zone;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis_state;
pub mod sqlite;
#[cfg(any(feature = "postgres", feature = "ldap"))]
mod tls;
pub mod usersfile;

pub use local_zone::local_time_zone;
pub use sqlite::SqliteStore;
pub use usersfile::UsersFileStore;

use portcullis_core::config::{Config, StateKind, StoreKind};
use portcullis_core::factor::PasswordSource;
use portcullis_core::{Directory, StoreError, SystemClock};
use portcullis_userfiles::otp_users::Dialect;

/// Every store the gateway needs, opened once.
pub struct Stores {
    /// Users and tokens.
    pub directory: std::sync::Arc<dyn Directory>,
    /// Session persistence (SQLite only).
    pub sessions: Option<Box<dyn portcullis_core::SessionBackend>>,
    /// Enrollment invitations (SQLite only).
    pub invites: Option<std::sync::Arc<dyn portcullis_core::InviteStore>>,
    /// Regulation counts and bans shared by every process on the store (SQLite only;
    /// `None`: each process counts in its own memory).
    pub regulation: Option<std::sync::Arc<dyn portcullis_core::regulation::RegulationStore>>,
    /// Where `External` first factors are checked: `[ldap]`, or an htpasswd/htdigest file.
    pub external: Option<std::sync::Arc<dyn PasswordSource>>,
}

/// The first-factor source the configuration names: `[ldap]`, or `[first_factor]`'s
/// htpasswd/htdigest file, or none.
pub fn first_factor_source(config: &Config) -> Result<Option<std::sync::Arc<dyn PasswordSource>>, StoreError> {
    if config.ldap.is_set() {
        #[cfg(feature = "ldap")]
        return Ok(Some(std::sync::Arc::new(ldap::LdapSource::open(&config.ldap, &|p| {
            config.resolve(p)
        })?)));
        #[cfg(not(feature = "ldap"))]
        return Err(StoreError::Source(format!(
            "{}: [ldap] is set, but this program was built without LDAP support (pam_portcullis asks the gateway instead: set [pam] socket)",
            config.path.display()
        )));
    }
    Ok(config
        .external_source()
        .map(portcullis_core::password::ExternalSource::shared))
}

/// Opens the configured directory and where the state lives: the SQLite store's own tables,
/// a Redis server (`[state] backend = "redis"`), or none (each process's memory).
pub fn open_all(config: &Config) -> Result<Stores, StoreError> {
    let path = config.resolve(&config.store.path);
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut stores = match config.store.backend {
        StoreKind::Sqlite => {
            let db = std::sync::Arc::new(SqliteStore::open(&path)?);
            Stores {
                directory: db.clone(),
                sessions: Some(Box::new(db.clone())),
                invites: Some(db.clone()),
                regulation: Some(db),
                external: first_factor_source(config)?,
            }
        }
        _ => Stores {
            directory: open(config)?.into(),
            sessions: None,
            invites: None,
            regulation: None,
            external: first_factor_source(config)?,
        },
    };
    if config.state.backend == StateKind::Redis {
        #[cfg(feature = "redis")]
        {
            let state = std::sync::Arc::new(redis_state::RedisState::open(&config.state, &|p| config.resolve(p))?);
            stores.sessions = Some(Box::new(state.clone()));
            stores.invites = Some(state.clone());
            stores.regulation = Some(state);
        }
        #[cfg(not(feature = "redis"))]
        return Err(StoreError::Database {
            store: config.state.url.clone(),
            message: "this program was built without Redis support (the `redis` feature of portcullis-store)".into(),
        });
    }
    Ok(stores)
}

/// Opens the store the configuration names.
pub fn open(config: &Config) -> Result<Box<dyn Directory>, StoreError> {
    let path = config.resolve(&config.store.path);
    match config.store.backend {
        StoreKind::Sqlite => Ok(Box::new(SqliteStore::open(&path)?)),
        StoreKind::ModAuthnOtp => Ok(Box::new(UsersFileStore::open(
            &path,
            Dialect::ModAuthnOtp,
            Box::new(SystemClock),
        )?)),
        StoreKind::PamOath => Ok(Box::new(UsersFileStore::open(
            &path,
            Dialect::PamOath,
            Box::new(SystemClock),
        )?)),
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => Ok(Box::new(postgres::PostgresStore::open(&config.store, &|p| {
            config.resolve(p)
        })?)),
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => Err(StoreError::Database {
            store: config.store.url.clone(),
            message: "this program was built without PostgreSQL support (the `postgres` feature of portcullis-store)"
                .into(),
        }),
    }
}

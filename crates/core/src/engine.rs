//! The core's parts owned together — access rules, sessions, regulation, the Basic cache,
//! the directory, the first-factor source, the verification rules and the clock — built
//! once from the configuration and the stores. Every adapter borrows its [`Authorizer`]
//! from here, so none of them wires (or touches) regulation or the directory itself.

use crate::access::{AccessControl, Policy as AccessPolicy, RuleError};
use crate::authz::{Authorizer, BasicCache};
use crate::clock::Clock;
use crate::config::{Config, SessionStoreKind, StateKind};
use crate::factor::PasswordSource;
use crate::gate::{Gate, VerifyPolicy};
use crate::regulation::{RegulationStore, Regulator};
use crate::session::{SessionBackend, SessionPolicy, Sessions};
use crate::store::{Directory, StoreError};
use std::sync::Arc;

/// Why the core's parts could not be put together; each names what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// `[access]` rules that do not compile.
    #[error("{path}: [access]: {source}")]
    Rules {
        /// The configuration file.
        path: std::path::PathBuf,
        /// What is wrong with which rule.
        #[source]
        source: RuleError,
    },
    /// `[session] store = "sqlite"` over a store that keeps no sessions.
    #[error(
        "{0}: [session] store = \"sqlite\" needs [store] backend = \"sqlite\"; set [session] store = \"memory\" with a users-file store"
    )]
    NoSessionStore(std::path::PathBuf),
    /// The session store failed at start-up.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the stores hand the core: the directory, and where sessions and regulation live
/// when the store keeps them (SQLite; PostgreSQL and Redis next).
pub struct Parts {
    /// Users and tokens.
    pub directory: Arc<dyn Directory>,
    /// Session persistence, if the store has it.
    pub sessions: Option<Box<dyn SessionBackend>>,
    /// Shared regulation counts and bans, if the store has them.
    pub regulation: Option<Arc<dyn RegulationStore>>,
    /// Where `External` first factors are checked (an htpasswd/htdigest file, LDAP).
    pub external: Option<Arc<dyn PasswordSource>>,
    /// The push service (`[duo]`), if configured.
    pub pushes: Option<Box<dyn crate::push::PushService>>,
}

impl Parts {
    /// Parts with only a directory (no shared state, no outside sources).
    pub fn directory_only(directory: Arc<dyn Directory>) -> Self {
        Parts {
            directory,
            sessions: None,
            regulation: None,
            external: None,
            pushes: None,
        }
    }
}

/// `directory` with `external`'s profiles (groups, name, mail) laid over its users, when
/// it gives any: a password file does not, and its sites pay no extra read per update.
fn with_profiles(directory: Arc<dyn Directory>, external: Option<&Arc<dyn PasswordSource>>) -> Arc<dyn Directory> {
    match external {
        Some(source) if source.gives_profiles() => {
            Arc::new(crate::external::WithProfiles::new(directory, source.clone()))
        }
        _ => directory,
    }
}

/// The core's state for one process.
pub struct Engine {
    /// The access rules.
    pub access: AccessControl,
    /// Login sessions.
    pub sessions: Sessions,
    /// Brute-force regulation.
    pub regulator: Regulator,
    /// Basic credentials accepted within their linger time.
    pub basic_cache: Arc<BasicCache>,
    /// Users and tokens.
    pub directory: Arc<dyn Directory>,
    /// Where `External` first factors are checked.
    pub external: Option<Arc<dyn PasswordSource>>,
    /// The verification rules.
    pub policy: VerifyPolicy,
    /// Push approval (`[duo]`), if configured.
    pub pushes: Option<crate::push::Pushes>,
    /// Passkeys (`[webauthn]`), when a verifier is set (the gateway sets one).
    pub passkeys: Option<crate::passkey::Passkeys>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl Engine {
    /// Everything the configuration asks for, over `parts`.
    pub fn from_config(config: &Config, parts: Parts, clock: Arc<dyn Clock>) -> Result<Self, EngineError> {
        // A shared state server keeps the sessions, whatever [session] store says.
        let shared = config.state.backend == StateKind::Redis;
        let backend = match config.session.store {
            SessionStoreKind::Memory if !shared => None,
            _ => match parts.sessions {
                Some(b) => Some(b),
                None => return Err(EngineError::NoSessionStore(config.path.clone())),
            },
        };
        let s = &config.session;
        let basic_cache = Arc::new(BasicCache::with_refresh(s.refresh));
        // A user changed elsewhere is checked in full again before a cached Basic credential
        // of theirs is trusted (weak: the watcher must not keep the cache alive).
        let watched = Arc::downgrade(&basic_cache);
        let also: crate::session::Revoked = Arc::new(move |what| {
            if let Some(cache) = watched.upgrade() {
                cache.revoked(what);
            }
        });
        let sessions = Sessions::watching(
            SessionPolicy {
                absolute: s.absolute,
                idle: s.idle,
                bind_ip: s.bind_ip,
                refresh: s.refresh,
            },
            backend,
            clock.now(),
            Some(also),
        )?;
        let access = AccessControl::new(&config.access.rules, config.access.default_policy).map_err(|source| {
            EngineError::Rules {
                path: config.path.clone(),
                source,
            }
        })?;
        Ok(Engine {
            access,
            sessions,
            regulator: Regulator::from_config(config, parts.regulation),
            basic_cache,
            directory: with_profiles(parts.directory, parts.external.as_ref()),
            external: parts.external,
            policy: VerifyPolicy::from_config(config),
            pushes: parts.pushes.map(|service| {
                crate::push::Pushes::new(
                    service,
                    config.duo.timeout,
                    config.duo.failmode == crate::config::FailMode::Open,
                )
            }),
            passkeys: None,
            clock,
        })
    }

    /// For a client that only hands over credentials (PAM): no access rules, sessions in
    /// memory only (none are made), and the given verification and regulation rules.
    pub fn for_credentials(
        directory: Arc<dyn Directory>,
        policy: VerifyPolicy,
        external: Option<Arc<dyn PasswordSource>>,
        regulator: Regulator,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EngineError> {
        Ok(Engine {
            access: AccessControl::new(&[], AccessPolicy::Deny).map_err(|source| EngineError::Rules {
                path: std::path::PathBuf::new(),
                source,
            })?,
            sessions: Sessions::new(SessionPolicy::default(), None, clock.now())?,
            regulator,
            basic_cache: Arc::new(BasicCache::default()),
            directory: with_profiles(directory, external.as_ref()),
            external,
            policy,
            pushes: None,
            passkeys: None,
            clock,
        })
    }

    /// A credential check on the configured store (PAM with `config=`): the configured
    /// verification rules and first-factor source, and the store's shared regulation, so an
    /// SSH brute force bans the client for the web too.
    pub fn credentials_from_config(config: &Config, parts: Parts, clock: Arc<dyn Clock>) -> Result<Self, EngineError> {
        Self::for_credentials(
            parts.directory,
            VerifyPolicy::from_config(config),
            parts.external,
            Regulator::from_config(config, parts.regulation),
            clock,
        )
    }

    /// A drop-in for pam_oath on its users file (PAM with `usersfile=`): `window` as
    /// pam_oath passes it to liboath (TOTP steps either side of now, HOTP counters ahead),
    /// and, as pam_oath, no lockout, no linger and no regulation.
    pub fn pam_oath_dropin(
        directory: Arc<dyn Directory>,
        window: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EngineError> {
        let policy = VerifyPolicy {
            totp_window: window,
            hotp_look_ahead: window,
            motp_window: Config::default().otp.motp_window,
            linger: 0,
            max_failures: 0,
        };
        Self::for_credentials(directory, policy, None, Regulator::off(), clock)
    }

    /// The decision maker over this state.
    pub fn authorizer(&self) -> Authorizer<'_> {
        Authorizer {
            access: &self.access,
            sessions: &self.sessions,
            regulator: &self.regulator,
            gate: Gate {
                directory: self.directory.as_ref(),
                clock: self.clock.as_ref(),
                policy: self.policy.clone(),
                external: self.external.as_deref(),
            },
            basic_cache: &self.basic_cache,
            pushes: self.pushes.as_ref(),
            passkeys: self.passkeys.as_ref(),
            clock: self.clock.as_ref(),
        }
    }

    /// Periodic upkeep: drops expired sessions and regulation records (both are tried; the
    /// first failure is returned).
    pub fn purge(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let sessions = self.sessions.purge_expired(now).map(drop);
        let regulation = self.regulator.purge(now).map(drop);
        sessions.and(regulation)
    }

    /// Whether every store this process depends on answers now (for `/api/health`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.directory.ping()?;
        self.sessions.ping()
    }

    /// For `/metrics`: live sessions and bans in force.
    pub fn gauges(&self) -> (usize, usize) {
        (self.sessions.len(), self.regulator.banned_count(self.clock.now()))
    }
}

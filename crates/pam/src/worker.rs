//! The store, opened and asked on a worker thread with a deadline, so a slow disk, a
//! locked users file or a hung network filesystem can never hang sshd: the module gives
//! up after `timeout=` seconds and fails closed.

use crate::options::Source;
use portcullis_core::authz::{Authorizer, StepResult};
use portcullis_core::config::Config;
use portcullis_core::credentials::{Credentials, Prompt};
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::{Clock, Rejection, SystemClock};
use portcullis_store::UsersFileStore;
use portcullis_userfiles::otp_users::Dialect;
use std::sync::{Arc, mpsc};
use std::time::Duration;
use zeroize::Zeroizing;

/// What the store knows about a user before the code is asked for: the core's answer
/// (the `digits=` option, if given, overrides the token's code length).
pub type Lookup = Prompt;

/// One verification.
#[derive(Debug)]
pub struct Check {
    /// User name from PAM.
    pub user: String,
    /// The first factor, in `combined` mode.
    pub password: Option<Zeroizing<String>>,
    /// The code; `None` checks only the password (combined mode from a trusted network).
    pub code: Option<Zeroizing<String>>,
    /// PAM_RHOST.
    pub client: Option<String>,
}

/// The store's verdict on one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let in.
    Accepted,
    /// Refused, with the Gate's reason.
    Rejected(Rejection),
    /// The user or the client is banned by regulation for now (not checked).
    Banned,
}

/// The store side of the module: everything that touches users, tokens and replay state.
pub trait Checker {
    /// Looks a user up.
    fn lookup(&mut self, user: &str) -> Result<Lookup, String>;
    /// Verifies, updating replay state and failure counts atomically.
    fn check(&mut self, check: &Check) -> Result<Answer, String>;
}

/// The real backend: a portcullis store behind the same core call as every other way in
/// ([`Authorizer::check_credentials`]), with the store's shared regulation when it has one.
pub struct StoreChecker {
    engine: Engine,
    digits: Option<u32>,
}

impl StoreChecker {
    /// Opens the store a [`Source`] names, with the system clock. A missing configuration or
    /// store is an error here: SQLite would otherwise create an empty database, every user
    /// would be unknown, and `nullok` would let everyone in.
    pub fn open(source: &Source) -> Result<StoreChecker, String> {
        Self::open_with_clock(source, &|| Box::new(SystemClock))
    }

    /// [`StoreChecker::open`] with injected clocks (tests): one for the Gate, one for a
    /// users file (which needs the time to find the step of its last OTP).
    pub fn open_with_clock(source: &Source, clock: &dyn Fn() -> Box<dyn Clock>) -> Result<StoreChecker, String> {
        match source {
            Source::Config(path) => {
                let config = Config::load(path).map_err(|e| format!("configuration (config= in the PAM line): {e}"))?;
                let store_path = config.resolve(&config.store.path);
                let networked = config.store.backend == portcullis_core::config::StoreKind::Postgres
                    || config.state.backend == portcullis_core::config::StateKind::Redis;
                if networked {
                    // The PostgreSQL store runs its own async runtime, which has no place
                    // inside sshd; refusing is the safe answer until PAM asks the gateway.
                    return Err(format!(
                        "{}: a PostgreSQL store or Redis state is not supported by pam_portcullis yet; \
                         keep sshd's users in SQLite or a users file (usersfile=)",
                        path.display()
                    ));
                }
                if !store_path.exists() {
                    return Err(format!(
                        "store {} does not exist; run `portcullis init` or fix [store] path in {}",
                        store_path.display(),
                        path.display()
                    ));
                }
                let stores = portcullis_store::open_all(&config).map_err(|e| format!("store: {e}"))?;
                let parts = Parts {
                    directory: stores.directory,
                    sessions: None,
                    regulation: stores.regulation,
                };
                let engine =
                    Engine::credentials_from_config(&config, parts, Arc::from(clock())).map_err(|e| e.to_string())?;
                Ok(StoreChecker { engine, digits: None })
            }
            Source::UsersFile { path, window, digits } => {
                if !path.exists() {
                    return Err(format!("users file {} does not exist", path.display()));
                }
                let directory =
                    UsersFileStore::open(path, Dialect::PamOath, clock()).map_err(|e| format!("users file: {e}"))?;
                let engine = Engine::pam_oath_dropin(Arc::new(directory), *window, Arc::from(clock()))
                    .map_err(|e| e.to_string())?;
                Ok(StoreChecker {
                    engine,
                    digits: *digits,
                })
            }
        }
    }

    fn authorizer(&self) -> Authorizer<'_> {
        self.engine.authorizer()
    }
}

impl Checker for StoreChecker {
    fn lookup(&mut self, user: &str) -> Result<Lookup, String> {
        let prompt = self.authorizer().prompt_for(user).map_err(|e| e.to_string())?;
        Ok(match (prompt, self.digits) {
            (Prompt::Enrolled { first_factor, pin, .. }, Some(digits)) => Prompt::Enrolled {
                digits,
                first_factor,
                pin,
            },
            (prompt, _) => prompt,
        })
    }

    fn check(&mut self, check: &Check) -> Result<Answer, String> {
        let credentials = Credentials {
            user: &check.user,
            password: check.password.as_deref().map(String::as_str),
            code: check.code.as_deref().map(String::as_str),
            client_ip: check.client.as_deref().and_then(|h| h.parse().ok()),
            method: "pam",
        };
        let (result, _event) = self
            .authorizer()
            .check_credentials(&credentials)
            .map_err(|e| e.to_string())?;
        Ok(match result {
            StepResult::Passed(_) => Answer::Accepted,
            StepResult::Refused(why) => Answer::Rejected(why),
            StepResult::Banned => Answer::Banned,
        })
    }
}

/// Why the worker gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The store did not answer in time.
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with an error.
    #[error("{0}")]
    Store(String),
    /// The worker thread could not start or died.
    #[error("the store worker failed: {0}")]
    Worker(String),
}

enum Request {
    Lookup(String),
    Check(Check),
}

enum Reply {
    Lookup(Result<Lookup, String>),
    Check(Result<Answer, String>),
}

/// A thread that owns the backend; every question to it has a deadline.
pub struct Worker {
    requests: mpsc::Sender<(Request, mpsc::SyncSender<Reply>)>,
    timeout: Duration,
}

impl Worker {
    /// Starts the thread; `open` runs on it, so opening the store is bounded too.
    pub fn start<F>(open: F, timeout: Duration) -> Result<Worker, WorkerError>
    where
        F: FnOnce() -> Result<Box<dyn Checker>, String> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<(Request, mpsc::SyncSender<Reply>)>();
        std::thread::Builder::new()
            .name("pam_portcullis".into())
            .spawn(move || {
                let mut backend = open();
                for (request, reply) in rx {
                    let answer = match (&mut backend, request) {
                        (Err(e), Request::Lookup(_)) => Reply::Lookup(Err(e.clone())),
                        (Err(e), Request::Check(_)) => Reply::Check(Err(e.clone())),
                        (Ok(b), Request::Lookup(user)) => Reply::Lookup(b.lookup(&user)),
                        (Ok(b), Request::Check(check)) => Reply::Check(b.check(&check)),
                    };
                    // The caller may have given up (timeout); nobody is left to tell.
                    let _ = reply.send(answer);
                }
            })
            .map_err(|e| WorkerError::Worker(e.to_string()))?;
        Ok(Worker { requests: tx, timeout })
    }

    fn ask(&self, request: Request) -> Result<Reply, WorkerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.requests
            .send((request, reply_tx))
            .map_err(|_| WorkerError::Worker("the worker thread has stopped".into()))?;
        reply_rx.recv_timeout(self.timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => WorkerError::Timeout(self.timeout),
            mpsc::RecvTimeoutError::Disconnected => WorkerError::Worker("the worker thread panicked".into()),
        })
    }

    /// Looks a user up within the deadline.
    pub fn lookup(&self, user: &str) -> Result<Lookup, WorkerError> {
        match self.ask(Request::Lookup(user.to_string()))? {
            Reply::Lookup(r) => r.map_err(WorkerError::Store),
            Reply::Check(_) => Err(WorkerError::Worker("mismatched reply".into())),
        }
    }

    /// Verifies within the deadline.
    pub fn check(&self, check: Check) -> Result<Answer, WorkerError> {
        match self.ask(Request::Check(check))? {
            Reply::Check(r) => r.map_err(WorkerError::Store),
            Reply::Lookup(_) => Err(WorkerError::Worker("mismatched reply".into())),
        }
    }
}

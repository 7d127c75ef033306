//! The store, opened and asked on a worker thread with a deadline, so a slow disk, a
//! locked users file or a hung network filesystem can never hang sshd: the module gives
//! up after `timeout=` seconds and fails closed.

use crate::options::Source;
use portcullis_core::authz::Authorizer;
use portcullis_core::config::Config;
use portcullis_core::credentials::Prompt;
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::pam_socket::{Answer as GatewayAnswer, MAX_MESSAGE, Question};
use portcullis_core::{Clock, Rejection, SystemClock};
use portcullis_store::UsersFileStore;
use portcullis_userfiles::otp_users::Dialect;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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
    /// A push user's whole answer: the gateway splits it, pushes and waits this much longer
    /// than the module's `timeout=` for the person.
    pub push: Option<Duration>,
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
    /// Opens the store a [`Source`] names, with the system clock: the gateway's socket when
    /// the configuration names one (`[pam] socket`), else the store itself. A missing
    /// configuration or store is an error here: SQLite would otherwise create an empty
    /// database, every user would be unknown, and `nullok` would let everyone in.
    pub fn open(source: &Source, timeout: Duration) -> Result<Box<dyn Checker>, String> {
        Self::open_with_clock(source, timeout, &|| Box::new(SystemClock))
    }

    /// [`StoreChecker::open`] with injected clocks (tests): one for the Gate, one for a
    /// users file (which needs the time to find the step of its last OTP).
    pub fn open_with_clock(
        source: &Source,
        timeout: Duration,
        clock: &dyn Fn() -> Box<dyn Clock>,
    ) -> Result<Box<dyn Checker>, String> {
        match source {
            Source::Config(path) => {
                let config = Config::load(path).map_err(|e| format!("configuration (config= in the PAM line): {e}"))?;
                if !config.pam.socket.is_empty() {
                    return Ok(Box::new(GatewayChecker::new(&config.pam.socket, timeout)));
                }
                let networked = config.store.backend == portcullis_core::config::StoreKind::Postgres
                    || config.state.backend == portcullis_core::config::StateKind::Redis
                    || config.ldap.is_set();
                if networked {
                    // Database clients and their runtime have no place inside sshd: the
                    // running gateway answers for them.
                    return Err(format!(
                        "{}: with a PostgreSQL store, Redis state or [ldap], pam_portcullis asks the gateway: \
                         set [pam] socket (e.g. \"/run/portcullis/pam.sock\") and restart `portcullis serve`",
                        path.display()
                    ));
                }
                let store_path = config.resolve(&config.store.path);
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
                    external: stores.external,
                    // A push needs the gateway (its socket); the module alone sends none.
                    pushes: None,
                };
                let engine =
                    Engine::credentials_from_config(&config, parts, Arc::from(clock())).map_err(|e| e.to_string())?;
                Ok(Box::new(StoreChecker { engine, digits: None }))
            }
            Source::UsersFile { path, window, digits } => {
                if !path.exists() {
                    return Err(format!("users file {} does not exist", path.display()));
                }
                let directory =
                    UsersFileStore::open(path, Dialect::PamOath, clock()).map_err(|e| format!("users file: {e}"))?;
                let engine = Engine::pam_oath_dropin(Arc::new(directory), *window, Arc::from(clock()))
                    .map_err(|e| e.to_string())?;
                Ok(Box::new(StoreChecker {
                    engine,
                    digits: *digits,
                }))
            }
        }
    }

    fn authorizer(&self) -> Authorizer<'_> {
        self.engine.authorizer()
    }
}

impl StoreChecker {
    /// Asks the core the question the gateway would be asked over its socket.
    fn ask(&self, question: &Question) -> Result<GatewayAnswer, String> {
        let (answer, _event) = self.authorizer().answer_pam(question).map_err(|e| e.to_string())?;
        Ok(answer)
    }
}

impl Checker for StoreChecker {
    fn lookup(&mut self, user: &str) -> Result<Lookup, String> {
        let prompt = match self.ask(&Question::Prompt { user: user.to_string() })? {
            GatewayAnswer::Prompt(p) => p,
            other => return Err(format!("the core answered {other:?} to a lookup")),
        };
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
        verdict(self.ask(&check.question())?)
    }
}

impl Check {
    fn question(&self) -> Question {
        Question::Check {
            user: self.user.clone(),
            password: self.password.clone(),
            code: self.code.clone(),
            client: self.client.clone(),
            push: self.push.is_some(),
        }
    }
}

/// A check's answer, whoever gave it.
fn verdict(answer: GatewayAnswer) -> Result<Answer, String> {
    match answer {
        GatewayAnswer::Accepted => Ok(Answer::Accepted),
        GatewayAnswer::Refused(why) => Ok(Answer::Rejected(why)),
        GatewayAnswer::Banned => Ok(Answer::Banned),
        other => Err(format!("{other:?} is no answer to a check")),
    }
}

/// The running gateway, asked over its `[pam] socket` (one question per connection, each
/// bounded by the module's `timeout=`).
pub struct GatewayChecker {
    socket: PathBuf,
    timeout: Duration,
}

impl GatewayChecker {
    /// A checker for the gateway listening on `socket`.
    pub fn new(socket: &str, timeout: Duration) -> GatewayChecker {
        GatewayChecker {
            socket: PathBuf::from(socket),
            timeout,
        }
    }

    fn ask(&self, question: &Question) -> Result<GatewayAnswer, String> {
        self.ask_within(question, self.timeout)
    }

    fn ask_within(&self, question: &Question, timeout: Duration) -> Result<GatewayAnswer, String> {
        let place = self.socket.display();
        let mut conn = UnixStream::connect(&self.socket).map_err(|e| {
            format!("[pam] socket {place}: the gateway does not answer ({e}); is `portcullis serve` running?")
        })?;
        let sent = conn
            .set_read_timeout(Some(timeout))
            .and_then(|()| conn.set_write_timeout(Some(self.timeout)))
            .and_then(|()| conn.write_all(&question.encode()))
            .and_then(|()| conn.shutdown(std::net::Shutdown::Write));
        sent.map_err(|e| format!("[pam] socket {place}: cannot ask the gateway ({e})"))?;
        let mut reply = Vec::new();
        (&mut conn)
            .take(MAX_MESSAGE as u64 + 1)
            .read_to_end(&mut reply)
            .map_err(|e| format!("[pam] socket {place}: no answer from the gateway ({e})"))?;
        match GatewayAnswer::decode(&reply) {
            Some(GatewayAnswer::Unavailable) => Err(format!(
                "[pam] socket {place}: the gateway cannot reach its store now (its log says why)"
            )),
            Some(answer) => Ok(answer),
            None => Err(format!(
                "[pam] socket {place}: the answer is not portcullis's ({} bytes)",
                reply.len()
            )),
        }
    }
}

impl Checker for GatewayChecker {
    fn lookup(&mut self, user: &str) -> Result<Lookup, String> {
        match self.ask(&Question::Prompt { user: user.to_string() })? {
            GatewayAnswer::Prompt(p) => Ok(p),
            other => Err(format!("the gateway answered {other:?} to a lookup")),
        }
    }

    fn check(&mut self, check: &Check) -> Result<Answer, String> {
        let within = self.timeout + check.push.unwrap_or_default();
        verdict(self.ask_within(&check.question(), within)?)
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
        let timeout = match &request {
            Request::Check(c) => self.timeout + c.push.unwrap_or_default(),
            Request::Lookup(_) => self.timeout,
        };
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.requests
            .send((request, reply_tx))
            .map_err(|_| WorkerError::Worker("the worker thread has stopped".into()))?;
        reply_rx.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => WorkerError::Timeout(timeout),
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

//! Synchronous calls into an async database client. The core's store traits are
//! synchronous (the CLI, the PAM module and the gateway's blocking workers call them); a
//! network store keeps its own small tokio runtime for its connections and waits on it,
//! every call bounded in time.

// Built for LDAP alone, the database helpers go unused.
#![cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]

use portcullis_core::StoreError;
use std::future::Future;
use std::time::Duration;

/// A private runtime and the bound on each call, for one store.
pub(crate) struct Bridge {
    /// Drives the store's connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// How long a call may take.
    pub(crate) timeout: Duration,
    /// The store as messages name it (never with a password).
    pub(crate) name: String,
    /// The engine, for advice ("check that PostgreSQL is up").
    engine: &'static str,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime (the gateway).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Bridge {
    /// A runtime with one worker thread named after the engine.
    pub(crate) fn new(engine: &'static str, name: String, timeout: Duration) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("portcullis-{}", engine.to_ascii_lowercase()))
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database {
                store: name.clone(),
                message: format!("cannot start the {engine} runtime: {e}"),
            })?;
        Ok(Bridge {
            runtime: Some(runtime),
            timeout,
            name,
            engine,
        })
    }

    /// The runtime's context, for building clients whose tasks must be spawned on it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::enter)
    }

    /// Runs `task` on the store's runtime in the background (a subscription).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.runtime {
            rt.spawn(task);
        }
    }

    /// An error naming this store.
    pub(crate) fn fail(&self, message: String) -> StoreError {
        StoreError::Database {
            store: self.name.clone(),
            message,
        }
    }

    /// An error naming this store, for a server that did not answer.
    pub(crate) fn unreachable(&self, message: String) -> StoreError {
        StoreError::Unreachable {
            store: self.name.clone(),
            message,
        }
    }

    /// An error naming this store from `e`: [`StoreError::Unreachable`] when a cause is a
    /// connection that could not be made or was cut, else [`StoreError::Database`].
    pub(crate) fn classify(&self, e: &(dyn std::error::Error + 'static)) -> StoreError {
        if cut_off(e) {
            self.unreachable(describe(e))
        } else {
            self.fail(describe(e))
        }
    }

    /// Runs `work` on the store's runtime and waits for it, at most `timeout`; `describe`
    /// turns its error into words. Works from plain threads (CLI, PAM) and from a
    /// multi-threaded tokio runtime (the gateway).
    pub(crate) fn run<T, E>(
        &self,
        work: impl Future<Output = Result<T, E>>,
        describe: impl FnOnce(E) -> StoreError,
    ) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(self.fail("the store is shutting down".into()));
        };
        let timeout = self.timeout;
        let bounded = async move { tokio::time::timeout(timeout, work).await };
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                return Err(self.fail(format!(
                    "called on a single-threaded async runtime, which cannot wait for {}",
                    self.engine
                )));
            }
            // Leaves the caller's runtime for the wait, so another one may run here.
            Ok(_) => tokio::task::block_in_place(|| runtime.handle().block_on(bounded)),
            Err(_) => runtime.handle().block_on(bounded),
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(describe(e)),
            Err(_) => Err(self.unreachable(format!(
                "no answer within {} s; check that {} is up and reachable",
                timeout.as_secs(),
                self.engine
            ))),
        }
    }
}

/// Whether `e` or one of its causes is a connection refused, reset, timed out or out of
/// reach: the server is not there now (TLS and authentication failures are not this).
pub(crate) fn cut_off(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
                    | UnexpectedEof
                    | NotFound
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An error and its causes in one line, each cause once.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The first line of a secret's file (`[store] password_file`, `[state] password_file`),
/// kept zeroized; `key` names the setting in the error.
pub(crate) fn secret_file(file: &std::path::Path, key: &str) -> Result<zeroize::Zeroizing<String>, StoreError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|e| StoreError::File {
        path: file.to_path_buf(),
        message: format!("{key}: {}", portcullis_core::config::explain_unreadable(file, &e)),
    })?);
    Ok(zeroize::Zeroizing::new(
        text.lines().next().unwrap_or("").trim_end().to_string(),
    ))
}

//! `portcullis serve`: the HTTP gateway. The portal, the forward-auth endpoints, Basic
//! authentication, the reverse proxy and the FastCGI authorizer for Apache are thin adapters around
//! `portcullis_core::authz::Authorizer`.

mod apache;
mod audit;
pub mod check;
mod error;
mod forward;
mod html;
mod listener;
mod metrics;
mod pace;
mod pam_socket;
mod passkey_page;
mod portal;
mod proxy;
mod push_page;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod router_tests;
mod tls;
mod web;

use crate::settings::{LogFormat, Settings};
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};
use portcullis_core::authz::{AccessRequest, AuthEvent, Authorizer, Decision};
use portcullis_core::client::TrustedProxies;
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::gate::GateError;
use portcullis_core::invite::InviteStore;
use portcullis_core::redirect::ReturnTargets;
use portcullis_core::{Clock, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Everything a request handler needs, shared by all of them.
pub struct App {
    /// The configuration in force.
    pub config: Settings,
    /// The core's state: rules, sessions, regulation, the Basic cache, the directory.
    pub engine: Engine,
    /// Where people may be sent back to after login.
    pub targets: ReturnTargets,
    /// Proxies whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// Enrollment invitations (SQLite store only).
    pub invites: Option<Arc<dyn InviteStore>>,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Key for CSRF tokens (random per process).
    pub csrf_key: [u8; 32],
    /// Bounds concurrent password hashing so memory stays flat under a login flood.
    pub login_slots: Arc<tokio::sync::Semaphore>,
    /// How long a real password check takes, so a banned attempt is answered as slowly.
    pub pace: pace::Pace,
    /// Set at shutdown: long-lived splices (WebSockets) close themselves.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The app behind the gateway in reverse-proxy mode.
    pub upstream: Option<proxy::Upstream>,
    /// `WWW-Authenticate` for a Basic challenge when `[basic]` is on, made once.
    pub basic_challenge: Option<axum::http::HeaderValue>,
}

impl App {
    /// Builds the shared state from a configuration: opens its stores, with the system clock.
    pub fn new(config: Settings) -> Result<Self> {
        let stores = portcullis_store::open_all(&config.core)?;
        Self::from_parts(config, stores, Arc::new(SystemClock))
    }

    /// Builds the shared state from a configuration and stores and a clock already made, so a
    /// test can run the whole gateway in process on a clock it moves.
    pub fn from_parts(config: Settings, stores: portcullis_store::Stores, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut engine = Engine::from_config(
            &config.core,
            Parts {
                directory: stores.directory,
                sessions: stores.sessions,
                regulation: stores.regulation,
                external: stores.external,
                pushes: crate::duo::service(&config.core, clock.clone())?,
            },
            clock,
        )?;
        engine.passkeys = crate::passkeys::service(&config)?;
        let targets = ReturnTargets::new(&config.core.access.protected_domains)
            .with_context(|| format!("{}: [access] protected_domains", config.core.path.display()))?;
        let proxies = TrustedProxies::new(&config.server.trusted_proxies)
            .with_context(|| format!("{}: [server] trusted_proxies", config.core.path.display()))?;
        let mut csrf_key = [0u8; 32];
        csrf_key.copy_from_slice(&portcullis_core::random::bytes(32));
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        // A realm that cannot be a header value leaves the challenge out (the 401 stands).
        let basic_challenge = if config.core.basic.enabled {
            let realm = config.core.basic.realm.replace('"', "");
            axum::http::HeaderValue::try_from(format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")).ok()
        } else {
            None
        };
        Ok(App {
            engine,
            invites: stores.invites,
            targets,
            proxies,
            metrics: metrics::Metrics::default(),
            csrf_key,
            login_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            pace: pace::Pace::seeded(),
            stopping: tokio::sync::watch::Sender::new(false),
            upstream: config.proxy.authority().map(proxy::Upstream::new),
            basic_challenge,
            config,
        })
    }

    /// The shared decision maker over this state.
    pub fn authorizer(&self) -> Authorizer<'_> {
        self.engine.authorizer()
    }
}

/// What running a decision may cost, which decides where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// In-memory work (a session lookup, a resent Basic header in its linger time): inline.
    Cheap,
    /// A directory read: on a blocking worker, without taking a login slot.
    Io,
    /// Password hashing: on a blocking worker holding one of the bounded login slots.
    Hash,
}

/// An `AccessRequest` with owned parts, so that it can move to a blocking worker.
#[derive(Clone)]
pub struct Ask {
    /// Method of the original request.
    pub method: String,
    /// Host of the original request.
    pub host: String,
    /// Path and query of the original request.
    pub path: String,
    /// The client's address.
    pub client_ip: std::net::IpAddr,
    /// The session cookie's value, if any.
    pub session: Option<String>,
    /// Basic credentials, if any.
    pub basic: Option<portcullis_core::authz::BasicCredentials>,
}

impl Ask {
    /// A copy of `req` that owns its parts.
    pub fn of(req: &AccessRequest<'_>) -> Ask {
        Ask {
            method: req.method.to_string(),
            host: req.host.to_string(),
            path: req.path.to_string(),
            client_ip: req.client_ip,
            session: req.session.map(str::to_string),
            basic: req.basic.clone(),
        }
    }

    /// The request this describes (its credentials copied).
    pub fn request(&self) -> AccessRequest<'_> {
        AccessRequest {
            method: &self.method,
            host: &self.host,
            path: &self.path,
            client_ip: self.client_ip,
            session: self.session.as_deref(),
            basic: self.basic.clone(),
        }
    }
}

pub use error::GatewayError;

/// The outcome of one decision (its auth event already logged and counted), or why none
/// could be made (already logged; render its status).
pub type DecisionResult = Result<Decision, GatewayError>;

impl App {
    /// Runs password-hashing work on a blocking worker that holds one login slot until the
    /// work ends. The permit moves into the worker: a client that disconnects drops only the
    /// waiting future, never the slot of a hash still running (which would let a flood of
    /// aborted logins run unbounded hashes). `None`: the slots are closed or the worker died.
    pub async fn with_login_slot<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slot = self.login_slots.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .ok()
    }

    /// [`App::with_login_slot`] for work that may hash a password: a banned attempt (which
    /// hashes nothing) then waits as long as a hash takes, outside the slot, so a flood of
    /// banned attempts costs time, not slots, and its answers come no faster than others.
    pub async fn with_paced_login_slot<T, F>(&self, work: F, banned: impl Fn(&T) -> bool) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let timed = move || {
            let t = std::time::Instant::now();
            (work(), t.elapsed())
        };
        let (result, took) = self.with_login_slot(timed).await?;
        if banned(&result) {
            self.pace.wait(took).await;
        } else {
            self.pace.record(took);
        }
        Some(result)
    }

    /// Decides an adapter's request: inline, or on a bounded blocking worker when Basic
    /// credentials must be hashed (a resent header inside its linger time is a cache hit).
    /// The request is only copied when it must move to a worker: the per-request check of a
    /// session decides on the adapter's borrowed parts.
    pub async fn decide(self: &Arc<Self>, req: AccessRequest<'_>, started: std::time::Instant) -> DecisionResult {
        let cost = match &req.basic {
            Some(c) if !self.engine.basic_cache.is_fresh(c, req.client_ip, self.clock_now()) => Cost::Hash,
            _ => Cost::Cheap,
        };
        if cost == Cost::Cheap {
            let result = self.authorizer().decide(&req);
            return self.conclude(result, started).await;
        }
        let mut ask = Ask::of(&req);
        drop(req);
        let app = self.clone();
        self.run_decision(cost, started, move || {
            let basic = ask.basic.take();
            app.authorizer().decide(&AccessRequest { basic, ..ask.request() })
        })
        .await
    }

    /// Runs `decide` where `cost` says; its auth event and any failure are logged and
    /// counted here.
    pub async fn run_decision<F>(self: &Arc<Self>, cost: Cost, started: std::time::Instant, decide: F) -> DecisionResult
    where
        F: FnOnce() -> Result<(Decision, Option<AuthEvent>), GateError> + Send + 'static,
    {
        let result = match cost {
            Cost::Cheap => decide(),
            Cost::Io => match tokio::task::spawn_blocking(decide).await {
                Ok(r) => r,
                Err(_) => {
                    self.metrics.decision(metrics::Kind::Error, started.elapsed());
                    return Err(GatewayError::Worker("authorization").logged());
                }
            },
            Cost::Hash => {
                let banned = |r: &Result<(Decision, Option<AuthEvent>), GateError>| matches!(r, Ok((_, Some(e))) if e.failure == Some("banned"));
                let Some(result) = self.with_paced_login_slot(decide, banned).await else {
                    return Err(GatewayError::Busy.logged());
                };
                result
            }
        };
        self.conclude(result, started).await
    }

    /// Logs and counts a decision's event, and waits for the person's answer to a push the
    /// decision sent (outside any login slot).
    async fn conclude(
        self: &Arc<Self>,
        result: Result<(Decision, Option<AuthEvent>), GateError>,
        started: std::time::Instant,
    ) -> DecisionResult {
        let failed = |e: GateError| {
            self.metrics.decision(metrics::Kind::Error, started.elapsed());
            GatewayError::failed("authorization", e).logged()
        };
        let (decision, event) = result.map_err(failed)?;
        if let Some(e) = &event {
            self.record(e);
        }
        let Decision::AwaitPush(ticket) = decision else {
            return Ok(decision);
        };
        // The password passed in a slot; the person's approval is waited for outside one.
        let app = self.clone();
        let waited = tokio::task::spawn_blocking(move || app.authorizer().finish_basic_push(&ticket)).await;
        let Ok(result) = waited else {
            self.metrics.decision(metrics::Kind::Error, started.elapsed());
            return Err(GatewayError::Worker("push").logged());
        };
        let (decision, event) = result.map_err(failed)?;
        if let Some(e) = &event {
            self.record(e);
        }
        Ok(decision)
    }

    /// The one place an authentication attempt is logged (audit line) and counted.
    pub fn record(&self, e: &AuthEvent) {
        audit::log(e);
        self.metrics.auth(e.failure.is_none(), e.banned);
    }
}

/// The gateway's routes.
pub fn router(app: Arc<App>) -> Router {
    let mut pages = Router::new()
        .route("/login", get(portal::login_page).post(portal::login_submit))
        .route("/login/code", get(portal::code_page).post(portal::code_submit))
        .route("/login/push", get(push_page::push_page).post(push_page::push_submit))
        .route("/login/push/status", get(push_page::push_status))
        .route("/login/push.js", get(push_page::push_script))
        .route("/login/passkey/begin", post(passkey_page::login_begin))
        .route("/login/passkey/finish", post(passkey_page::login_finish))
        .route("/login/passwordless/begin", post(passkey_page::passwordless_begin))
        .route("/login/passwordless/finish", post(passkey_page::passwordless_finish))
        .route("/passkey.js", get(passkey_page::passkey_script))
        .route("/settings", get(passkey_page::settings_page))
        .route("/settings/passkeys/begin", post(passkey_page::register_begin))
        .route("/settings/passkeys/finish", post(passkey_page::register_finish))
        .route("/settings/passkeys/remove", post(passkey_page::remove))
        .route("/logout", get(portal::logout_page).post(portal::logout))
        .route("/logout/", post(portal::logout))
        .route("/enroll/{token}", get(portal::enroll_page).post(portal::enroll_submit))
        .route("/enroll/{token}/passkey", get(passkey_page::enroll_page))
        .route("/enroll/{token}/passkey/begin", post(passkey_page::enroll_begin))
        .route("/enroll/{token}/passkey/finish", post(passkey_page::enroll_finish))
        .route("/enroll/done", get(passkey_page::enrolled));
    // A login without a return address lands on `/`: it says who is signed in.
    pages = if app.config.server.demo_page {
        pages.route("/", get(portal::demo_page))
    } else {
        pages.route("/", get(portal::home_page))
    };
    // Browser-facing headers on the people's pages only: the per-request check stays lean.
    let pages = pages.layer(axum::middleware::map_response_with_state(
        app.clone(),
        web::portal_headers,
    ));
    let mut r = Router::new()
        .route(
            "/api/authz/auth-request",
            get(forward::auth_request).head(forward::auth_request),
        )
        .route(
            "/api/authz/forward-auth",
            get(forward::forward_auth).head(forward::forward_auth),
        )
        .route("/api/health", get(web::health))
        .merge(pages);
    // The gateway's pages live where portal_url says, so they can share a host with an app.
    let base = app.base();
    if !base.is_empty() {
        r = Router::new().nest(base, r);
    }
    if app.upstream.is_some() {
        r = r.fallback(proxy::handle);
    }
    r.with_state(app)
}

/// The metrics listener's routes (`[server] metrics_listen`): never on the portal.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(web::metrics))
        .route("/api/health", get(web::health))
        .with_state(app)
}

/// How long argon2 work areas are kept after their last use.
const WORK_AREAS_IDLE: Duration = Duration::from_secs(5);

/// How often a gateway that starts before its database server tries again.
const STORE_RETRY: Duration = Duration::from_secs(2);

/// Opens the configured stores. A PostgreSQL or Redis server that does not answer yet is
/// waited for (a gateway started before its engines serves as soon as they are up, nothing
/// before: clients meet a closed port, which fails closed); a refusal (a wrong password or
/// CA, a newer schema) is an error at once.
fn open_when_they_answer(core: &portcullis_core::config::Config) -> Result<portcullis_store::Stores> {
    let mut waited = false;
    loop {
        match portcullis_store::open_all(core) {
            Ok(stores) => {
                if waited {
                    tracing::info!("the store answers now; starting");
                }
                return Ok(stores);
            }
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, retry_s = STORE_RETRY.as_secs(), "the store does not answer; waiting for it before serving");
                waited = true;
                std::thread::sleep(STORE_RETRY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the gateway until Ctrl-C or SIGTERM; SIGHUP re-reads the configuration (and opens
/// the stores again) and, when it is sound, serves with it; else the old one stays.
pub fn serve(config: Settings, listen: Option<String>) -> Result<()> {
    audit::init(config.server.log_format == LogFormat::Json);
    let listen = listen.unwrap_or_else(|| config.server.listen.clone());
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: give an address such as 127.0.0.1:9091"))?;
    let app = prepare(config, addr, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?
            .into_std()?;
        tracing::info!(%addr, "portcullis gateway listening");
        let mut running = Running::start(app, &listener).await?;
        ready();
        use tokio::signal::unix::{SignalKind, signal};
        let (mut hangup, mut term) = (signal(SignalKind::hangup())?, signal(SignalKind::terminate())?);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hangup.recv() => {}
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            let path = running.app.config.core.path.clone();
            let old = running.app.clone();
            let next = tokio::task::spawn_blocking(move || {
                let config = Settings::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
                prepare(config, addr, Some(&old))
            })
            .await
            .map_err(|_| anyhow::anyhow!("the reload worker died"))
            .and_then(|r| r);
            match next {
                Ok(app) => {
                    running.stop().await;
                    running = Running::start(app, &listener).await?;
                    tracing::info!("configuration reloaded (SIGHUP)");
                }
                Err(e) => tracing::error!("reload refused, the running configuration stays: {e:#}"),
            }
            ready();
        }
        running.stop().await;
        Ok(())
    })
}

/// Tells systemd (`Type=notify`) the gateway serves; nothing without NOTIFY_SOCKET.
fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd the gateway is ready (NOTIFY_SOCKET)");
    }
}

/// Checks `config` for serving on `addr` and builds the gateway's state on its stores.
/// On a reload (`old`), sessions kept only in memory are carried over, so nobody is signed
/// out (stored sessions are read from their store anyway).
fn prepare(config: Settings, addr: SocketAddr, old: Option<&Arc<App>>) -> Result<Arc<App>> {
    if !config.serve_problems.is_empty() {
        bail!(
            "the gateway cannot start with this configuration (`portcullis config check` lists it):\n  {}",
            config.serve_problems.join("\n  ")
        );
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if !config.core.session.secure {
        if !addr.ip().is_loopback() {
            bail!(
                "[session] secure = false is allowed only when listening on loopback (a plain-HTTP demo); use HTTPS in front of portcullis"
            );
        }
        tracing::warn!(
            "[session] secure = false: session cookies are sent over plain HTTP; use this only for a loopback demo"
        );
    }
    if let Some(old) = old
        && old.config.server.listen != config.server.listen
    {
        tracing::warn!("[server] listen changed: the gateway keeps its address until it is restarted");
    }
    let stores = match old {
        None => open_when_they_answer(&config.core)?,
        Some(_) => portcullis_store::open_all(&config.core)?,
    };
    let app = App::from_parts(config, stores, Arc::new(SystemClock))?;
    if let Some(old) = old
        && app.engine.sessions.in_memory_only()
        && old.engine.sessions.in_memory_only()
    {
        app.engine.sessions.take_from(&old.engine.sessions);
    }
    Ok(Arc::new(app))
}

/// One configuration being served: the main listener's loop and everything beside it.
struct Running {
    app: Arc<App>,
    stop: tokio::sync::oneshot::Sender<()>,
    main: tokio::task::JoinHandle<()>,
    beside: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves `app` on `listener` (kept open across reloads, so no connection is refused),
    /// and binds what its configuration adds: FastCGI, metrics, the check and PAM sockets.
    async fn start(app: Arc<App>, listener: &std::net::TcpListener) -> Result<Running> {
        let mut beside = Vec::new();
        let fcgi = app.config.apache.fastcgi_listen.clone();
        if !fcgi.is_empty() {
            let fcgi_listener = tokio::net::TcpListener::bind(&fcgi)
                .await
                .with_context(|| format!("[apache] fastcgi_listen: cannot listen on {fcgi}"))?;
            tracing::info!(addr = %fcgi, "FastCGI authorizer for mod_authnz_fcgi listening");
            beside.push(tokio::spawn(apache::serve(app.clone(), fcgi_listener)));
        }
        let metrics = app.config.server.metrics_listen.clone();
        if !metrics.is_empty() {
            let metrics_listener = tokio::net::TcpListener::bind(&metrics)
                .await
                .with_context(|| format!("[server] metrics_listen: cannot listen on {metrics}"))?;
            let metrics_addr = metrics_listener.local_addr()?;
            if !metrics_addr.ip().is_loopback() {
                tracing::warn!(addr = %metrics_addr, "metrics are served beyond loopback: firewall the port");
            }
            tracing::info!(addr = %metrics_addr, "metrics listening");
            let routes = metrics_router(app.clone());
            beside.push(tokio::spawn(listener::serve(
                app.clone(),
                routes,
                listener::Serves::Router,
                metrics_listener,
                None,
                std::future::pending(),
            )));
        }
        let socket = app.config.apache.check_socket.clone();
        if !socket.is_empty() {
            let a = &app.config.apache;
            beside.push(tokio::spawn(check::serve(
                app.clone(),
                check::bind(
                    "[apache] check_socket",
                    &socket,
                    &a.check_socket_group,
                    a.check_socket_mode,
                )?,
            )));
            tracing::info!(path = %socket, "check socket for `portcullis check` listening");
        }
        let socket = app.config.core.pam.socket.clone();
        if !socket.is_empty() {
            // The gateway's user and group (0660), as the check socket; whoever connects,
            // only root (sshd) and the gateway's own user are answered (peer credentials).
            let listener = check::bind("[pam] socket", &socket, "", 0o660)?;
            beside.push(tokio::spawn(pam_socket::serve(app.clone(), listener, &socket)?));
            tracing::info!(path = %socket, "socket for pam_portcullis.so listening");
        }
        // The work areas of a burst of logins (19 MiB each, with the default argon2id
        // parameters) go back to the system once no login has used them for a while.
        beside.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(WORK_AREAS_IDLE);
            loop {
                tick.tick().await;
                portcullis_core::password::release_idle_work_areas(WORK_AREAS_IDLE);
            }
        }));
        let purge = app.clone();
        beside.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = purge.engine.purge() {
                    tracing::error!(error = %e, "cannot purge expired sessions or regulation records");
                }
            }
        }));
        let tls = match (&app.config.server.tls_cert, &app.config.server.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = Arc::new(tls::Tls::new(
                    app.config.core.resolve(cert),
                    app.config.core.resolve(key),
                )?);
                tracing::info!("serving HTTPS");
                beside.push(tls::watch(tls.clone()));
                Some(tls)
            }
            _ => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accept = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
        let main = tokio::spawn(listener::serve(
            app.clone(),
            router(app.clone()),
            listener::Serves::Gateway,
            accept,
            tls,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Running {
            app,
            stop,
            main,
            beside,
        })
    }

    /// Stops accepting with this configuration; connections already open finish with it.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.main.await;
        for task in &self.beside {
            task.abort();
        }
        for task in self.beside {
            let _ = task.await;
        }
        // The splices saw `stopping`: a moment to close their connections in order.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! The gateway's own accept loop, for plain HTTP and for HTTPS alike: a cap on open
//! connections (more are closed at accept and counted), a deadline for each request's
//! headers that is also the idle limit of a kept-alive connection, and a TLS handshake
//! deadline. Without them, half-sent requests (slowloris) hold descriptors until none is left.

use super::tls::Tls;
use super::{App, forward};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a TLS client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The gateway's: the forward-auth endpoints are answered here, without the router
    /// (routing, boxing and the request's extensions cost a check as much as its decision),
    /// and everything else by it.
    Gateway,
    /// Only the router's (the metrics listener: no forward-auth there).
    Router,
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes.
pub async fn serve(
    app: Arc<App>,
    router: Router,
    serves: Serves,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(app.config.server.max_connections));
    let header_timeout = Duration::from_secs(app.config.server.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => {
                app.stopping.send_replace(true);
                return;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer, "connection limit reached; closed at accept");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            app.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let _counted = Counted(&app);
            let _slot = slot;
            let base = app.base().to_string();
            let gateway = app.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let endpoint = match serves {
                    Serves::Gateway => forward::endpoint(&base, req.method(), req.uri().path()),
                    Serves::Router => None,
                };
                let (app, mut router) = (gateway.clone(), router.clone());
                async move {
                    if let Some(flavor) = endpoint {
                        return Ok::<_, std::convert::Infallible>(
                            forward::handle(&app, peer, req.headers(), flavor).await,
                        );
                    }
                    // The router's handlers find the client's address where axum's own server puts it.
                    req.extensions_mut().insert(ConnectInfo(peer));
                    tower_service::Service::call(&mut router, req).await
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            match tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    let stream = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let _ = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).with_upgrades().await;
                }
            }
        });
    }
}

/// Takes a connection off the gauge when its task ends, however it ends.
struct Counted<'a>(&'a App);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

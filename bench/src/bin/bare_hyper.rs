//! The reference for the gateway benchmark (`bench/gateway.sh`): a bare hyper 1 HTTP/1.1
//! server that answers every request with 204 and does nothing else.
//!
//! It runs the same way `portcullis serve` does: a tokio multi-thread runtime with the
//! default worker count (`available_parallelism`, so 1 worker when pinned to one core with
//! `taskset -c 0`), one task per connection, no TCP_NODELAY (axum's `serve` sets none).
//! Usage: `bare_hyper 127.0.0.1:PORT`.

use anyhow::{Context, Result};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

async fn no_content(_req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

fn main() -> Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("bare_hyper listening on {addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(no_content))
                    .await;
            });
        }
    })
}

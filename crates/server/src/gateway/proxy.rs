//! Reverse-proxy mode (`[proxy] upstream`): every request that is not for the portal is
//! decided like a forward-auth request and, when allowed, forwarded to the app with its
//! body streamed both ways, WebSocket upgrades spliced through, the Host header kept,
//! the client's own identity headers dropped and the gateway's added.

use super::App;
use super::forward::{self, Flavor, Original};
use super::metrics::Kind;
use super::web::names;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use portcullis_core::authz::{Decision, Identity};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Headers that claim a client address; a client's own copies never reach the app (the
/// gateway sets `X-Forwarded-*`, `X-Real-IP` and `Forwarded` itself).
const ADDRESS_CLAIMS: [&str; 8] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
];

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1). Names, not strings:
/// each is removed from every proxied request and response, and a string would be parsed
/// into a name each time.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The app behind the gateway and a pooled HTTP/1.1 client to it.
pub struct Upstream {
    /// `host:port` of the app.
    authority: String,
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    /// A client for the app at `authority` (`host:port`).
    pub fn new(authority: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Upstream {
            authority: authority.to_string(),
            client,
        }
    }
}

/// Everything not routed to the portal: decide, then forward or answer.
pub async fn handle(State(app): State<Arc<App>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let started = Instant::now();
    let Some(upstream) = app.upstream.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let trusted = app.proxies.trusts(peer.ip());
    let original = match describe(&app, trusted, &req) {
        Ok(o) => o,
        Err(why) => {
            app.metrics.decision(Kind::BadRequest, started.elapsed());
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    let headers = req.headers();
    let client_ip = match app.client_ip(peer, headers) {
        Ok(ip) => ip,
        Err(e) => {
            app.metrics.decision(Kind::BadRequest, started.elapsed());
            return super::web::bad_forwarding(e);
        }
    };
    let ask = original.request(&app, client_ip, headers);
    // Asked again while a WebSocket stays open, so logout, lock and expiry end it; only an
    // upgrade needs the copy, so ordinary requests make none.
    let recheck = wants_upgrade(headers).then(|| super::Ask::of(&ask));
    let has_basic = ask.basic.is_some();
    let decision = match app.decide(ask, started).await {
        Ok(d) => d,
        Err(e) => return e.status().into_response(),
    };
    match decision {
        Decision::Allow(identity) => {
            app.metrics.decision(Kind::Allow, started.elapsed());
            let forwarded = Forwarded {
                client_ip,
                peer: peer.ip(),
                trusted,
                scheme: original.scheme(),
                host: &original.host,
                drop_authorization: has_basic,
            };
            pass(&app, upstream, req, identity.as_ref(), &forwarded, recheck).await
        }
        other => {
            let browser = forward::wants_html(req.headers()) && !has_basic;
            forward::render(&app, &original, other, Flavor::ForwardAuth, browser, true, started)
        }
    }
}

/// The request as the client sent it, in the terms of the access rules.
fn describe(app: &App, trusted: bool, req: &Request) -> Result<Original, &'static str> {
    let h = req.headers();
    let one = |name: &HeaderName| {
        super::web::single(h, name).map_err(|e| match e {
            super::web::DuplicateOrBad::Duplicate => "a Host or X-Forwarded-* header was sent twice",
            super::web::DuplicateOrBad::Bad => "a Host or X-Forwarded-* header is not visible ASCII",
        })
    };
    // RFC 9112 §3.2: a request with more than one Host is answered 400.
    let own_host = one(&header::HOST)?;
    let (proxy_host, proxy_scheme) = if trusted {
        (one(&names::X_FORWARDED_HOST)?, one(&names::X_FORWARDED_PROTO)?)
    } else {
        (None, None)
    };
    // An absolute-form target names the host itself (RFC 9112 §3.2.2); one that disagrees
    // with Host would be judged for one host and served for the other.
    let target = req.uri().authority().map(|a| a.as_str());
    if let (Some(t), Some(h)) = (target, own_host)
        && !t.eq_ignore_ascii_case(h)
    {
        return Err("the request target's host is not the Host header");
    }
    let host = proxy_host.or(own_host).or(target).ok_or("no Host header")?;
    let default_scheme = if app.config.server.portal_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let scheme = proxy_scheme.unwrap_or(default_scheme);
    let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Original::new(req.method().as_str(), scheme, host, uri).map_err(|part| match part {
        forward::BadPart::Scheme => "X-Forwarded-Proto must be http or https",
        forward::BadPart::Host => "the Host header is not a host name",
        forward::BadPart::Path => "the request target must be a path starting with /",
    })
}

/// What the app is told about the client.
struct Forwarded<'o> {
    client_ip: IpAddr,
    peer: IpAddr,
    trusted: bool,
    scheme: &'o str,
    host: &'o str,
    /// The `Authorization` header held the password and code: the app never sees them.
    drop_authorization: bool,
}

/// True when `name` is one of the identity headers, in any spelling an app might read
/// it under (`Remote_User` becomes `HTTP_REMOTE_USER` in CGI just as `Remote-User` does).
fn is_identity(name: &HeaderName) -> bool {
    names::IDENTITY.iter().any(|h| same_name(name.as_str(), h.as_str()))
}

/// True when `name` claims something about the client's address or the original request
/// (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`, ...), in any spelling.
fn is_address_claim(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.get(..12).is_some_and(|p| same_name(p, "x-forwarded-")) || ADDRESS_CLAIMS.iter().any(|c| same_name(n, c))
}

/// Header names (already lower case) compared with `_` read as `-`, without a copy: the
/// check runs for every header of every proxied request.
fn same_name(a: &str, b: &str) -> bool {
    let dash = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| dash(x) == dash(y))
}

/// The names a `Connection` header lists as hop-by-hop, besides the fixed ones.
fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// True when the client asks to switch protocols (WebSocket).
fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_listed(h).iter().any(|t| t == "upgrade")
}

/// Removes hop-by-hop headers in place, keeping `Upgrade` when switching protocols.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if h.contains_key(header::CONNECTION) {
        for name in connection_listed(h) {
            if !(upgrade && name == "upgrade") {
                h.remove(name.as_str());
            }
        }
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
    if !upgrade {
        h.remove(header::UPGRADE);
    }
}

/// The `Cookie` header without the gateway's own cookies, or `None` when nothing is left.
fn app_cookies(h: &HeaderMap, ours: &[&str]) -> Option<HeaderValue> {
    let values = h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    portcullis_core::cookie::without(values, ours).and_then(|c| HeaderValue::from_str(&c).ok())
}

/// Rewrites the client's headers for the app.
fn upstream_headers(app: &App, h: &mut HeaderMap, identity: Option<&Identity>, f: &Forwarded<'_>, upgrade: bool) {
    strip_hop_by_hop(h, upgrade);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // A chain from a trusted proxy is extended (client_ip checked every entry of it);
    // anything else a client claims is replaced.
    // Formatted once: an address's Display is costly next to the rest of a forwarded request.
    let client = f.client_ip.to_string();
    let xff = match super::web::joined(h, &names::X_FORWARDED_FOR) {
        Some(chain) if f.trusted => format!("{chain}, {}", f.peer),
        _ => client.clone(),
    };
    let spoofed: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_identity(n) || is_address_claim(n))
        .cloned()
        .collect();
    for name in spoofed {
        h.remove(name);
    }
    // This hop already answered any `Expect: 100-continue`; the app gets the body as it comes.
    h.remove(header::EXPECT);
    if f.drop_authorization {
        h.remove(header::AUTHORIZATION);
    }
    let cookies = app_cookies(h, &[&app.config.core.session.cookie_name, super::web::CSRF_COOKIE]);
    h.remove(header::COOKIE);
    if let Some(c) = cookies {
        h.insert(header::COOKIE, c);
    }
    let set = |h: &mut HeaderMap, name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(h, names::X_FORWARDED_FOR, &xff);
    set(h, names::X_FORWARDED_PROTO, f.scheme);
    set(h, names::X_FORWARDED_HOST, f.host);
    set(h, names::X_REAL_IP, &client);
    let node = match f.client_ip {
        IpAddr::V4(_) => client,
        IpAddr::V6(_) => format!("\"[{client}]\""),
    };
    set(
        h,
        header::FORWARDED,
        &format!("for={node};host=\"{}\";proto={}", f.host, f.scheme),
    );
    if let Some(id) = identity {
        set(h, names::REMOTE_USER, &id.user);
        set(h, names::REMOTE_GROUPS, &id.groups_value());
        set(h, names::REMOTE_NAME, id.display_name.as_deref().unwrap_or(""));
        set(h, names::REMOTE_EMAIL, id.email.as_deref().unwrap_or(""));
    }
}

/// Forwards an allowed request and returns the app's answer, streamed.
async fn pass(
    app: &Arc<App>,
    upstream: &Upstream,
    mut req: Request,
    identity: Option<&Identity>,
    f: &Forwarded<'_>,
    recheck: Option<super::Ask>,
) -> Response {
    let upgrade = wants_upgrade(req.headers());
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let Ok(uri) = format!("http://{}{path}", upstream.authority).parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "unusable request target").into_response();
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    upstream_headers(app, &mut parts.headers, identity, f, upgrade);
    let mut response = match upstream.client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(upstream = %upstream.authority, error = %e, "the app did not answer");
            return (StatusCode::BAD_GATEWAY, "The protected application is not answering.").into_response();
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_side), Some(recheck)) = (client_side, recheck) else {
            tracing::error!("the app switched protocols unasked; refusing");
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let app_side = hyper::upgrade::on(&mut response);
        let app = app.clone();
        tokio::spawn(async move {
            match tokio::try_join!(client_side, app_side) {
                Ok((client, upstream_io)) => splice(&app, client, upstream_io, recheck).await,
                Err(e) => tracing::warn!(error = %e, "protocol switch failed"),
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, Body::new(body))
}

/// Copies an upgraded connection both ways for as long as the request it came with is
/// still allowed: asked again every `[session] refresh` seconds (5 to 60), so a logout, a
/// lock, a removal or the session's end closes it; and closed when the gateway stops.
async fn splice(
    app: &Arc<App>,
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    recheck: super::Ask,
) {
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let mut stopping = app.stopping.subscribe();
    let every = Duration::from_secs(app.config.core.session.refresh.clamp(5, 60));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            _ = tick.tick() => {
                let still = matches!(app.decide(recheck.request(), Instant::now()).await, Ok(Decision::Allow(_)));
                if !still {
                    tracing::info!(path = %recheck.path, "WebSocket closed: the request is no longer allowed");
                    return;
                }
            }
            _ = stopping.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn identity_headers_in_any_spelling_are_recognised() {
        for name in ["remote-user", "Remote_User", "REMOTE-GROUPS", "remote_email"] {
            assert!(is_identity(&HeaderName::from_bytes(name.as_bytes()).unwrap()), "{name}");
        }
        assert!(!is_identity(&HeaderName::from_static("remote-addr")));
    }

    #[test]
    fn hop_by_hop_headers_go_and_listed_ones_too() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        assert!(!wants_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);

        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn the_gateways_cookies_are_not_passed_on() {
        let h = map(&[
            ("cookie", "a=1; portcullis_session=s3cret"),
            ("cookie", "portcullis_csrf=x; b=2"),
        ]);
        let kept = app_cookies(&h, &["portcullis_session", "portcullis_csrf"]).unwrap();
        assert_eq!(kept, "a=1; b=2");
        let only_ours = map(&[("cookie", "portcullis_session=s3cret")]);
        assert!(app_cookies(&only_ours, &["portcullis_session"]).is_none());
    }
}

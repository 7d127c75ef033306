//! HTTP plumbing shared by the handlers: client address, cookies, CSRF tokens, responses.

use super::App;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use portcullis_core::client::ForwardedError;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The client's address as an extractor: a trusted proxy's unusable `X-Forwarded-For` or
/// `X-Real-IP` is answered 400 before the handler runs.
pub struct ClientIp(pub IpAddr);

impl axum::extract::FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| status(500))?;
        app.client_ip(peer, &parts.headers)
            .map(ClientIp)
            .map_err(bad_forwarding)
    }
}

/// The 400 answer for an unusable client address from a trusted proxy (logged, since it
/// is a misconfigured or attacked proxy).
pub fn bad_forwarding(e: ForwardedError) -> Response {
    tracing::warn!(error = %e, "forwarded client address refused");
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

/// The one value of a header that decides what is asked for: `Ok(None)` when absent, an
/// error when sent twice or not visible ASCII (a second copy is a request smuggled past
/// whichever reader takes the other one).
pub fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, DuplicateOrBad> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DuplicateOrBad::Duplicate);
    }
    first.to_str().map(Some).map_err(|_| DuplicateOrBad::Bad)
}

/// Why [`single`] refused a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateOrBad {
    /// Sent more than once.
    Duplicate,
    /// Not visible ASCII.
    Bad,
}

/// `GET /api/health`.
pub async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    let app = app.clone();
    let answer = tokio::task::spawn_blocking(move || app.engine.ping()).await;
    let json = [(header::CONTENT_TYPE, "application/json")];
    match answer {
        Ok(Ok(())) => (StatusCode::OK, json, "{\"status\":\"ok\"}"),
        // Who asks may be anyone: the detail goes to the log, not into the answer.
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, json, "{\"status\":\"unavailable\"}")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, json, "{\"status\":\"unavailable\"}"),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (sessions, bans) = app.engine.gauges();
    let text = app.metrics.render(sessions, bans);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

impl App {
    /// Now, in unix seconds.
    pub fn clock_now(&self) -> i64 {
        self.engine.clock.now()
    }

    /// The path the portal is served under (`""` at the root).
    pub fn base(&self) -> &str {
        self.config.server.base_path()
    }

    /// The client's address: the peer, or what a trusted proxy says; an unusable claim from
    /// a trusted proxy is an error the caller answers with 400.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<IpAddr, ForwardedError> {
        let raw = |name| -> Vec<&[u8]> { headers.get_all(name).iter().map(HeaderValue::as_bytes).collect() };
        self.proxies
            .client_ip(peer.ip(), &raw(&names::X_FORWARDED_FOR), &raw(&names::X_REAL_IP))
    }

    /// The session cookie's value, if sent.
    pub fn session_cookie<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        cookie(headers, &self.config.core.session.cookie_name)
    }

    /// `Set-Cookie` for a new session id.
    pub fn session_set_cookie(&self, id: &str) -> HeaderValue {
        let s = &self.config.core.session;
        let mut v = format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            s.cookie_name, s.absolute
        );
        if s.secure {
            v.push_str("; Secure");
        }
        if !s.domain.is_empty() {
            v.push_str(&format!("; Domain={}", s.domain));
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that deletes the session cookie.
    pub fn session_clear_cookie(&self) -> HeaderValue {
        let s = &self.config.core.session;
        let mut v = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0", s.cookie_name);
        if s.secure {
            v.push_str("; Secure");
        }
        if !s.domain.is_empty() {
            v.push_str(&format!("; Domain={}", s.domain));
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The CSRF token for a browser, bound to its CSRF cookie value.
    pub fn csrf_token(&self, nonce: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.csrf_key) else {
            return String::new();
        };
        mac.update(nonce.as_bytes());
        data_encoding::BASE64URL_NOPAD.encode(&mac.finalize().into_bytes())
    }

    /// True when the form's token matches the browser's CSRF cookie.
    pub fn csrf_ok(&self, headers: &HeaderMap, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Some(nonce) = cookie(headers, CSRF_COOKIE) else {
            return false;
        };
        if nonce.len() < 32 {
            return false;
        }
        // A cross-site form post from a browser that sends Origin is refused outright.
        if let Some(origin) = header_str(headers, header::ORIGIN)
            && !same_origin(&self.config.server.portal_url, origin)
        {
            return false;
        }
        self.csrf_token(nonce).as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// True when `origin` (an `Origin` header) is exactly the origin of `portal_url`: same
/// scheme, host and port, not merely a prefix of it (`https://auth.example.co` is not
/// `https://auth.example.com`). `null` matches nothing.
pub fn same_origin(portal_url: &str, origin: &str) -> bool {
    fn normalise(url: &str) -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("").to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => ":443",
            "http" => ":80",
            _ => "",
        };
        let authority = match authority.strip_suffix(default_port) {
            Some(a) if !default_port.is_empty() => a.to_string(),
            _ => authority,
        };
        (!authority.is_empty() && !authority.contains('@')).then(|| format!("{scheme}://{authority}"))
    }
    match (normalise(portal_url), normalise(origin)) {
        (Some(p), Some(o)) => p == o,
        _ => false,
    }
}

/// Name of the CSRF cookie (double-submit, HMAC-bound).
pub const CSRF_COOKIE: &str = "portcullis_csrf";

/// A fresh CSRF nonce and its `Set-Cookie` (only if the browser has none yet).
pub fn csrf_nonce(app: &App, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(n) = cookie(headers, CSRF_COOKIE).filter(|n| n.len() >= 32) {
        return (n.to_string(), None);
    }
    let nonce = data_encoding::BASE64URL_NOPAD.encode(&portcullis_core::random::bytes(24));
    let mut v = format!("{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict");
    if app.config.core.session.secure {
        v.push_str("; Secure");
    }
    (nonce, HeaderValue::from_str(&v).ok())
}

/// Header names read or written on every request, parsed once at compile time (a `&str`
/// name is parsed again at every lookup).
pub mod names {
    use axum::http::HeaderName;

    /// nginx `auth_request`: the original URL.
    pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
    /// nginx `auth_request`: the original method.
    pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
    /// The client chain a proxy reports.
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// The original scheme a proxy reports.
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// The original host a proxy reports.
    pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    /// The original path a proxy reports (Traefik, Caddy).
    pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
    /// The original method a proxy reports (Traefik, Caddy).
    pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
    /// The client address nginx reports.
    pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    /// Identity: the login name.
    pub const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
    /// Identity: groups, comma-separated.
    pub const REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
    /// Identity: display name.
    pub const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
    /// Identity: e-mail address.
    pub const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
    /// Every identity header the gateway sets (a client's own copies never reach the app).
    pub const IDENTITY: [HeaderName; 4] = [REMOTE_USER, REMOTE_GROUPS, REMOTE_NAME, REMOTE_EMAIL];
}

/// One header as text (None if absent or not visible ASCII).
pub fn header_str<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// All values of a header joined with commas (X-Forwarded-For may come several times).
pub fn joined<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The value of cookie `name` from the Cookie headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let values = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    portcullis_core::cookie::find(values, name)
}

/// A bare response with this status (500 for a code that is not one).
pub fn status(code: u16) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

/// A redirect (303 See Other, so the browser follows with GET) with optional cookies.
pub fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    no_store(&mut r);
    r
}

/// An HTML page response with optional cookies, never cached.
pub fn html(status: StatusCode, body: String, cookies: Vec<HeaderValue>) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    no_store(&mut r);
    r
}

/// Headers on every answer of the portal's pages (not forward-auth answers, not the app's):
/// `nosniff`, and HSTS when portcullis serves TLS itself (a year; subdomains are left to
/// the operator, who knows whether they all speak HTTPS).
pub async fn portal_headers(State(app): State<Arc<App>>, mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if app.config.server.tls_cert.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

fn no_store(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    // same-origin, not no-referrer: other sites still get no Referer (no return URL leaks),
    // but browsers send the portal's own form posts with their real Origin instead of
    // `Origin: null`, which the CSRF check must refuse.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// Everything but RFC 3986 unreserved characters is escaped in query values.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a value for a query string.
pub fn query_escape(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// [`query_escape`] appended to `out`.
pub fn push_query_escaped(out: &mut String, v: &str) {
    out.extend(percent_encoding::utf8_percent_encode(v, QUERY_VALUE));
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn origin_must_match_the_portal_exactly() {
        let portal = "https://auth.example.com";
        assert!(same_origin(portal, "https://auth.example.com"));
        assert!(same_origin(
            "https://auth.example.com/portal/",
            "https://AUTH.example.com"
        ));
        assert!(same_origin("https://auth.example.com:443", "https://auth.example.com"));
        assert!(same_origin("http://127.0.0.1:9091", "http://127.0.0.1:9091"));
        for other in [
            "https://auth.example.co",
            "https://auth.example.com.evil.net",
            "http://auth.example.com",
            "https://auth.example.com:8443",
            "null",
            "",
        ] {
            assert!(!same_origin(portal, other), "{other}");
        }
        assert!(!same_origin("http://127.0.0.1:9091", "http://127.0.0.1:909"));
    }
}

//! Forward-auth endpoints in the shapes Authelia users already configure:
//! `/api/authz/auth-request` for nginx `auth_request`, `/api/authz/forward-auth` for
//! Traefik and Caddy. Each turns its headers into one `AccessRequest` and renders the
//! `Decision`.

use super::App;
use super::metrics::Kind;
use super::web::{header_str, names, push_query_escaped};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::authz::{AccessRequest, BasicCredentials, Decision};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// The original request as a trusted proxy describes it.
pub(super) struct Original {
    pub(super) method: String,
    scheme: &'static str,
    pub(super) host: String,
    /// Path and query exactly as sent.
    pub(super) uri: String,
}

impl Original {
    /// Checks and normalises a request's description (the host is lowercased).
    pub(super) fn new(method: &str, scheme: &str, host: &str, uri: &str) -> Result<Original, BadPart> {
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            "https"
        } else if scheme.eq_ignore_ascii_case("http") {
            "http"
        } else {
            return Err(BadPart::Scheme);
        };
        if !valid_host(host) {
            return Err(BadPart::Host);
        }
        if !valid_uri(uri) {
            return Err(BadPart::Path);
        }
        Ok(Original {
            method: method.to_string(),
            scheme,
            host: host.to_ascii_lowercase(),
            uri: uri.to_string(),
        })
    }

    /// `http` or `https`.
    pub(super) fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// What the Authorizer is asked about this request: its cookie and, when `[basic]` is
    /// on, its Basic credentials.
    pub(super) fn request<'a>(
        &'a self,
        app: &App,
        client_ip: std::net::IpAddr,
        headers: &'a HeaderMap,
    ) -> AccessRequest<'a> {
        AccessRequest {
            method: &self.method,
            host: &self.host,
            path: &self.uri,
            client_ip,
            session: app.session_cookie(headers),
            basic: if app.config.core.basic.enabled {
                basic_credentials(headers)
            } else {
                None
            },
        }
    }

    /// The portal's login page with this request as the return URL, encoded; a default
    /// port (which the nginx snippet always sends, from `$server_port`) is left out. Built
    /// in one buffer: every anonymous request gets one.
    pub(super) fn login_url(&self, app: &App) -> String {
        let portal = app.config.server.portal_url.trim_end_matches('/');
        let default_port = if self.scheme == "https" { ":443" } else { ":80" };
        let host = self.host.strip_suffix(default_port).unwrap_or(&self.host);
        let mut out = String::with_capacity(portal.len() + 16 + 2 * (host.len() + self.uri.len()));
        out.push_str(portal);
        out.push_str("/login?rd=");
        // Escaping each part is escaping their concatenation: it works character by character.
        for part in [self.scheme, "://", host, &self.uri] {
            push_query_escaped(&mut out, part);
        }
        out
    }
}

/// The part of a request's description that was unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadPart {
    /// Not http or https.
    Scheme,
    /// Not a host name.
    Host,
    /// Not a path starting with `/` made of visible ASCII.
    Path,
}

/// Why the description of the original request was refused.
pub(super) enum Malformed {
    /// Nothing to decide on: 401 (never 200).
    Missing,
    /// Present but unusable: 400.
    Bad(&'static str),
}

/// A host name or address with an optional port (1-65535): `h`, `h:8080`, `[::1]:443`.
fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let Some((addr, rest)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match rest {
            "" => ("", None),
            _ => match rest.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    let name_ok = host.starts_with('[')
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    port_ok && name_ok
}

fn valid_uri(uri: &str) -> bool {
    uri.starts_with('/') && !uri.starts_with("//") && uri.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses `X-Original-URL` (`scheme://host[:port]/path?query`).
pub(super) fn parse_original_url(url: &str, method: &str) -> Result<Original, Malformed> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(Malformed::Bad("X-Original-URL is not an absolute URL"))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, uri) = rest.split_at(split);
    let rooted;
    let uri = if uri.is_empty() || uri.starts_with('?') {
        rooted = format!("/{uri}");
        &rooted
    } else {
        uri
    };
    Original::new(method, scheme, host, uri).map_err(|part| {
        Malformed::Bad(match part {
            BadPart::Scheme => "X-Original-URL must be http or https",
            BadPart::Host => "X-Original-URL has no valid host",
            BadPart::Path => "X-Original-URL has an invalid path",
        })
    })
}

/// The one value of a header describing the original request, believed only from a
/// trusted proxy; a duplicate or non-ASCII value is a 400.
fn described<'h>(trusted: bool, h: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Malformed> {
    if !trusted {
        return Ok(None);
    }
    super::web::single(h, name).map_err(|e| {
        Malformed::Bad(match e {
            super::web::DuplicateOrBad::Duplicate => "a header describing the original request was sent twice",
            super::web::DuplicateOrBad::Bad => "a header describing the original request is not visible ASCII",
        })
    })
}

/// The original request from nginx's `X-Original-URL`/`X-Original-Method`.
fn from_auth_request(trusted: bool, h: &HeaderMap) -> Result<Original, Malformed> {
    let url = described(trusted, h, &names::X_ORIGINAL_URL)?.ok_or(Malformed::Missing)?;
    let method = described(trusted, h, &names::X_ORIGINAL_METHOD)?.unwrap_or("GET");
    parse_original_url(url, method)
}

/// The original request from `X-Forwarded-Proto/Host/Uri/Method` (Traefik, Caddy).
fn from_forwarded(trusted: bool, h: &HeaderMap) -> Result<Original, Malformed> {
    let host = described(trusted, h, &names::X_FORWARDED_HOST)?;
    let uri = described(trusted, h, &names::X_FORWARDED_URI)?;
    let scheme = described(trusted, h, &names::X_FORWARDED_PROTO)?.unwrap_or("https");
    let method = described(trusted, h, &names::X_FORWARDED_METHOD)?.unwrap_or("GET");
    let (Some(host), Some(uri)) = (host, uri) else {
        return Err(Malformed::Missing);
    };
    Original::new(method, scheme, host, uri).map_err(|part| {
        Malformed::Bad(match part {
            BadPart::Scheme => "X-Forwarded-Proto must be http or https",
            BadPart::Host => "X-Forwarded-Host is not a host name",
            BadPart::Path => "X-Forwarded-Uri must be a path starting with /",
        })
    })
}

/// Basic credentials from an `Authorization` header, if well-formed.
pub fn basic_credentials(h: &HeaderMap) -> Option<BasicCredentials> {
    let value = header_str(h, header::AUTHORIZATION)?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Zeroizing::new(data_encoding::BASE64.decode(b64.trim().as_bytes()).ok()?);
    let text = Zeroizing::new(String::from_utf8(raw.to_vec()).ok()?);
    let (user, secret) = text.split_once(':')?;
    (!user.is_empty()).then(|| BasicCredentials {
        user: user.to_string(),
        secret: Zeroizing::new(secret.to_string()),
    })
}

/// How a proxy expects "log in first" to be said.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    /// nginx: 401 means "log in", the redirect is nginx's `error_page`.
    AuthRequest,
    /// Traefik/Caddy: the response is passed to the client as it is.
    ForwardAuth,
}

/// `GET /api/authz/auth-request` (nginx `auth_request`).
pub async fn auth_request(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    handle(&app, peer, req.headers(), Flavor::AuthRequest).await
}

/// `GET /api/authz/forward-auth` (Traefik `forwardAuth`, Caddy `forward_auth`).
pub async fn forward_auth(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    handle(&app, peer, req.headers(), Flavor::ForwardAuth).await
}

/// Which forward-auth endpoint a request is for, when it is a GET or HEAD of one: the
/// listener answers those without the router (the per-request check pays no routing).
pub fn endpoint(base: &str, method: &axum::http::Method, path: &str) -> Option<Flavor> {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return None;
    }
    match path.strip_prefix(base)? {
        "/api/authz/auth-request" => Some(Flavor::AuthRequest),
        "/api/authz/forward-auth" => Some(Flavor::ForwardAuth),
        _ => None,
    }
}

/// True when the client is a browser asking for a page.
pub(super) fn wants_html(h: &HeaderMap) -> bool {
    header_str(h, header::ACCEPT).is_some_and(|a| a.contains("text/html"))
}

/// Answers one forward-auth request.
pub async fn handle(app: &Arc<App>, peer: SocketAddr, headers: &HeaderMap, flavor: Flavor) -> Response {
    let started = Instant::now();
    let trusted = app.proxies.trusts(peer.ip());
    let original = match flavor {
        Flavor::AuthRequest => from_auth_request(trusted, headers),
        Flavor::ForwardAuth => from_forwarded(trusted, headers),
    };
    let original = match original {
        Ok(o) => o,
        Err(m) => {
            let (status, kind, why) = match m {
                Malformed::Missing => (
                    StatusCode::UNAUTHORIZED,
                    Kind::Login,
                    "no original request described (or not from a trusted proxy)",
                ),
                Malformed::Bad(why) => (StatusCode::BAD_REQUEST, Kind::BadRequest, why),
            };
            tracing::debug!(peer = %peer, trusted, why, "forward-auth request refused");
            app.metrics.decision(kind, started.elapsed());
            return (status, why).into_response();
        }
    };
    let client_ip = match app.client_ip(peer, headers) {
        Ok(ip) => ip,
        Err(e) => {
            app.metrics.decision(Kind::BadRequest, started.elapsed());
            return super::web::bad_forwarding(e);
        }
    };
    let req = original.request(app, client_ip, headers);
    let has_basic = req.basic.is_some();
    let decision = match app.decide(req, started).await {
        Ok(d) => d,
        Err(e) => return e.status().into_response(),
    };
    let browser = wants_html(headers) && !has_basic;
    // The nginx snippets say which kind of location asks: 0 from one that redirects to the
    // portal (a Basic challenge there would ride along on nginx's 302 and may open a
    // password dialog), 1 from a Basic one; older snippets send nothing.
    let basic_location = header_str(headers, "x-portcullis-basic") != Some("0");
    render(app, &original, decision, flavor, browser, basic_location, started)
}

/// A header value that takes `value`'s buffer (no copy). One that cannot be a header
/// (control characters) is sent empty, never forged.
fn owned_value(value: String) -> HeaderValue {
    if value.is_empty() {
        return HeaderValue::from_static("");
    }
    HeaderValue::from_maybe_shared(axum::body::Bytes::from(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The answer for a decision, in the flavour the proxy expects; counts it in the metrics.
pub(super) fn render(
    app: &App,
    original: &Original,
    decision: Decision,
    flavor: Flavor,
    browser: bool,
    basic_location: bool,
    started: Instant,
) -> Response {
    let (kind, response) = match decision {
        Decision::Allow(identity) => {
            let mut r = StatusCode::OK.into_response();
            // Always send all four headers, empty when nobody is signed in (a bypassed
            // resource): some proxies (Caddy 2.6's copy_headers) otherwise hand the
            // application an unexpanded placeholder, or the client's own header.
            let (user, groups, name, email) = match identity {
                Some(id) => {
                    let groups = id.groups_value();
                    (id.user, groups, id.display_name, id.email)
                }
                None => (String::new(), String::new(), None, None),
            };
            let h = r.headers_mut();
            for (header, value) in [
                (names::REMOTE_USER, user),
                (names::REMOTE_GROUPS, groups),
                (names::REMOTE_NAME, name.unwrap_or_default()),
                (names::REMOTE_EMAIL, email.unwrap_or_default()),
            ] {
                h.insert(header, owned_value(value));
            }
            (Kind::Allow, r)
        }
        Decision::Login | Decision::Challenge | Decision::AwaitPush(_) => {
            let is_challenge = matches!(decision, Decision::Challenge);
            if flavor == Flavor::ForwardAuth && browser && !is_challenge {
                let location = original.login_url(app);
                (
                    Kind::Login,
                    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
                )
            } else {
                let mut r = StatusCode::UNAUTHORIZED.into_response();
                // nginx: the snippet's `error_page 401 =302` redirects to this, so the return
                // URL is encoded here once instead of pasted into a query string by nginx.
                // From the String itself, without a copy.
                if flavor == Flavor::AuthRequest
                    && let Ok(v) = HeaderValue::try_from(original.login_url(app))
                {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                if let Some(c) = &app.basic_challenge
                    && (is_challenge || basic_location)
                {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, c.clone());
                }
                (if is_challenge { Kind::Challenge } else { Kind::Login }, r)
            }
        }
        Decision::Deny => (Kind::Deny, StatusCode::FORBIDDEN.into_response()),
        Decision::BadRequest(why) => (Kind::BadRequest, (StatusCode::BAD_REQUEST, why).into_response()),
    };
    app.metrics.decision(kind, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_url_parsing() {
        let o = parse_original_url("https://App.Example.com:8443/a/b?x=1", "POST")
            .ok()
            .unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.uri.as_str()),
            ("https", "app.example.com:8443", "/a/b?x=1")
        );
        assert_eq!(parse_original_url("https://h", "GET").ok().unwrap().uri, "/");
        for bad in [
            "",
            "/relative",
            "ftp://h/",
            "https:///x",
            "https://h//evil",
            "https://u@h/",
            "https://h/a b",
            "https://h/\r\n",
            "https://h:99999999999/",
            "https://h:0/",
            "https://h:x/",
            "https://h:1:2/",
            "https://[::1/",
            "https://[nothex]/",
        ] {
            assert!(parse_original_url(bad, "GET").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_listener_answers_only_get_and_head_of_the_two_endpoints_under_the_base() {
        use axum::http::Method;
        assert_eq!(
            endpoint("", &Method::GET, "/api/authz/auth-request"),
            Some(Flavor::AuthRequest)
        );
        assert_eq!(
            endpoint("", &Method::HEAD, "/api/authz/forward-auth"),
            Some(Flavor::ForwardAuth)
        );
        assert_eq!(
            endpoint("/sso", &Method::GET, "/sso/api/authz/auth-request"),
            Some(Flavor::AuthRequest)
        );
        // Everything else is the router's: other methods (405), other spellings (404, or the
        // reverse proxy's), the endpoints outside the portal's base path.
        for (base, method, path) in [
            ("", Method::POST, "/api/authz/auth-request"),
            ("", Method::OPTIONS, "/api/authz/forward-auth"),
            ("", Method::GET, "/api/authz/auth-request/"),
            ("", Method::GET, "/api/authz/Auth-Request"),
            ("", Method::GET, "/api/authz/auth%2Drequest"),
            ("", Method::GET, "//api/authz/auth-request"),
            ("/sso", Method::GET, "/api/authz/auth-request"),
            ("/sso", Method::GET, "/ssoapi/authz/auth-request"),
        ] {
            assert_eq!(endpoint(base, &method, path), None, "{base:?} {method} {path}");
        }
    }

    #[test]
    fn basic_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic YWxpY2U6cHcxMjM0NTY="));
        let c = basic_credentials(&h).unwrap();
        assert_eq!((c.user.as_str(), c.secret.as_str()), ("alice", "pw123456"));
        h.insert("authorization", HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&h).is_none());
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert!(basic_credentials(&h).is_none());
    }
}

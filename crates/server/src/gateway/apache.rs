//! The FastCGI authorizer for Apache's mod_authnz_fcgi: each connection carries one
//! request, which becomes one `AccessRequest` and one `Decision`, rendered as the CGI
//! headers mod_authnz_fcgi understands (`Status:`, `Location:`, `Variable-*`).
//!
//! Two Apache set-ups meet here, told apart by what Apache sends:
//! - `AuthnzFcgiCheckAuthnProvider` (cookie mode, no password): the session cookie from
//!   `HTTP_COOKIE`; no session sends the browser to the portal with a 302.
//! - `AuthBasicProvider` (`REMOTE_USER` + `REMOTE_PASSWD`): password+code with linger.
//!
//! and the authorization provider (`AuthnzFcgiDefineProvider authz`, `Require
//! portcullis-authz`, `FCGI_APACHE_ROLE=AUTHORIZER`): the `[access]` rules applied to the
//! user Apache has already authenticated, whichever provider did it.

use super::metrics::Kind;
use super::web::query_escape;
use super::{App, Cost, DecisionResult};
use portcullis_core::access::Resource;
use portcullis_core::authz::{AccessRequest, BasicCredentials, Decision};
use portcullis_fastcgi::{self as fastcgi, Request};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

/// Longest pause allowed between two reads of one request.
const IDLE: Duration = Duration::from_secs(5);
/// Longest time to receive a whole request (Apache sends it in one go).
const TOTAL: Duration = Duration::from_secs(10);

/// Accepts mod_authnz_fcgi connections until the runtime stops.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) {
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "FastCGI accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _ = conn.set_nodelay(true);
            let request = match fastcgi::read_request(&mut conn, IDLE, TOTAL).await {
                Ok(r) => r,
                Err(e) => {
                    // The error names the fault, never the request's content.
                    tracing::warn!(peer = %peer, error = %e, "malformed FastCGI request refused");
                    app.metrics.decision(Kind::BadRequest, Duration::ZERO);
                    return;
                }
            };
            let stdout = answer(&app, peer, &request).await;
            let _ = conn
                .write_all(&fastcgi::encode_response(request.id, stdout.as_bytes()))
                .await;
            let _ = conn.shutdown().await;
        });
    }
}

/// What Apache asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `AuthBasicProvider`: user and password given.
    Basic,
    /// `AuthnzFcgiCheckAuthnProvider`: the request as it is (cookie).
    CheckAuthn,
    /// `Require <provider>`: a user Apache authenticated is being authorized.
    Authorizer,
}

/// The CGI header block for one request.
async fn answer(app: &Arc<App>, peer: SocketAddr, req: &Request) -> String {
    let started = Instant::now();
    let role = match (req.param("FCGI_APACHE_ROLE"), req.param("REMOTE_PASSWD")) {
        (Some("AUTHORIZER"), _) => Role::Authorizer,
        (_, Some(_)) => Role::Basic,
        _ => Role::CheckAuthn,
    };
    // Apache is the peer; REMOTE_ADDR is its client (after mod_remoteip, if used).
    let client_ip = req
        .param("REMOTE_ADDR")
        .and_then(|a| a.parse::<IpAddr>().ok())
        .unwrap_or(peer.ip());
    let method = req.param("REQUEST_METHOD").unwrap_or("GET").to_string();
    let host = req
        .param("HTTP_HOST")
        .or(req.param("SERVER_NAME"))
        .unwrap_or("")
        .to_ascii_lowercase();
    let uri = match origin_form(req.param("REQUEST_URI").unwrap_or("/"), &host) {
        Some(u) => u.to_string(),
        None => {
            app.metrics.decision(Kind::BadRequest, started.elapsed());
            return status_only(400);
        }
    };
    let decided = if role == Role::Authorizer {
        authorize(app, req, client_ip, &method, &host, &uri, started).await
    } else {
        app.decide(ask(app, req, role, client_ip, &method, &host, &uri), started)
            .await
    };
    let decision = match decided {
        Ok(d) => d,
        Err(e) => return status_only(e.status().as_u16()),
    };
    let (kind, out) = render(app, role, &method, &host, &uri, req.param("HTTPS"), decision);
    app.metrics.decision(kind, started.elapsed());
    out
}

/// The path and query of REQUEST_URI. Apache passes an absolute-form target
/// (`GET http://host/x`) on as it came, after routing on its host and making that host
/// HTTP_HOST; so the authority must be `host`, and only its path is judged. `None`: unusable.
fn origin_form<'u>(uri: &'u str, host: &str) -> Option<&'u str> {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &uri[7..]
    } else if lower.starts_with("https://") {
        &uri[8..]
    } else {
        return Some(uri);
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if !authority.eq_ignore_ascii_case(host) {
        return None;
    }
    Some(if path.is_empty() { "/" } else { path })
}

/// Cookie mode and Basic mode: Apache asks who the client is.
fn ask<'a>(
    app: &App,
    req: &'a Request,
    role: Role,
    client_ip: IpAddr,
    method: &'a str,
    host: &'a str,
    uri: &'a str,
) -> AccessRequest<'a> {
    // In these roles `REMOTE_USER` is only the name the client typed.
    let basic = match (role, req.param("REMOTE_USER"), req.param("REMOTE_PASSWD")) {
        (Role::Basic, Some(user), Some(secret)) if !user.is_empty() => Some(BasicCredentials {
            user: user.to_string(),
            secret: Zeroizing::new(secret.to_string()),
        }),
        _ => None,
    };
    // Basic mode judges the credentials alone, as mod_authn_otp did.
    let session = match basic {
        Some(_) => None,
        None => req
            .param("HTTP_COOKIE")
            .and_then(|c| cookie(c, &app.config.core.session.cookie_name)),
    };
    AccessRequest {
        method,
        host,
        path: uri,
        client_ip,
        session,
        basic,
    }
}

/// `Require portcullis-authz`: Apache's authn step (any provider) has set `REMOTE_USER`,
/// which is trusted in this role only; the `[access]` rules are applied to that user as
/// the directory has it. No user (Apache never asks without one) is refused like a
/// forbidden one, 403: Apache only tells 200 (granted) from 500 (error) and the rest.
async fn authorize(
    app: &Arc<App>,
    req: &Request,
    client_ip: IpAddr,
    method: &str,
    host: &str,
    uri: &str,
    started: Instant,
) -> DecisionResult {
    let user = req.param("REMOTE_USER").unwrap_or("").to_string();
    let worker = app.clone();
    let (method, host, uri) = (method.to_string(), host.to_string(), uri.to_string());
    // A directory read (SQLite, a users file): off the async workers, but not queued
    // behind password hashing for a login slot.
    app.run_decision(Cost::Io, started, move || {
        let resource = Resource {
            method: &method,
            host: &host,
            path: &uri,
            client_ip,
        };
        Ok((worker.authorizer().authorize_user(&user, &resource)?, None))
    })
    .await
}

fn status_only(code: u16) -> String {
    format!("Status: {code}\r\n\r\n")
}

/// A header value safe to put on one CGI header line.
fn clean(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).collect()
}

fn render(
    app: &App,
    role: Role,
    method: &str,
    host: &str,
    uri: &str,
    https: Option<&str>,
    decision: Decision,
) -> (Kind, String) {
    match decision {
        Decision::Allow(Some(id)) => {
            let mut out = String::from("Status: 200\r\n");
            for (name, value) in [
                ("PORTCULLIS_USER", id.user.as_str()),
                ("PORTCULLIS_GROUPS", &id.groups_value()),
                ("PORTCULLIS_NAME", id.display_name.as_deref().unwrap_or("")),
                ("PORTCULLIS_EMAIL", id.email.as_deref().unwrap_or("")),
            ] {
                let _ = write!(out, "Variable-{name}: {}\r\n", clean(value));
            }
            out.push_str("\r\n");
            (Kind::Allow, out)
        }
        // A bypassed resource: nobody to name. Basic mode never lets a password through
        // unchecked: Apache would make the typed name REMOTE_USER.
        Decision::Allow(None) if role != Role::Basic => (Kind::Allow, status_only(200)),
        // A push is waited for before a decision reaches an adapter.
        Decision::Allow(None) | Decision::Challenge | Decision::AwaitPush(_) => (Kind::Challenge, status_only(401)),
        Decision::Login => match role {
            Role::CheckAuthn => {
                let scheme = if https.is_some_and(|v| v.eq_ignore_ascii_case("on")) {
                    "https"
                } else {
                    "http"
                };
                let portal = app.config.server.portal_url.trim_end_matches('/');
                let mut location = format!("{portal}/login");
                // Only a plausible URL is offered back; the portal checks it again.
                if super::forward::parse_original_url(&format!("{scheme}://{host}{uri}"), method).is_ok() {
                    location = format!("{location}?rd={}", query_escape(&format!("{scheme}://{host}{uri}")));
                }
                (
                    Kind::Login,
                    format!("Status: 302\r\nLocation: {}\r\n\r\n", clean(&location)),
                )
            }
            Role::Basic => (Kind::Login, status_only(401)),
            Role::Authorizer => (Kind::Deny, status_only(403)),
        },
        Decision::Deny => (Kind::Deny, status_only(403)),
        Decision::BadRequest(_) => (Kind::BadRequest, status_only(400)),
    }
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod origin_form_tests {
    use super::origin_form;

    #[test]
    fn absolute_form_targets_keep_only_their_path_and_must_name_the_host() {
        assert_eq!(origin_form("/a?b", "h"), Some("/a?b"));
        assert_eq!(origin_form("http://h:80/a?b", "h:80"), Some("/a?b"));
        assert_eq!(origin_form("HTTPS://H/x", "h"), Some("/x"));
        assert_eq!(origin_form("http://h", "h"), Some("/"));
        assert_eq!(origin_form("http://other/x", "h"), None);
        assert_eq!(origin_form("http://h@other/x", "h"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_lookup() {
        assert_eq!(
            cookie("a=1; portcullis_session=xyz; b=2", "portcullis_session"),
            Some("xyz")
        );
        assert_eq!(cookie("xportcullis_session=1", "portcullis_session"), None);
        assert_eq!(clean("a\r\nLocation: evil"), "aLocation: evil");
    }
}

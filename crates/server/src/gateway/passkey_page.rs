//! The portal's passkey endpoints and pages: "Use your passkey" after the password,
//! "Sign in with a passkey" (passwordless), and the settings page where a signed-in person
//! adds and removes passkeys. Only the WebAuthn call needs JavaScript (`passkey.js` asks
//! the `begin` endpoint for options, hands them to the browser, and posts the answer to
//! `finish`); every decision is the core's.

use super::html;
use super::web::{ClientIp, cookie, csrf_nonce, html as page, query_escape, see_other};
use super::{App, GatewayError};
use axum::Form;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::gate::Rejection;
use portcullis_core::login::{LoginOutcome, LoginStep, Refusal};
use portcullis_core::passkey::{PasskeyBegin, Registration};
use portcullis_core::session::Level;
use serde::Deserialize;
use std::sync::Arc;

/// The cookie that binds a passwordless ceremony to the browser that began it.
const CEREMONY_COOKIE: &str = "portcullis_passkey";

/// The browser side: options in, `navigator.credentials`, the answer out. Buttons stay
/// hidden where WebAuthn is missing (or JavaScript is off): the code form is the way then.
const PASSKEY_JS: &str = r#"// portcullis: passkeys (WebAuthn). Everything else on these pages works without JavaScript.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  function bytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function text(buf) {
    if (!buf) return null;
    var b = new Uint8Array(buf), s = "";
    for (var i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creation(o) {
    var p = o.publicKey;
    p.challenge = bytes(p.challenge);
    p.user.id = bytes(p.user.id);
    (p.excludeCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
    return { publicKey: p };
  }
  function request(o) {
    var p = o.publicKey;
    p.challenge = bytes(p.challenge);
    (p.allowCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
    return { publicKey: p };
  }
  function answer(c) {
    var r = c.response, out = { id: c.id, rawId: text(c.rawId), type: c.type,
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {} };
    if (r.attestationObject) {
      out.response = { attestationObject: text(r.attestationObject), clientDataJSON: text(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined };
    } else {
      out.response = { authenticatorData: text(r.authenticatorData), clientDataJSON: text(r.clientDataJSON),
        signature: text(r.signature), userHandle: text(r.userHandle) };
    }
    return out;
  }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().catch(function () { return { error: "The server did not answer (" + r.status + ")." }; }); });
  }
  function run(button) {
    var status = document.getElementById(button.getAttribute("data-status") || "passkey-status");
    var kind = button.getAttribute("data-passkey");
    var base = { csrf: button.getAttribute("data-csrf"), rd: button.getAttribute("data-rd") || "" };
    var label = document.getElementById("passkey-label");
    function say(t) { if (status) { status.textContent = t; status.hidden = false; } }
    button.disabled = true;
    say("Waiting for your passkey…");
    var begin = Object.assign({ label: label ? label.value : "" }, base);
    post(button.getAttribute("data-begin"), begin).then(function (a) {
      if (a.error) throw new Error(a.error);
      var call = kind === "register" ? navigator.credentials.create(creation(a.options))
                                     : navigator.credentials.get(request(a.options));
      return call.then(function (c) {
        return post(button.getAttribute("data-finish"), Object.assign({ credential: answer(c) }, base));
      }, function (e) {
        throw new Error(e && e.name === "NotAllowedError" ? "The passkey was not used (cancelled or timed out)." :
          "The browser refused: " + (e && e.message ? e.message : e));
      });
    }).then(function (a) {
      if (a.error) throw new Error(a.error);
      window.location.assign(a.next);
    }).catch(function (e) {
      say(e.message + " You can try again" + (kind === "register" ? "." : " or use a code."));
      button.disabled = false;
    });
  }
  document.querySelectorAll("[data-passkey]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function (ev) { ev.preventDefault(); run(b); });
  });
  document.querySelectorAll("[data-passkey-hint]").forEach(function (h) { h.hidden = false; });
})();
"#;

/// `GET /passkey.js`.
pub async fn passkey_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PASSKEY_JS,
    )
        .into_response()
}

/// What the script posts: the CSRF token, the return URL, a label, the browser's answer.
#[derive(Deserialize, Default)]
struct Posted {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    credential: Option<serde_json::Value>,
}

const PAGE_EXPIRED: &str = "The page expired. Reload it and try again.";
const SESSION_EXPIRED: &str = "Your session has expired. Please sign in again.";

/// The posted body, when its CSRF token is right (else the answer to send).
#[allow(clippy::result_large_err)] // the refusal is the response itself, made once
fn posted(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Posted, Response> {
    let p: Posted = serde_json::from_slice(body).unwrap_or_default();
    if app.csrf_ok(headers, &p.csrf) {
        Ok(p)
    } else {
        Err(error(StatusCode::FORBIDDEN, PAGE_EXPIRED))
    }
}

/// The posted body (CSRF checked) and the session cookie it comes with.
#[allow(clippy::result_large_err)] // as `posted`
fn posted_in_session(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<(Posted, String), Response> {
    let p = posted(app, headers, body)?;
    match app.session_cookie(headers) {
        Some(current) => Ok((p, current.to_string())),
        None => Err(error(StatusCode::UNAUTHORIZED, SESSION_EXPIRED)),
    }
}

fn json(status: StatusCode, value: serde_json::Value, cookies: Vec<HeaderValue>) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, text: &str) -> Response {
    json(status, serde_json::json!({ "error": text }), vec![])
}

fn failed(e: &GatewayError) -> Response {
    error(e.status(), "Something went wrong. Try again later.")
}

/// Options as the script takes them.
fn options(begin: PasskeyBegin, cookies: Vec<HeaderValue>) -> Response {
    match begin {
        PasskeyBegin::Options(o) => match serde_json::from_str::<serde_json::Value>(&o) {
            Ok(v) => json(StatusCode::OK, serde_json::json!({ "options": v }), cookies),
            Err(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again later.",
            ),
        },
        PasskeyBegin::NotSignedIn => error(StatusCode::UNAUTHORIZED, SESSION_EXPIRED),
        PasskeyBegin::Refused(Refusal::Rejected(Rejection::Locked)) => error(
            StatusCode::FORBIDDEN,
            "This account is locked after too many failed attempts. Ask your administrator to unlock it.",
        ),
        PasskeyBegin::Refused(_) => error(StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait a little."),
        PasskeyBegin::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Passkeys cannot be used right now. Try again later or use a code.",
        ),
    }
}

/// Runs a passkey step on a blocking worker (store reads and writes) in a login slot;
/// its events are logged there (see `portal::settle`).
async fn step<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, portcullis_core::gate::GateError> + Send + 'static,
) -> Result<T, GatewayError> {
    let app2 = app.clone();
    app.with_login_slot(move || f(&app2).map_err(|e| GatewayError::failed("passkey", e).logged()))
        .await
        .unwrap_or_else(|| Err(GatewayError::Worker("passkey").logged()))
}

fn logged(app: &App, s: LoginStep) -> LoginOutcome {
    for e in &s.events {
        app.record(e);
    }
    s.outcome
}

/// A login step's outcome for the script: where to go next, or what to say.
fn signed_in(app: &App, rd: &str, outcome: LoginOutcome, extra: Vec<HeaderValue>) -> Response {
    match outcome {
        LoginOutcome::SignedIn { session, .. } => {
            let mut cookies = vec![app.session_set_cookie(session.as_str())];
            cookies.extend(extra);
            json(
                StatusCode::OK,
                serde_json::json!({ "next": app.return_url(rd) }),
                cookies,
            )
        }
        LoginOutcome::Refused(Refusal::NotSignedIn) | LoginOutcome::Enroll { .. } => {
            error(StatusCode::UNAUTHORIZED, SESSION_EXPIRED)
        }
        LoginOutcome::Refused(Refusal::Rejected(Rejection::Locked)) => error(
            StatusCode::FORBIDDEN,
            "This account is locked after too many failed attempts. Ask your administrator to unlock it.",
        ),
        LoginOutcome::Refused(Refusal::Banned) => {
            error(StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait a little.")
        }
        LoginOutcome::Refused(_) => error(StatusCode::UNAUTHORIZED, "That passkey was not accepted."),
    }
}

/// `POST /login/passkey/begin`: options for the passkeys of the one-factor session.
pub async fn login_begin(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let current = match posted_in_session(&app, &headers, &body) {
        Ok((_, current)) => current,
        Err(r) => return r,
    };
    let begun = step(&app, move |app| {
        let (begin, events) = app.authorizer().passkey_login_begin(&current, ip)?;
        for e in &events {
            app.record(e);
        }
        Ok(begin)
    })
    .await;
    match begun {
        Ok(b) => options(b, vec![]),
        Err(e) => failed(&e),
    }
}

/// `POST /login/passkey/finish`: the assertion; a verified one is a two-factor session.
pub async fn login_finish(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, current) = match posted_in_session(&app, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let response = p.credential.map(|c| c.to_string()).unwrap_or_default();
    let done = step(&app, move |app| {
        let s = app.authorizer().passkey_login_finish(&current, &response, ip)?;
        Ok(logged(app, s))
    })
    .await;
    match done {
        Ok(outcome) => signed_in(&app, &p.rd, outcome, vec![]),
        Err(e) => failed(&e),
    }
}

/// The passwordless ceremony's cookie (`None` clears it): HttpOnly, SameSite=Strict, only
/// sent to the passwordless endpoints, gone when the ceremony would have expired.
fn ceremony_cookie(app: &App, value: Option<&str>) -> HeaderValue {
    let max_age = if value.is_some() {
        app.config.core.webauthn.timeout + 30
    } else {
        0
    };
    let mut v = format!(
        "{CEREMONY_COOKIE}={}; Path={}/login/passwordless; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        value.unwrap_or(""),
        app.base()
    );
    if app.config.core.session.secure {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /login/passwordless/begin`: options for any discoverable passkey, bound to a
/// fresh cookie.
pub async fn passwordless_begin(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = posted(&app, &headers, &body) {
        return r;
    }
    let token = portcullis_core::session::random_token();
    let t = token.clone();
    let begun = step(&app, move |app| app.authorizer().passwordless_begin(&t, ip)).await;
    match begun {
        Ok(b @ PasskeyBegin::Options(_)) => options(b, vec![ceremony_cookie(&app, Some(token.as_str()))]),
        Ok(b) => options(b, vec![]),
        Err(e) => failed(&e),
    }
}

/// `POST /login/passwordless/finish`: the assertion names its owner; a verified one (user
/// verification required) is a whole two-factor login.
pub async fn passwordless_finish(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match posted(&app, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(token) = cookie(&headers, CEREMONY_COOKIE).map(str::to_string) else {
        return error(StatusCode::UNAUTHORIZED, "The sign-in took too long. Try again.");
    };
    let current = app.session_cookie(&headers).map(str::to_string);
    let response = p.credential.map(|c| c.to_string()).unwrap_or_default();
    let done = step(&app, move |app| {
        let s = app
            .authorizer()
            .passwordless_finish(&token, current.as_deref(), &response, ip)?;
        Ok(logged(app, s))
    })
    .await;
    match done {
        Ok(outcome @ LoginOutcome::SignedIn { .. }) => {
            signed_in(&app, &p.rd, outcome, vec![ceremony_cookie(&app, None)])
        }
        Ok(outcome) => signed_in(&app, &p.rd, outcome, vec![]),
        Err(e) => failed(&e),
    }
}

fn settings_url(app: &App) -> String {
    format!("{}/settings", app.base())
}

/// The settings page with an optional note (after a removal).
async fn settings_response(
    app: &Arc<App>,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    status: StatusCode,
    note: Option<&str>,
) -> Response {
    let Some(current) = app.session_cookie(headers).map(str::to_string) else {
        return see_other(&format!("{}/login?rd={}", app.base(), query_escape(&here(app))), vec![]);
    };
    let looked = step(app, move |app| {
        let Some(s) = app.authorizer().signed_in(&current, ip)? else {
            return Ok(None);
        };
        if s.level != Level::TwoFactor {
            return Ok(None);
        }
        Ok(app.engine.directory.user(&s.user)?)
    })
    .await;
    let user = match looked {
        Ok(Some(u)) => u,
        Ok(None) => return see_other(&format!("{}/login?rd={}", app.base(), query_escape(&here(app))), vec![]),
        Err(e) => return super::portal::failure_page(&e),
    };
    let (nonce, cookie) = csrf_nonce(app, headers);
    let body = html::settings(
        app.base(),
        &app.csrf_token(&nonce),
        &user,
        app.engine.passkeys.is_some(),
        app.engine.directory.backend(),
        note,
    );
    page(status, body, cookie.into_iter().collect())
}

/// The settings page's own address, as a return URL.
fn here(app: &App) -> String {
    format!("{}/settings", app.config.server.portal_url.trim_end_matches('/'))
}

/// `POST /settings/passkeys/begin`: options for a new credential of the two-factor session.
pub async fn register_begin(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, current) = match posted_in_session(&app, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let label = p.label;
    match step(&app, move |app| {
        app.authorizer().passkey_register_begin(&current, ip, &label)
    })
    .await
    {
        Ok(b) => options(b, vec![]),
        Err(e) => failed(&e),
    }
}

/// `POST /settings/passkeys/finish`: the new credential, kept unless anyone has it already.
pub async fn register_finish(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, current) = match posted_in_session(&app, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let response = p.credential.map(|c| c.to_string()).unwrap_or_default();
    let done = step(&app, move |app| {
        let (r, event) = app.authorizer().passkey_register_finish(&current, &response, ip)?;
        if let Some(e) = &event {
            app.record(e);
        }
        Ok(r)
    })
    .await;
    let next = settings_url(&app);
    registered(done, &next)
}

/// A registration's answer for the script; `next` is where an added passkey leads.
fn registered(done: Result<Registration, GatewayError>, next: &str) -> Response {
    match done {
        Ok(Registration::Added(label)) => {
            tracing::info!(label = %label, "passkey registered");
            let sep = if next.contains('?') { '&' } else { '?' };
            json(
                StatusCode::OK,
                serde_json::json!({ "next": format!("{next}{sep}added={}", query_escape(&label)) }),
                vec![],
            )
        }
        Ok(Registration::Duplicate) => error(
            StatusCode::CONFLICT,
            "This passkey is registered already (to this account or another one).",
        ),
        Ok(Registration::Refused(why)) => {
            tracing::warn!(reason = %why, "passkey registration refused");
            error(StatusCode::BAD_REQUEST, "The authenticator's answer was not accepted.")
        }
        Ok(Registration::Expired) => error(StatusCode::BAD_REQUEST, "That took too long. Try again."),
        Ok(Registration::NotSignedIn) => error(StatusCode::UNAUTHORIZED, SESSION_EXPIRED),
        Err(e) => failed(&e),
    }
}

/// The remove form.
#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

/// `POST /settings/passkeys/remove`: removes one of the person's passkeys (no JavaScript).
pub async fn remove(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Response {
    if !app.csrf_ok(&headers, &form.csrf) {
        return settings_response(
            &app,
            ip,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The form expired. Please try again."),
        )
        .await;
    }
    let Some(current) = app.session_cookie(&headers).map(str::to_string) else {
        return see_other(&settings_url(&app), vec![]);
    };
    let id = form.id.clone();
    match step(&app, move |app| app.authorizer().passkey_remove(&current, ip, &id)).await {
        Ok(true) => {
            tracing::info!("passkey removed by its owner");
            see_other(&format!("{}?removed=1", settings_url(&app)), vec![])
        }
        Ok(false) => see_other(&settings_url(&app), vec![]),
        Err(e) => super::portal::failure_page(&e),
    }
}

/// `?added=&removed=` on the settings page.
#[derive(Deserialize, Default)]
pub struct SettingsQuery {
    #[serde(default)]
    added: String,
    #[serde(default)]
    removed: String,
}

/// `GET /settings`: the signed-in person's passkeys, with "Add a passkey" and "Remove"
/// (and what just happened, after `?added=` or `?removed=`).
pub async fn settings_page(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<SettingsQuery>,
) -> Response {
    let note = if !q.added.is_empty() {
        Some(format!("Passkey \u{201c}{}\u{201d} added.", q.added))
    } else if !q.removed.is_empty() {
        Some("Passkey removed.".to_string())
    } else {
        None
    };
    settings_response(&app, ip, &headers, StatusCode::OK, note.as_deref()).await
}

/// The code page's "Use your passkey" button, when `user` has one here.
pub fn passkey_button(app: &App, user: &portcullis_core::User, csrf: &str, rd: &str) -> Option<String> {
    app.authorizer()
        .passkeys_for(user)
        .then(|| html::passkey_login_button(app.base(), csrf, rd))
}

/// `GET /enroll/{token}/passkey`: an invitation to register a passkey (the key is made
/// in the browser; nothing secret is shown).
pub async fn enroll_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let Some(invites) = app.invites.clone() else {
        return super::portal::enrollment_unavailable();
    };
    let invite = match invites.find(&token, app.clock_now()) {
        Ok(Some(i)) => i,
        Ok(None) => return super::portal::link_expired(),
        Err(e) => return super::portal::failure_page(&GatewayError::failed("reading invitations", e).logged()),
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let body = html::enroll_passkey(app.base(), &app.csrf_token(&nonce), &invite.user, &token);
    page(StatusCode::OK, body, cookie.into_iter().collect())
}

/// `POST /enroll/{token}/passkey/begin`.
pub async fn enroll_begin(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::extract::Path(token): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let p = match posted(&app, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(invites) = app.invites.clone() else {
        return error(StatusCode::NOT_FOUND, "Enrollment needs the SQLite store.");
    };
    let label = p.label;
    match step(&app, move |app| {
        app.authorizer()
            .invite_passkey_begin(invites.as_ref(), &token, ip, &label)
    })
    .await
    {
        Ok(PasskeyBegin::NotSignedIn) => error(StatusCode::NOT_FOUND, "This enrollment link is not valid any more."),
        Ok(b) => options(b, vec![]),
        Err(e) => failed(&e),
    }
}

/// `POST /enroll/{token}/passkey/finish`: a new passkey uses the invitation up.
pub async fn enroll_finish(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::extract::Path(token): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let p = match posted(&app, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(invites) = app.invites.clone() else {
        return error(StatusCode::NOT_FOUND, "Enrollment needs the SQLite store.");
    };
    let response = p.credential.map(|c| c.to_string()).unwrap_or_default();
    let done = step(&app, move |app| {
        let (r, event) = app
            .authorizer()
            .invite_passkey_finish(invites.as_ref(), &token, &response, ip)?;
        if let Some(e) = &event {
            app.record(e);
        }
        Ok(r)
    })
    .await;
    registered(done, &format!("{}/enroll/done", app.base()))
}

/// `GET /enroll/done`: after a passkey was registered through an invitation.
pub async fn enrolled() -> Response {
    page(
        StatusCode::OK,
        html::message(
            "All set",
            "Your passkey is registered. Sign in with your password, then use the passkey.",
            None,
        ),
        vec![],
    )
}

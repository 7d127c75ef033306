//! The portal's push pages: "Send a push" (a POST with the CSRF token, the only way a
//! browser sends one), the waiting page (without JavaScript it reloads itself; with it,
//! `push.js` asks `/login/push/status` and moves on in place), and the outcome pages.

use super::html;
use super::web::{ClientIp, html as page, query_escape, see_other};
use super::{App, GatewayError};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::login::Refusal;
use portcullis_core::push::PushOutcome;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How long one poll waits for the person before the page asks again.
const POLL_WAIT: Duration = Duration::from_secs(5);

/// The script of the waiting page (served from the portal's origin, so the pages' CSP
/// allows it and nothing inline).
const PUSH_JS: &str = r#"// portcullis: waits for the push answer in place of reloading the page.
(function () {
  var box = document.getElementById("push-status");
  var url = box && box.getAttribute("data-status");
  var page = box && box.getAttribute("data-poll");
  if (!url || !page) return;
  var failures = 0;
  function ask() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (a) {
        failures = 0;
        if (a.state === "waiting") { ask(); } else { window.location.assign(a.next); }
      })
      // The network hiccups: ask again; the gateway refuses (an outage): its own page says why.
      .catch(function () {
        if (++failures < 3) { setTimeout(ask, 2000); } else { window.location.assign(page); }
      });
  }
  ask();
})();
"#;

/// `?rd=&poll=` on the push pages.
#[derive(Debug, Deserialize, Default)]
pub struct PushQuery {
    #[serde(default)]
    rd: String,
    #[serde(default)]
    poll: u8,
}

/// The "Send a push" form.
#[derive(Deserialize)]
pub struct PushForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

/// Runs a push step off the async workers (no login slot: it waits on the network and
/// on a person, not on a hash).
async fn push_step(
    app: &Arc<App>,
    current: String,
    ip: std::net::IpAddr,
    send: bool,
    wait: Duration,
) -> Result<PushOutcome, GatewayError> {
    let app2 = app.clone();
    let step = tokio::task::spawn_blocking(move || {
        let step = app2
            .authorizer()
            .login_push(&current, ip, send, wait)
            .map_err(|e| GatewayError::failed("push", e).logged())?;
        for e in &step.1 {
            app2.record(e);
        }
        Ok::<_, GatewayError>(step.0)
    })
    .await;
    step.unwrap_or_else(|_| Err(GatewayError::Worker("push").logged()))
}

fn code_url(app: &App, rd: &str) -> String {
    format!("{}/login/code?rd={}", app.base(), query_escape(rd))
}

fn login_url(app: &App, rd: &str) -> String {
    format!("{}/login?rd={}", app.base(), query_escape(rd))
}

fn push_url(app: &App, rd: &str) -> String {
    format!("{}/login/push?rd={}", app.base(), query_escape(rd))
}

/// Where an outcome sends the person, and the page that says so.
fn outcome_page(app: &App, rd: &str, outcome: PushOutcome) -> Response {
    match outcome {
        PushOutcome::Waiting { device } => page(StatusCode::OK, html::push_waiting(app.base(), rd, &device), vec![]),
        PushOutcome::SignedIn(session) => {
            see_other(&app.return_url(rd), vec![app.session_set_cookie(session.as_str())])
        }
        PushOutcome::NotSignedIn => see_other(&login_url(app, rd), vec![]),
        PushOutcome::Refused(r) => page(StatusCode::UNAUTHORIZED, refused_page(app, rd, r), vec![]),
        PushOutcome::Enroll(url) => page(
            StatusCode::FORBIDDEN,
            html::message(
                "Enroll with Duo first",
                "Duo says you have not set up a device yet. Enroll one, then sign in again.",
                url.starts_with("https://")
                    .then_some((url.as_str(), "Enroll a device with Duo")),
            ),
            vec![],
        ),
        PushOutcome::Unavailable => page(
            StatusCode::SERVICE_UNAVAILABLE,
            html::message(
                "Duo cannot be reached",
                "The push service does not answer right now, so no sign-in is possible. Try again in a few minutes.",
                Some((&code_url(app, rd), "Try again")),
            ),
            vec![],
        ),
    }
}

fn refused_page(app: &App, rd: &str, r: Refusal) -> String {
    let text = match r {
        Refusal::Rejected(portcullis_core::gate::Rejection::Locked) => {
            "This account is locked after too many failed attempts. Ask your administrator to unlock it."
        }
        _ => "The sign-in was not approved (denied, or no answer in time).",
    };
    html::message("Not approved", text, Some((&code_url(app, rd), "Try again")))
}

/// `POST /login/push`: "Send a push".
pub async fn push_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PushForm>,
) -> Response {
    if !app.csrf_ok(&headers, &form.csrf) {
        return see_other(&code_url(&app, &form.rd), vec![]);
    }
    let Some(current) = app.session_cookie(&headers).map(str::to_string) else {
        return see_other(&login_url(&app, &form.rd), vec![]);
    };
    match push_step(&app, current, ip, true, Duration::ZERO).await {
        Ok(PushOutcome::Waiting { .. }) => see_other(&push_url(&app, &form.rd), vec![]),
        Ok(outcome) => outcome_page(&app, &form.rd, outcome),
        Err(e) => super::portal::failure_page(&e),
    }
}

/// `GET /login/push`: the waiting page; with `poll=1` (its own reload) it first waits a
/// few seconds for the answer. A GET never sends a push.
pub async fn push_page(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<PushQuery>,
) -> Response {
    let Some(current) = app.session_cookie(&headers).map(str::to_string) else {
        return see_other(&login_url(&app, &q.rd), vec![]);
    };
    let wait = if q.poll == 1 { POLL_WAIT } else { Duration::ZERO };
    match push_step(&app, current, ip, false, wait).await {
        Ok(outcome) => outcome_page(&app, &q.rd, outcome),
        Err(e) => super::portal::failure_page(&e),
    }
}

/// `GET /login/push/status`: the waiting page's script asks here (JSON).
pub async fn push_status(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<PushQuery>,
) -> Response {
    let Some(current) = app.session_cookie(&headers).map(str::to_string) else {
        return json(
            serde_json::json!({"state": "done", "next": login_url(&app, &q.rd)}),
            vec![],
        );
    };
    let outcome = match push_step(&app, current, ip, false, POLL_WAIT).await {
        Ok(o) => o,
        Err(e) => return super::portal::failure_page(&e),
    };
    match outcome {
        PushOutcome::Waiting { device } => json(serde_json::json!({"state": "waiting", "device": device}), vec![]),
        PushOutcome::SignedIn(session) => json(
            serde_json::json!({"state": "done", "next": app.return_url(&q.rd)}),
            vec![app.session_set_cookie(session.as_str())],
        ),
        // Anything else is shown by the page itself: the script goes there.
        _ => json(
            serde_json::json!({"state": "done", "next": format!("{}&poll=1", push_url(&app, &q.rd))}),
            vec![],
        ),
    }
}

/// `GET /login/push.js`.
pub async fn push_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PUSH_JS,
    )
        .into_response()
}

fn json(value: serde_json::Value, cookies: Vec<axum::http::HeaderValue>) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    r
}

/// The code page's "Send a push" form, when `user` approves with a push.
pub fn push_button(app: &App, user: &portcullis_core::User, csrf: &str, rd: &str) -> Option<String> {
    app.authorizer()
        .pushes_for(user)
        .then(|| html::push_form(app.base(), csrf, rd))
}

/// After the password of a user whose only second factor is a push: it is sent now and
/// the waiting page comes next; `None` for everyone else (the code page comes next).
pub async fn push_at_once(
    app: &Arc<App>,
    session: &str,
    user: &str,
    ip: std::net::IpAddr,
    rd: &str,
) -> Option<Response> {
    let u = app.engine.directory.user(user).ok().flatten()?;
    if !app.authorizer().push_only(&u) {
        return None;
    }
    let cookie = app.session_set_cookie(session);
    let mut r = match push_step(app, session.to_string(), ip, true, Duration::ZERO).await {
        Ok(PushOutcome::Waiting { .. }) => see_other(&push_url(app, rd), vec![]),
        Ok(outcome) => outcome_page(app, rd, outcome),
        Err(e) => super::portal::failure_page(&e),
    };
    // The one-factor session is the browser's either way (a later try starts from it),
    // unless the outcome set a new one.
    if !r.headers().contains_key(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Some(r)
}

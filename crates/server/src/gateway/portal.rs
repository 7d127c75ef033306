//! The login portal: password page, code page (or both on one), logout, self-service
//! enrollment and the demo page. Works without JavaScript.

use super::App;
use super::html;
use super::web::{ClientIp, csrf_nonce, html as page, see_other};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::authz::{AuthEvent, StepResult};
use portcullis_core::gate::Rejection;
use portcullis_core::model::{Step, Token, TokenKind};
use portcullis_core::session::{Level, Session};
use portcullis_otp::{Hotp, Secret, Verdict, Window, oath_matcher, totp_step, verify_time};
use serde::Deserialize;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a person is told for any wrong factor: the same words whatever was wrong.
const WRONG: &str = "The user name, password or code is not correct.";
const LOCKED: &str = "This account is locked after too many wrong codes. Ask your administrator to unlock it.";
const NO_TOKEN: &str = "This account has no second factor yet. Ask your administrator for an enrollment link.";

/// `?rd=` on the login pages.
#[derive(Debug, Deserialize, Default)]
pub struct ReturnTo {
    #[serde(default)]
    rd: String,
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Zeroizing<String>,
    #[serde(default)]
    code: Zeroizing<String>,
}

/// The code form.
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    code: Zeroizing<String>,
}

impl App {
    /// The validated return URL, or the configured default.
    fn return_url(&self, rd: &str) -> String {
        self.targets
            .check(rd)
            .unwrap_or_else(|| self.config.server.default_redirect.clone())
    }

    fn current_session(&self, headers: &HeaderMap, ip: std::net::IpAddr) -> Option<Session> {
        let id = self.session_cookie(headers)?;
        self.sessions.get(id, self.clock_now(), Some(ip))
    }

    /// True when the page at `rd` needs no second factor for `user` from `ip` (a trusted
    /// network or a one_factor rule), so the code step can be skipped.
    fn one_factor_enough(&self, rd: &str, ip: std::net::IpAddr, user: &portcullis_core::User) -> bool {
        use portcullis_core::access::{Decision, Policy, Resource, Subject};
        let Some(url) = self.targets.check(rd) else {
            return false;
        };
        let Ok(o) = super::forward::parse_original_url(&url, "GET") else {
            return false;
        };
        let resource = Resource {
            method: &o.method,
            host: &o.host,
            path: &o.uri,
            client_ip: ip,
        };
        let subject = Subject {
            user: &user.name,
            groups: &user.groups,
        };
        matches!(
            self.access.policy_for(&resource, Some(&subject)),
            Ok(Decision::Policy(Policy::OneFactor | Policy::Bypass))
        )
    }

    fn log(&self, e: &AuthEvent) {
        super::audit::log(e);
        self.metrics.auth(e.failure.is_none(), e.banned);
    }
}

fn message_for(r: &StepResult) -> &'static str {
    match r {
        StepResult::Refused(Rejection::Locked) => LOCKED,
        StepResult::Refused(Rejection::NoToken) => NO_TOKEN,
        _ => WRONG,
    }
}

/// `GET /login`.
pub async fn login_page(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<ReturnTo>,
) -> Response {
    if let Some(s) = app.current_session(&headers, ip) {
        match s.level {
            Level::TwoFactor => return see_other(&app.return_url(&q.rd), vec![]),
            Level::Named | Level::OneFactor if app.config.server.two_step => {
                return see_other(
                    &format!("{}/login/code?rd={}", app.base(), super::web::query_escape(&q.rd)),
                    vec![],
                );
            }
            Level::Named | Level::OneFactor => {}
        }
    }
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let note = headers.get("cookie").is_some_and(|c| {
        c.to_str()
            .is_ok_and(|c| c.contains(&format!("{}=", app.config.session.cookie_name)))
    });
    let body = html::login(
        app.base(),
        &app.csrf_token(&nonce),
        &q.rd,
        "",
        !app.config.server.two_step,
        None,
        note.then_some("Your session has expired. Please sign in again."),
    );
    page(StatusCode::OK, body, cookie.into_iter().collect())
}

/// Runs blocking credential work (password hashing, store writes) off the async workers,
/// bounded by the login slots.
async fn blocking<T: Send + 'static>(app: &Arc<App>, f: impl FnOnce(&App) -> T + Send + 'static) -> Option<T> {
    let app2 = app.clone();
    app.with_login_slot(move || f(&app2)).await
}

/// Back to the login page, keeping the return URL.
fn to_login(app: &App, rd: &str) -> Response {
    see_other(
        &format!("{}/login?rd={}", app.base(), super::web::query_escape(rd)),
        vec![],
    )
}

fn server_error() -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::message("Error", "Something went wrong. Try again later.", None),
        vec![],
    )
}

/// `POST /login`.
pub async fn login_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let retry = |app: &App, error: &str, user: &str| {
        let body = html::login(
            app.base(),
            &app.csrf_token(&nonce),
            &form.rd,
            user,
            !app.config.server.two_step,
            Some(error),
            None,
        );
        page(StatusCode::UNAUTHORIZED, body, cookie.clone().into_iter().collect())
    };
    if !app.csrf_ok(&headers, &form.csrf) {
        return retry(&app, "The form expired. Please try again.", &form.username);
    }
    let user = form.username.trim().to_string();
    let password = form.password.clone();
    let code = form.code.clone();
    let two_step = app.config.server.two_step;
    let old = app.session_cookie(&headers).map(str::to_string);
    let rd = form.rd.clone();
    // (result, event of the code step, new session id, whether the login is complete)
    type LoginStep = (StepResult, Option<AuthEvent>, Option<String>, bool);
    let started = std::time::Instant::now();
    let result = blocking(&app, move |app| -> Result<LoginStep, String> {
        let authz = app.authorizer();
        let checked = std::time::Instant::now();
        let (first, e1) = authz.password_step(&user, &password, ip).map_err(|e| e.to_string())?;
        if !matches!(first, StepResult::Banned) {
            app.pace.record(checked.elapsed());
        }
        app.log(&e1);
        let StepResult::Passed(u) = first else {
            return Ok((first, None, None, false));
        };
        // A trusted network or a one_factor rule for the page asked for: no code needed, but
        // only for a user who has a first factor (without one, nothing is proven yet).
        let has_first = u.first_factor.exists();
        let enough = has_first && app.one_factor_enough(&rd, ip, &u);
        if two_step || enough {
            // Every login step gets a new session id: no fixation.
            let level = if has_first { Level::OneFactor } else { Level::Named };
            let s = authz.session_for(&u, level, ip);
            let id = app.sessions.rotate(old.as_deref(), s).map_err(|e| e.to_string())?;
            return Ok((StepResult::Passed(u), None, Some(id.as_str().to_string()), enough));
        }
        let (second, e2) = authz.code_step(&user, &code, ip).map_err(|e| e.to_string())?;
        let StepResult::Passed(u) = second else {
            return Ok((second, Some(e2), None, false));
        };
        let s = authz.session_for(&u, Level::TwoFactor, ip);
        let id = app.sessions.rotate(old.as_deref(), s).map_err(|e| e.to_string())?;
        Ok((StepResult::Passed(u), Some(e2), Some(id.as_str().to_string()), true))
    })
    .await;
    let Some(Ok((result, event, session, done))) = result else {
        tracing::error!(error = ?result.and_then(Result::err), "login failed");
        return server_error();
    };
    if let Some(e) = &event {
        app.log(e);
    }
    if matches!(result, StepResult::Banned) {
        // Answered as slowly as a checked password (issue 9.6), outside the login slot.
        app.pace.wait(started.elapsed()).await;
    }
    match (result, session) {
        (StepResult::Passed(_), Some(id)) => {
            let next = if done {
                app.return_url(&form.rd)
            } else {
                format!("{}/login/code?rd={}", app.base(), super::web::query_escape(&form.rd))
            };
            see_other(&next, vec![app.session_set_cookie(&id)])
        }
        (r, _) => retry(&app, message_for(&r), &form.username),
    }
}

/// `GET /login/code`.
pub async fn code_page(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<ReturnTo>,
) -> Response {
    let Some(s) = app.current_session(&headers, ip) else {
        return to_login(&app, &q.rd);
    };
    if s.level == Level::TwoFactor {
        return see_other(&app.return_url(&q.rd), vec![]);
    }
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    page(
        StatusCode::OK,
        html::code(app.base(), &app.csrf_token(&nonce), &q.rd, &s.user, None),
        cookie.into_iter().collect(),
    )
}

/// `POST /login/code`.
pub async fn code_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some(s) = app.current_session(&headers, ip) else {
        return to_login(&app, &form.rd);
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let retry = |app: &App, error: &str| {
        page(
            StatusCode::UNAUTHORIZED,
            html::code(app.base(), &app.csrf_token(&nonce), &form.rd, &s.user, Some(error)),
            cookie.clone().into_iter().collect(),
        )
    };
    if !app.csrf_ok(&headers, &form.csrf) {
        return retry(&app, "The form expired. Please try again.");
    }
    let user = s.user.clone();
    let code = form.code.clone();
    let old = app.session_cookie(&headers).map(str::to_string);
    let result = blocking(
        &app,
        move |app| -> Result<(StepResult, AuthEvent, Option<String>), String> {
            let authz = app.authorizer();
            let (r, e) = authz.code_step(&user, code.trim(), ip).map_err(|e| e.to_string())?;
            let StepResult::Passed(u) = &r else {
                return Ok((r, e, None));
            };
            let s = authz.session_for(u, Level::TwoFactor, ip);
            let id = app.sessions.rotate(old.as_deref(), s).map_err(|e| e.to_string())?;
            Ok((r, e, Some(id.as_str().to_string())))
        },
    )
    .await;
    let Some(Ok((r, e, session))) = result else {
        return server_error();
    };
    app.log(&e);
    match (r, session) {
        (StepResult::Passed(_), Some(id)) => see_other(&app.return_url(&form.rd), vec![app.session_set_cookie(&id)]),
        (r, _) => retry(&app, message_for(&r)),
    }
}

/// `GET /logout`: a confirmation page whose button posts the sign-out.
pub async fn logout_page(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<ReturnTo>) -> Response {
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let body = html::logout_confirm(app.base(), &app.csrf_token(&nonce), &q.rd);
    page(StatusCode::OK, body, cookie.into_iter().collect())
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

/// `POST /logout`: ends the session, only with the CSRF token and from the portal's own
/// origin (a cross-site form or an image cannot sign anyone out).
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<LogoutForm>) -> Response {
    if !app.csrf_ok(&headers, &form.csrf) {
        let (nonce, cookie) = csrf_nonce(&app, &headers);
        let body = html::logout_confirm(app.base(), &app.csrf_token(&nonce), &form.rd);
        return page(StatusCode::FORBIDDEN, body, cookie.into_iter().collect());
    }
    if let Some(id) = app.session_cookie(&headers)
        && let Err(e) = app.sessions.revoke(id)
    {
        tracing::error!(error = %e, "cannot revoke a session");
    }
    let back = format!("{}/login?rd={}", app.base(), super::web::query_escape(&form.rd));
    page(
        StatusCode::OK,
        html::message(
            "Signed out",
            "You are signed out. Close the browser to be safe on a shared computer.",
            Some((&back, "Sign in again")),
        ),
        vec![app.session_clear_cookie()],
    )
}

/// `GET /` when `[server] demo_page = true`: a page protected by the gateway itself.
pub async fn demo_page(State(app): State<Arc<App>>, ClientIp(ip): ClientIp, headers: HeaderMap) -> Response {
    match app.current_session(&headers, ip) {
        Some(s) if s.level == Level::TwoFactor => {
            let (nonce, cookie) = csrf_nonce(&app, &headers);
            let body = html::demo(app.base(), &app.csrf_token(&nonce), &s.user, &s.groups);
            page(StatusCode::OK, body, cookie.into_iter().collect())
        }
        _ => {
            let here = format!("{}/", app.config.server.portal_url.trim_end_matches('/'));
            to_login(&app, &here)
        }
    }
}

/// A new TOTP token with the configured defaults, for enrollment.
fn fresh_token(app: &App) -> Token {
    let o = &app.config.otp;
    let secret = Secret::from_bytes(portcullis_core::random::bytes(20).to_vec());
    Token::new(TokenKind::Oath, Step::Time(o.period), secret, o.algorithm, o.digits)
}

/// `GET /enroll/{token}`: shows the new token's QR code once.
pub async fn enroll_page(State(app): State<Arc<App>>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let Some(invites) = app.invites.clone() else {
        return page(
            StatusCode::NOT_FOUND,
            html::message("Not available", "Enrollment needs the SQLite store.", None),
            vec![],
        );
    };
    let now = app.clock_now();
    let found = match invites.find(&token, now) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot read invitations");
            return server_error();
        }
    };
    let Some(invite) = found else {
        return link_expired();
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let csrf = app.csrf_token(&nonce);
    // A GET reveals nothing: mail scanners and chat previews fetch links too.
    let body = match invite.pending {
        None => html::enroll_start(&csrf, &invite.user),
        Some(_) => html::enroll(&csrf, &invite.user, None, None),
    };
    page(StatusCode::OK, body, cookie.into_iter().collect())
}

fn link_expired() -> Response {
    page(
        StatusCode::NOT_FOUND,
        html::message(
            "Link expired",
            "This enrollment link is not valid any more. Ask for a new one.",
            None,
        ),
        vec![],
    )
}

/// How to type the key by hand: the token's real settings.
fn hand_entry_settings(t: &Token) -> String {
    match t.step {
        Step::Time(p) => format!("time-based, {p} s, {} digits, {}", t.digits, t.algorithm.name()),
        Step::Event => format!("counter-based, {} digits, {}", t.digits, t.algorithm.name()),
    }
}

/// The enrollment form: `reveal` asks for the new key (shown once), `code` confirms it.
#[derive(Deserialize)]
pub struct EnrollForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reveal: String,
    #[serde(default)]
    code: Zeroizing<String>,
}

/// `POST /enroll/{token}` with `reveal`: shows the new key once, to a person who pressed
/// the button (CSRF token checked), and records who saw it.
async fn enroll_reveal(
    app: Arc<App>,
    ip: std::net::IpAddr,
    headers: HeaderMap,
    token: String,
    csrf: String,
) -> Response {
    let Some(invites) = app.invites.clone() else {
        return server_error();
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let csrf_page = app.csrf_token(&nonce);
    if !app.csrf_ok(&headers, &csrf) {
        return match invites.find(&token, app.clock_now()) {
            Ok(Some(invite)) => page(
                StatusCode::FORBIDDEN,
                html::enroll_start(&csrf_page, &invite.user),
                cookie.into_iter().collect(),
            ),
            _ => link_expired(),
        };
    }
    let opened = match invites.open(&token, app.clock_now(), fresh_token(&app)) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cannot read invitations");
            return server_error();
        }
    };
    let Some((invite, first_view)) = opened else {
        return link_expired();
    };
    let mut shown = None;
    if first_view
        && let Some(t) = &invite.pending
        && let Some(k) = t.key_uri(&invite.user, &app.config.otp.issuer)
    {
        let text = k.to_uri();
        let svg = crate::qr::svg_string(&text).unwrap_or_default();
        shown = Some((svg, Zeroizing::new(text), hand_entry_settings(t)));
        app.log(&AuthEvent {
            client_ip: ip,
            user: invite.user.clone(),
            method: "enroll-reveal",
            failure: None,
            banned: false,
        });
    }
    let body = html::enroll(
        &csrf_page,
        &invite.user,
        shown.as_ref().map(|(svg, uri, settings)| html::Shown {
            qr_svg: svg,
            uri: uri.as_str(),
            settings,
        }),
        None,
    );
    page(StatusCode::OK, body, cookie.into_iter().collect())
}

/// `POST /enroll/{token}`: a first correct code makes the new token the user's.
pub async fn enroll_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<EnrollForm>,
) -> Response {
    if !form.reveal.is_empty() {
        return enroll_reveal(app, ip, headers, token, form.csrf).await;
    }
    let Some(invites) = app.invites.clone() else {
        return server_error();
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let now = app.clock_now();
    let Ok(Some((invite, _))) = invites.open(&token, now, fresh_token(&app)) else {
        return page(
            StatusCode::NOT_FOUND,
            html::message("Link expired", "Ask for a new enrollment link.", None),
            vec![],
        );
    };
    let retry = |app: &App, error: &str| {
        let body = html::enroll(&app.csrf_token(&nonce), &invite.user, None, Some(error));
        page(StatusCode::UNAUTHORIZED, body, cookie.clone().into_iter().collect())
    };
    if !app.csrf_ok(&headers, &form.csrf) {
        return retry(&app, "The form expired. Please try again.");
    }
    if app.regulator.is_banned(Some(&invite.user), ip, now) {
        return retry(&app, WRONG);
    }
    let Some(mut pending) = invite.pending.clone() else {
        return retry(&app, WRONG);
    };
    let accepted = match pending.step {
        Step::Time(period) => {
            let g = Hotp::new(&pending.secret, pending.algorithm, pending.digits);
            let now_step = totp_step(now, period);
            let w = Window::symmetric(app.config.otp.window);
            match verify_time(now_step, now_step, w, None, oath_matcher(&g, form.code.trim())) {
                Verdict::Accepted(m) => Some(m.counter),
                _ => None,
            }
        }
        Step::Event => None,
    };
    let event = |failure| AuthEvent {
        client_ip: ip,
        user: invite.user.clone(),
        method: "enroll",
        failure,
        banned: false,
    };
    let Some(step) = accepted else {
        let b = app.regulator.record_failure(Some(&invite.user), ip, now);
        app.log(&AuthEvent {
            banned: b.user || b.ip,
            ..event(Some("wrong_code"))
        });
        return retry(
            &app,
            "That code is not correct. Check the app shows this account and try the current code.",
        );
    };
    pending.last_step = Some(step);
    let user = invite.user.clone();
    let saved = app.directory.update(&user, &mut |u| {
        u.tokens = vec![pending.clone()];
        u.failures = 0;
        true
    });
    match saved {
        Ok(true) => {}
        Ok(false) | Err(_) => return server_error(),
    }
    let _ = invites.consume(&token);
    let _ = app.sessions.revoke_user(&user);
    app.log(&event(None));
    page(
        StatusCode::OK,
        html::message(
            "All set",
            "Your authenticator is set up. Sign in with your password and a code.",
            Some((&format!("{}/login", app.base()), "Sign in")),
        ),
        vec![],
    )
}

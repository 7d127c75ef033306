//! The login portal: password page, code page (or both on one), logout, self-service
//! enrollment and the demo page. Works without JavaScript.

use super::html;
use super::web::{ClientIp, csrf_nonce, html as page, see_other};
use super::{App, GatewayError};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::access::Resource;
use portcullis_core::gate::Rejection;
use portcullis_core::login::{Enrollment, LoginAttempt, LoginOutcome, LoginStep, Refusal};
use portcullis_core::model::{Step, Token};
use portcullis_core::session::{Level, Session};
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
    pub(super) fn return_url(&self, rd: &str) -> String {
        self.targets
            .check(rd)
            .unwrap_or_else(|| self.config.server.default_redirect.clone())
    }

    /// The signed-in session, checked as every request checks it (a locked user or one with
    /// a new password is signed out here too). A store that cannot be read is the error
    /// page (503), never "signed out", which would send everyone to the login page.
    fn current_session(&self, headers: &HeaderMap, ip: std::net::IpAddr) -> Result<Option<Session>, GatewayError> {
        let Some(id) = self.session_cookie(headers) else {
            return Ok(None);
        };
        self.authorizer()
            .signed_in(id, ip)
            .map_err(|e| GatewayError::failed("reading the session", e).logged())
    }
}

/// What the login step did, with its events logged and counted. Called on the blocking
/// worker, not after the `.await`: a client that hangs up drops the handler, and its
/// attempt must still reach the audit log (fail2ban reads it).
fn settle(app: &App, step: Result<LoginStep, portcullis_core::gate::GateError>) -> Result<LoginOutcome, GatewayError> {
    let step = step.map_err(|e| GatewayError::failed("login", e).logged())?;
    for e in &step.events {
        app.record(e);
    }
    Ok(step.outcome)
}

fn message_for(r: Refusal) -> &'static str {
    match r {
        Refusal::Rejected(Rejection::Locked) => LOCKED,
        Refusal::Rejected(Rejection::NoToken) => NO_TOKEN,
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
    let current = match app.current_session(&headers, ip) {
        Ok(current) => current,
        Err(e) => return failure_page(&e),
    };
    if let Some(s) = current {
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
            .is_ok_and(|c| c.contains(&format!("{}=", app.config.core.session.cookie_name)))
    });
    let body = html::login(
        app.base(),
        &app.csrf_token(&nonce),
        &q.rd,
        "",
        !app.config.server.two_step,
        None,
        note.then_some("Your session has expired. Please sign in again."),
        app.authorizer().passwordless(),
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

/// The page for a failure (already logged): a generic message, the error's status.
pub(super) fn failure_page(e: &GatewayError) -> Response {
    page(
        e.status(),
        html::message("Error", "Something went wrong. Try again later.", None),
        vec![],
    )
}

/// What a blocking step answered, or why it did not (a failure, or a worker that died; logged).
fn answered<T>(step: Option<Result<T, GatewayError>>) -> Result<T, GatewayError> {
    step.unwrap_or_else(|| Err(GatewayError::Worker("portal").logged()))
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
            app.authorizer().passwordless(),
        );
        page(StatusCode::UNAUTHORIZED, body, cookie.clone().into_iter().collect())
    };
    if !app.csrf_ok(&headers, &form.csrf) {
        return retry(&app, "The form expired. Please try again.", &form.username);
    }
    let user = form.username.trim().to_string();
    let password = form.password.clone();
    let code = (!app.config.server.two_step).then(|| form.code.clone());
    let old = app.session_cookie(&headers).map(str::to_string);
    let target = app.targets.check(&form.rd);
    let started = std::time::Instant::now();
    let step = blocking(&app, move |app| {
        // The page asked for, as the rules see it: a one_factor rule there ends the login
        // after the password.
        let original = target.and_then(|url| super::forward::parse_original_url(&url, "GET").ok());
        let attempt = LoginAttempt {
            user: &user,
            password: &password,
            code: code.as_deref().map(String::as_str),
            target: original.as_ref().map(|o| Resource {
                method: &o.method,
                host: &o.host,
                path: &o.uri,
                client_ip: ip,
            }),
            client_ip: ip,
            current: old.as_deref(),
        };
        let checked = std::time::Instant::now();
        let step = app.authorizer().login(&attempt);
        if !matches!(&step, Ok(s) if matches!(s.outcome, LoginOutcome::Refused(Refusal::Banned))) {
            app.pace.record(checked.elapsed());
        }
        settle(app, step)
    })
    .await;
    let outcome = match answered(step) {
        Ok(o) => o,
        Err(e) => return failure_page(&e),
    };
    match outcome {
        LoginOutcome::SignedIn { session, complete, .. } => {
            if !complete
                && let Some(r) =
                    super::push_page::push_at_once(&app, session.as_str(), form.username.trim(), ip, &form.rd).await
            {
                return r;
            }
            let next = if complete {
                app.return_url(&form.rd)
            } else {
                format!("{}/login/code?rd={}", app.base(), super::web::query_escape(&form.rd))
            };
            see_other(&next, vec![app.session_set_cookie(session.as_str())])
        }
        LoginOutcome::Enroll { user } => self_enrollment(&app, &user).await,
        LoginOutcome::Refused(r) => {
            if r == Refusal::Banned {
                // Answered as slowly as a checked password (issue 9.6), outside the login slot.
                app.pace.wait(started.elapsed()).await;
            }
            retry(&app, message_for(r), &form.username)
        }
    }
}

/// A person who just gave the right password and may enroll themselves: an enrollment
/// link of their own, followed at once (the key is shown there once, then confirmed).
async fn self_enrollment(app: &Arc<App>, user: &str) -> Response {
    let Some(invites) = app.invites.clone() else {
        return enrollment_unavailable();
    };
    let (user, expires) = (
        user.to_string(),
        app.clock_now().saturating_add_unsigned(app.config.core.invite.ttl),
    );
    let made = blocking(app, move |_| {
        invites
            .create(&user, expires)
            .map_err(|e| GatewayError::failed("making an enrollment link", e).logged())
    })
    .await;
    match answered(made) {
        Ok(token) => see_other(&format!("{}/enroll/{}", app.base(), token.as_str()), vec![]),
        Err(e) => failure_page(&e),
    }
}

/// `GET /login/code`.
pub async fn code_page(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<ReturnTo>,
) -> Response {
    let s = match app.current_session(&headers, ip) {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(&app, &q.rd),
        Err(e) => return failure_page(&e),
    };
    if s.level == Level::TwoFactor {
        return see_other(&app.return_url(&q.rd), vec![]);
    }
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let csrf = app.csrf_token(&nonce);
    let push = second_factor_buttons(&app, &s.user, &csrf, &q.rd);
    page(
        StatusCode::OK,
        html::code(app.base(), &csrf, &q.rd, &s.user, None, push.as_deref()),
        cookie.into_iter().collect(),
    )
}

/// What the code page offers above the code form: "Use your passkey", "Send a push" (one
/// directory read for both; a store that fails shows no button rather than an error).
fn second_factor_buttons(app: &App, user: &str, csrf: &str, rd: &str) -> Option<String> {
    let u = app.engine.directory.user(user).ok().flatten()?;
    let passkey = super::passkey_page::passkey_button(app, &u, csrf, rd);
    let push = super::push_page::push_button(app, &u, csrf, rd);
    match (passkey, push) {
        (None, None) => None,
        (a, b) => Some(format!("{}{}", a.unwrap_or_default(), b.unwrap_or_default())),
    }
}

/// `POST /login/code`.
pub async fn code_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let s = match app.current_session(&headers, ip) {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(&app, &form.rd),
        Err(e) => return failure_page(&e),
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let retry = |app: &App, error: &str| {
        let csrf = app.csrf_token(&nonce);
        let push = second_factor_buttons(app, &s.user, &csrf, &form.rd);
        page(
            StatusCode::UNAUTHORIZED,
            html::code(app.base(), &csrf, &form.rd, &s.user, Some(error), push.as_deref()),
            cookie.clone().into_iter().collect(),
        )
    };
    if !app.csrf_ok(&headers, &form.csrf) {
        return retry(&app, "The form expired. Please try again.");
    }
    let Some(current) = app.session_cookie(&headers).map(str::to_string) else {
        return to_login(&app, &form.rd);
    };
    let code = form.code.clone();
    let step = blocking(&app, move |app| {
        settle(app, app.authorizer().login_code(&current, code.trim(), ip))
    })
    .await;
    let outcome = match answered(step) {
        Ok(o) => o,
        Err(e) => return failure_page(&e),
    };
    match outcome {
        LoginOutcome::SignedIn { session, .. } => see_other(
            &app.return_url(&form.rd),
            vec![app.session_set_cookie(session.as_str())],
        ),
        LoginOutcome::Refused(Refusal::NotSignedIn) | LoginOutcome::Enroll { .. } => to_login(&app, &form.rd),
        LoginOutcome::Refused(r) => retry(&app, message_for(r)),
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
    // A session that could not be revoked is still live: say so, never "signed out".
    if let Some(id) = app.session_cookie(&headers)
        && let Err(e) = app.authorizer().sign_out(id)
    {
        return failure_page(&GatewayError::failed("sign out", e).logged());
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
        Err(e) => failure_page(&e),
        Ok(Some(s)) if s.level == Level::TwoFactor => {
            let (nonce, cookie) = csrf_nonce(&app, &headers);
            let body = html::demo(app.base(), &app.csrf_token(&nonce), &s.user, &s.groups);
            page(StatusCode::OK, body, cookie.into_iter().collect())
        }
        Ok(_) => {
            let here = format!("{}/", app.config.server.portal_url.trim_end_matches('/'));
            to_login(&app, &here)
        }
    }
}

/// `GET /`: who is signed in, and a sign-out button (where a login without a return
/// address lands); nobody signed in goes to the login page.
pub async fn home_page(State(app): State<Arc<App>>, ClientIp(ip): ClientIp, headers: HeaderMap) -> Response {
    match app.current_session(&headers, ip) {
        Err(e) => failure_page(&e),
        Ok(Some(s)) => {
            let (nonce, cookie) = csrf_nonce(&app, &headers);
            let both = s.level == Level::TwoFactor;
            let body = html::home(app.base(), &app.csrf_token(&nonce), &s.user, &s.groups, both);
            page(StatusCode::OK, body, cookie.into_iter().collect())
        }
        Ok(None) => {
            let here = format!("{}/", app.config.server.portal_url.trim_end_matches('/'));
            to_login(&app, &here)
        }
    }
}

/// A new TOTP token with the configured defaults, for enrollment.
fn fresh_token(app: &App) -> Token {
    let o = &app.config.core.otp;
    Token::generate(Step::Time(o.period), o.algorithm, o.digits)
}

/// `GET /enroll/{token}`: shows the new token's QR code once.
pub async fn enroll_page(State(app): State<Arc<App>>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let Some(invites) = app.invites.clone() else {
        return enrollment_unavailable();
    };
    let now = app.clock_now();
    let found = match invites.find(&token, now) {
        Ok(f) => f,
        Err(e) => return failure_page(&GatewayError::failed("reading invitations", e).logged()),
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

/// The page for an enrollment link when the store keeps no invitations.
pub(super) fn enrollment_unavailable() -> Response {
    page(
        StatusCode::NOT_FOUND,
        html::message("Not available", "Enrollment needs the SQLite store.", None),
        vec![],
    )
}

pub(super) fn link_expired() -> Response {
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
        return enrollment_unavailable();
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
    let opened = match app
        .authorizer()
        .open_enrollment(invites.as_ref(), &token, fresh_token(&app), ip)
    {
        Ok((opened, event)) => {
            if let Some(e) = &event {
                app.record(e);
            }
            opened
        }
        Err(e) => return failure_page(&GatewayError::failed("reading invitations", e).logged()),
    };
    let Some((invite, first_view)) = opened else {
        return link_expired();
    };
    let mut shown = None;
    if first_view
        && let Some(t) = &invite.pending
        && let Some(k) = t.key_uri(&invite.user, &app.config.core.otp.issuer)
    {
        let text = k.to_uri();
        let svg = crate::qr::svg_string(&text).unwrap_or_default();
        shown = Some((svg, Zeroizing::new(text), hand_entry_settings(t)));
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
        return enrollment_unavailable();
    };
    let (nonce, cookie) = csrf_nonce(&app, &headers);
    let Ok(Some(invite)) = invites.find(&token, app.clock_now()) else {
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
    let code = form.code.clone();
    let checked = blocking(&app, move |app| {
        let checked = app
            .authorizer()
            .confirm_enrollment(invites.as_ref(), &token, code.trim(), ip);
        // Logged here, on the worker: see `settle`.
        let (outcome, event) = checked.map_err(|e| GatewayError::failed("confirming an enrollment", e).logged())?;
        if let Some(e) = &event {
            app.record(e);
        }
        Ok(outcome)
    })
    .await;
    let outcome = match answered(checked) {
        Ok(o) => o,
        Err(e) => return failure_page(&e),
    };
    match outcome {
        Enrollment::Done => {}
        Enrollment::Expired => return link_expired(),
        Enrollment::Refused => return retry(&app, WRONG),
        Enrollment::WrongCode => {
            return retry(
                &app,
                "That code is not correct. Check the app shows this account and try the current code.",
            );
        }
    }
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

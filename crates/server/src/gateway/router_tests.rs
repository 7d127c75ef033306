//! The whole gateway in process: `router()` over an `App` built from parts (a temp SQLite
//! store and a clock the test moves), driven with tower's `oneshot`. Login, idle expiry and
//! absolute expiry are checked at exact instants, with no sleeping.

use super::{App, router};
use crate::settings::Settings;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use portcullis_core::Clock;
use portcullis_core::StoreError;
use portcullis_core::clock::ManualClock;
use portcullis_core::model::{FirstFactor, Step, Token, User};
use portcullis_core::session::{Session, SessionBackend};
use portcullis_otp::{Hotp, totp_step};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;

const T0: i64 = 1_800_000_015;
const PORTAL: &str = "http://127.0.0.1:9091";

/// A gateway with `alice` (password `pw`, one TOTP token), 30 min idle, 12 h absolute.
struct Gateway {
    app: Arc<App>,
    clock: Arc<ManualClock>,
    token: Token,
    _dir: tempfile::TempDir,
}

/// What a request came back with.
struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookies: Vec<String>,
    body: String,
}

impl Reply {
    /// `name=value` of a cookie the reply set.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The hidden CSRF field's value.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form") + 19;
        self.body[at..].split('"').next().unwrap_or_default().to_string()
    }
}

/// A session store whose deletes fail while `failing` is set (the disk or database gone).
struct FailingDeletes {
    inner: Box<dyn SessionBackend>,
    failing: Arc<AtomicBool>,
}

impl SessionBackend for FailingDeletes {
    fn load(&self, now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
        self.inner.load(now)
    }
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        self.inner.get(hash)
    }
    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
        self.inner.put(hash, s)
    }
    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
        self.inner.touch(hash, last_seen)
    }
    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::Format("disk I/O error".into()));
        }
        self.inner.delete(hash)
    }
    fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        self.inner.delete_user(user)
    }
    fn purge(&self, a: i64, i: i64) -> Result<(), StoreError> {
        self.inner.purge(a, i)
    }
}

impl Gateway {
    fn new() -> Gateway {
        Self::with_sessions(|s| s)
    }

    /// A gateway whose session store is `wrap`ped around the SQLite one.
    fn with_sessions(wrap: impl FnOnce(Box<dyn SessionBackend>) -> Box<dyn SessionBackend>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:9091\"\nportal_url = \"{PORTAL}\"\n\
             default_redirect = \"{PORTAL}/\"\ntwo_step = false\n\
             [session]\nsecure = false\nidle = 1800\nabsolute = 43200\n\
             [store]\nbackend = \"sqlite\"\npath = \"portcullis.db\"\n"
        );
        std::fs::write(&path, &text).unwrap();
        let config = Settings::parse(&text, &path).unwrap();
        let mut stores = portcullis_store::open_all(&config.core).unwrap();
        stores.sessions = stores.sessions.map(wrap);
        let mut alice = User::new(
            "alice",
            FirstFactor::Hash(portcullis_core::password::hash_password("pw").unwrap()),
        );
        let token = Token::generate(Step::Time(30), portcullis_otp::Algorithm::Sha1, 6);
        alice.tokens = vec![token.clone()];
        stores.directory.create(&alice).unwrap();
        let clock = Arc::new(ManualClock::at(T0));
        let app = App::from_parts(config, stores, clock.clone()).unwrap();
        Gateway {
            app: Arc::new(app),
            clock,
            token,
            _dir: dir,
        }
    }

    /// The token's code at the clock's time.
    fn code(&self) -> String {
        let g = Hotp::new(&self.token.secret, self.token.algorithm, self.token.digits);
        g.code(totp_step(self.clock.now(), 30)).to_string()
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let r = router(self.app.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cookies = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        Reply {
            status,
            location,
            cookies,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// nginx's `auth_request` subrequest for `/app/` with `cookie`.
    async fn check(&self, cookie: &str) -> StatusCode {
        let req = Request::get("/api/authz/auth-request")
            .header("X-Original-URL", "http://127.0.0.1:9091/app/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        self.send(req).await.status
    }

    /// Signs alice in on the one-page form; the session cookie (`name=value`).
    async fn sign_in(&self, password: &str, code: &str) -> Reply {
        let page = self.send(Request::get("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf_cookie = page.cookie("portcullis_csrf").expect("a CSRF cookie");
        let form = format!(
            "csrf={}&rd=&username=alice&password={password}&code={code}",
            page.csrf()
        );
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &csrf_cookie)
            .header(header::ORIGIN, PORTAL)
            .body(Body::from(form))
            .unwrap();
        self.send(req).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_login_opens_the_app_and_a_wrong_code_does_not() {
    let gw = Gateway::new();
    assert_eq!(gw.check("").await, StatusCode::UNAUTHORIZED, "no session");
    let wrong = gw.sign_in("pw", "000000").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(wrong.cookie("portcullis_session").is_none());
    let ok = gw.sign_in("pw", &gw.code()).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("http://127.0.0.1:9091/"));
    let session = ok.cookie("portcullis_session").expect("a session cookie");
    let set = ok
        .cookies
        .iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite"), "{set}");
    assert_eq!(gw.check(&session).await, StatusCode::OK);
    // Signed in, the login page sends the browser on instead of asking again.
    let again = Request::get("/login")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(gw.send(again).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_after_the_idle_time_to_the_second() {
    let gw = Gateway::new();
    let session = gw.sign_in("pw", &gw.code()).await.cookie("portcullis_session").unwrap();
    gw.clock.advance(1799);
    assert_eq!(gw.check(&session).await, StatusCode::OK, "used within the idle time");
    gw.clock.advance(1799);
    assert_eq!(
        gw.check(&session).await,
        StatusCode::OK,
        "each use starts the idle time again"
    );
    gw.clock.advance(1800);
    assert_eq!(gw.check(&session).await, StatusCode::UNAUTHORIZED, "idle for 30 min");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_ends_at_the_absolute_limit() {
    let gw = Gateway::new();
    let session = gw.sign_in("pw", &gw.code()).await.cookie("portcullis_session").unwrap();
    // Used every 20 minutes: never idle, yet over after 12 hours.
    let mut at = 0;
    while at + 1200 < 43_200 {
        gw.clock.advance(1200);
        at += 1200;
        assert_eq!(gw.check(&session).await, StatusCode::OK, "at +{at} s");
    }
    gw.clock.advance(43_200 - at);
    assert_eq!(
        gw.check(&session).await,
        StatusCode::UNAUTHORIZED,
        "at the absolute limit"
    );
}

/// A logout whose session could not be revoked (the store failing) says so with a 503 and
/// never "signed out": the session is still live, and must keep working as one, not come
/// back later through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_the_store_refuses_is_an_error_page_not_signed_out() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let gw = Gateway::with_sessions(move |inner| Box::new(FailingDeletes { inner, failing: flag }));
    let session = gw.sign_in("pw", &gw.code()).await.cookie("portcullis_session").unwrap();
    let logout = |cookie: String| {
        let gw = &gw;
        async move {
            let page = gw
                .send(
                    Request::get("/logout")
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            let csrf_cookie = page.cookie("portcullis_csrf").expect("a CSRF cookie");
            let req = Request::post("/logout")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("{cookie}; {csrf_cookie}"))
                .header(header::ORIGIN, PORTAL)
                .body(Body::from(format!("csrf={}&rd=", page.csrf())))
                .unwrap();
            gw.send(req).await
        }
    };
    failing.store(true, Ordering::Relaxed);
    let refused = logout(session.clone()).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    assert!(!refused.body.contains("signed out"), "{}", refused.body);
    assert_eq!(
        gw.check(&session).await,
        StatusCode::OK,
        "still one session, here as in the store"
    );
    failing.store(false, Ordering::Relaxed);
    let done = logout(session.clone()).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("signed out"), "{}", done.body);
    assert_eq!(gw.check(&session).await, StatusCode::UNAUTHORIZED);
}

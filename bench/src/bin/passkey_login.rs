//! A passkey login against a password+TOTP login, through the core as the portal drives it,
//! one after the other on one core (`bench/passkey.sh`): the password step (argon2id, the
//! defaults), then either the code step or the passkey's begin (options, state kept) and
//! finish (ES256 verification, the counter moved on in SQLite, the two-factor session). The
//! authenticator's own signing (webauthn-authenticator-rs's software passkey, the browser's
//! and the key's part) runs outside the timed spans. Alternating, one of each at a time.
//!
//! Usage: `passkey_login ROUNDS`. Prints `key=value` lines.

use anyhow::{Context, Result, bail};
use portcullis_core::clock::{Clock, ManualClock};
use portcullis_core::config::{Config, SessionStoreKind, WebauthnConfig};
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::login::{LoginAttempt, LoginOutcome};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::passkey::{PasskeyBegin, Passkeys, Registration};
use portcullis_otp::{Algorithm, Secret};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
const PASSWORD: &str = "a long enough password";
const KEY: &[u8] = b"12345678901234567890";

fn signed_in(o: &LoginOutcome) -> Result<String> {
    match o {
        LoginOutcome::SignedIn { session, .. } => Ok(session.as_str().to_string()),
        other => bail!("not signed in: {other:?}"),
    }
}

fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .context("usage: passkey_login ROUNDS")?
        .parse()
        .context("ROUNDS")?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(portcullis_store::sqlite::SqliteStore::open(&dir.path().join("p.db"))?);
    let mut alice = User::new(
        "alice",
        FirstFactor::Hash(portcullis_core::password::hash_password(PASSWORD)?),
    );
    alice.tokens = vec![Token::new(
        TokenKind::Oath,
        Step::Time(30),
        Secret::from_bytes(KEY.to_vec()),
        Algorithm::Sha1,
        6,
    )];
    portcullis_core::Directory::create(store.as_ref(), &alice)?;
    let clock = Arc::new(ManualClock::at(portcullis_core::SystemClock.now()));
    let mut config = Config::default();
    config.session.store = SessionStoreKind::Memory;
    // Many logins of one user from one address: regulation is not what is measured.
    config.regulation.max_retries = 0;
    let mut engine = Engine::from_config(&config, Parts::directory_only(store), clock.clone())?;
    let verifier =
        portcullis_webauthn::WebauthnVerifier::new(&WebauthnConfig::default(), "https://auth.example.com/", "")?;
    engine.passkeys = Some(Passkeys::new(Box::new(verifier), false, false, 150));
    let origin = url::Url::parse("https://auth.example.com")?;
    let mut key = SoftPasskey::new(true);
    let a = engine.authorizer();
    let login = |code: Option<&str>| {
        a.login(&LoginAttempt {
            user: "alice",
            password: PASSWORD,
            code,
            target: None,
            client_ip: IP,
            current: None,
        })
    };
    let code_now =
        || portcullis_otp::totp(&Secret::from_bytes(KEY.to_vec()), clock.now(), 30, 6, Algorithm::Sha1).to_string();

    // Register the passkey from a two-factor session.
    let s = signed_in(&login(Some(&code_now()))?.outcome)?;
    let PasskeyBegin::Options(o) = a.passkey_register_begin(s.as_str(), IP, "bench")? else {
        bail!("no registration options");
    };
    let reg = key
        .do_registration(origin.clone(), serde_json::from_str(&o)?)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (r, _) = a.passkey_register_finish(s.as_str(), &serde_json::to_string(&reg)?, IP)?;
    if !matches!(r, Registration::Added(_)) {
        bail!("registration: {r:?}");
    }

    let (mut totp, mut passkey) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        // Password + TOTP (a new time step each round: a code is accepted once).
        clock.advance(30);
        let code = code_now();
        let t = Instant::now();
        let step = login(Some(&code))?;
        totp += t.elapsed();
        signed_in(&step.outcome)?;

        // Password, then the passkey.
        let t = Instant::now();
        let one = signed_in(&login(None)?.outcome)?;
        let (b, _) = a.passkey_login_begin(one.as_str(), IP)?;
        let mut spent = t.elapsed();
        let PasskeyBegin::Options(o) = b else {
            bail!("no options: {b:?}");
        };
        let answer = key
            .do_authentication(origin.clone(), serde_json::from_str(&o)?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let answer = serde_json::to_string(&answer)?;
        let t = Instant::now();
        let done = a.passkey_login_finish(one.as_str(), &answer, IP)?;
        spent += t.elapsed();
        signed_in(&done.outcome)?;
        passkey += spent;
    }
    let per_s = |d: Duration| rounds as f64 / d.as_secs_f64();
    println!("rounds={rounds}");
    println!("passkey_per_s={:.1}", per_s(passkey));
    println!("totp_per_s={:.1}", per_s(totp));
    println!("ratio={:.2}", per_s(passkey) / per_s(totp));
    Ok(())
}

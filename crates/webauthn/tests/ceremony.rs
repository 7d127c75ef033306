//! The passkey state machine end to end in process: the core's `Authorizer` over a SQLite
//! store, the webauthn-rs verifier, and webauthn-authenticator-rs's software passkey as the
//! authenticator (a real ES256 key; the browser's part done by the library).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report
use portcullis_core::Directory;
use portcullis_core::clock::{Clock, ManualClock};
use portcullis_core::config::{Config, WebauthnConfig};
use portcullis_core::engine::{Engine, Parts};
use portcullis_core::gate::Rejection;
use portcullis_core::login::{LoginAttempt, LoginOutcome, Refusal};
use portcullis_core::model::{FirstFactor, Step, Token, TokenKind, User};
use portcullis_core::passkey::{PasskeyBegin, Passkeys, Registration};
use portcullis_core::session::{SessionId, random_token};
use portcullis_otp::{Algorithm, Secret};
use portcullis_webauthn::WebauthnVerifier;
use std::net::IpAddr;
use std::sync::Arc;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

const PORTAL: &str = "https://auth.example.com/";
const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
const KEY: &[u8] = b"12345678901234567890";

struct World {
    _dir: tempfile::TempDir,
    engine: Engine,
    clock: Arc<ManualClock>,
}

fn world(passwordless: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(portcullis_store::sqlite::SqliteStore::open(&dir.path().join("p.db")).unwrap());
    for name in ["alice", "bob"] {
        let mut u = User::new(name, FirstFactor::Pin(zeroize::Zeroizing::new("1234".into())));
        u.tokens = vec![Token::new(
            TokenKind::Oath,
            Step::Time(30),
            Secret::from_bytes(KEY.to_vec()),
            Algorithm::Sha1,
            6,
        )];
        store.create(&u).unwrap();
    }
    let clock = Arc::new(ManualClock::at(portcullis_core::SystemClock.now()));
    let mut config = Config::default();
    config.session.store = portcullis_core::config::SessionStoreKind::Memory;
    let mut engine = Engine::from_config(&config, Parts::directory_only(store), clock.clone()).unwrap();
    let w = WebauthnConfig {
        passwordless,
        ..WebauthnConfig::default()
    };
    let verifier = WebauthnVerifier::new(&w, PORTAL, "").unwrap();
    engine.passkeys = Some(Passkeys::new(Box::new(verifier), passwordless, false, 150));
    World {
        _dir: dir,
        engine,
        clock,
    }
}

fn origin() -> Url {
    Url::parse("https://auth.example.com").unwrap()
}

fn refusal(o: &LoginOutcome) -> Option<Refusal> {
    match o {
        LoginOutcome::Refused(r) => Some(*r),
        _ => None,
    }
}

impl World {
    fn code(&self) -> String {
        portcullis_otp::totp(
            &Secret::from_bytes(KEY.to_vec()),
            self.clock.now(),
            30,
            6,
            Algorithm::Sha1,
        )
        .to_string()
    }

    /// A session after the password (`code: None`) or after both factors.
    fn login(&self, user: &str, code: Option<&str>) -> SessionId {
        let step = self
            .engine
            .authorizer()
            .login(&LoginAttempt {
                user,
                password: "1234",
                code,
                target: None,
                client_ip: IP,
                current: None,
            })
            .unwrap();
        match step.outcome {
            LoginOutcome::SignedIn { session, .. } => session,
            other => panic!("{other:?}"),
        }
    }

    fn two_factor(&self, user: &str) -> SessionId {
        // A new step each time: a TOTP code is accepted once.
        self.clock.advance(30);
        let code = self.code();
        self.login(user, Some(&code))
    }

    /// Registers a passkey of `key` for `user` from a two-factor session.
    fn register(&self, user: &str, key: &mut SoftPasskey, label: &str) -> Registration {
        let s = self.two_factor(user);
        let PasskeyBegin::Options(o) = self
            .engine
            .authorizer()
            .passkey_register_begin(s.as_str(), IP, label)
            .unwrap()
        else {
            panic!("no options");
        };
        let ccr: CreationChallengeResponse = serde_json::from_str(&o).unwrap();
        let answer = serde_json::to_string(&key.do_registration(origin(), ccr).unwrap()).unwrap();
        self.engine
            .authorizer()
            .passkey_register_finish(s.as_str(), &answer, IP)
            .unwrap()
            .0
    }

    /// Options for the passkey step of the one-factor session `s`.
    fn options(&self, s: &SessionId) -> RequestChallengeResponse {
        let (b, _) = self.engine.authorizer().passkey_login_begin(s.as_str(), IP).unwrap();
        let PasskeyBegin::Options(o) = b else {
            panic!("{b:?}");
        };
        serde_json::from_str(&o).unwrap()
    }

    /// A fresh one-factor session of `user` and its passkey options.
    fn begin(&self, user: &str) -> (SessionId, RequestChallengeResponse) {
        let s = self.login(user, None);
        let o = self.options(&s);
        (s, o)
    }

    fn finish(&self, s: &SessionId, answer: &str) -> (LoginOutcome, Vec<Option<&'static str>>) {
        let step = self
            .engine
            .authorizer()
            .passkey_login_finish(s.as_str(), answer, IP)
            .unwrap();
        (step.outcome, step.events.iter().map(|e| e.failure).collect())
    }

    fn user(&self, name: &str) -> User {
        self.engine.directory.user(name).unwrap().unwrap()
    }
}

#[test]
fn a_registered_passkey_signs_in_after_the_password_once_per_challenge() {
    let w = world(false);
    let mut key = SoftPasskey::new(true);
    assert_eq!(
        w.register("alice", &mut key, " laptop "),
        Registration::Added("laptop".into())
    );
    let alice = w.user("alice");
    assert_eq!(alice.passkeys.len(), 1);
    assert_eq!(alice.passkeys[0].label, "laptop");
    // A second key with the same label is told apart.
    let mut other = SoftPasskey::new(true);
    assert_eq!(
        w.register("alice", &mut other, "laptop"),
        Registration::Added("laptop (2)".into())
    );

    let (s, rcr) = w.begin("alice");
    assert_eq!(rcr.public_key.allow_credentials.len(), 2, "both keys are offered");
    let answer = serde_json::to_string(&key.do_authentication(origin(), rcr).unwrap()).unwrap();
    let (outcome, failures) = w.finish(&s, &answer);
    let LoginOutcome::SignedIn { level, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(level, portcullis_core::Level::TwoFactor);
    assert_eq!(failures, [None]);
    let used = &w.user("alice").passkeys[0];
    assert!(used.last_used.is_some() && used.counter > 0, "{used:?}");

    // The captured request again: the session it was bound to is gone (replaced by the
    // two-factor one); on a new session, with a new challenge, it does not verify.
    let (outcome, failures) = w.finish(&s, &answer);
    assert_eq!(refusal(&outcome), Some(Refusal::NotSignedIn), "{outcome:?}");
    assert!(failures.is_empty());
    let (s2, _) = w.begin("alice");
    let (outcome, failures) = w.finish(&s2, &answer);
    assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::BadPasskey)));
    assert_eq!(failures, [Some("bad_passkey")]);
    assert_eq!(
        w.user("alice").failures,
        1,
        "a refused assertion counts like a wrong code"
    );
    // Nothing pending for a third session: the answer is refused as a replay.
    let s3 = w.login("alice", None);
    let (outcome, failures) = w.finish(&s3, &answer);
    assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::Replayed)));
    assert_eq!(failures, [Some("replayed")]);
}

#[test]
fn another_origin_a_cloned_key_and_a_removed_key_are_refused() {
    let w = world(false);
    let mut key = SoftPasskey::new(true);
    assert!(matches!(w.register("alice", &mut key, "key"), Registration::Added(_)));

    // Signed on a page of another host under the RP ID (a subdomain the authenticator
    // accepts): refused by origin, the portal's own being the only one allowed.
    let (s, rcr) = w.begin("alice");
    let phished = key
        .do_authentication(Url::parse("https://evil.auth.example.com").unwrap(), rcr.clone())
        .unwrap();
    let (outcome, failures) = w.finish(&s, &serde_json::to_string(&phished).unwrap());
    assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::BadPasskey)));
    assert_eq!(failures, [Some("bad_passkey")]);
    // The refusal left the ceremony open: the real answer to it still signs in.
    let good = serde_json::to_string(&key.do_authentication(origin(), rcr).unwrap()).unwrap();
    assert!(matches!(w.finish(&s, &good).0, LoginOutcome::SignedIn { .. }));

    // The store says the key signed 1000 times already: this one's counter went back.
    w.engine
        .directory
        .update("alice", &mut |u| {
            u.passkeys[0].counter = 1000;
            true
        })
        .unwrap();
    let (s, rcr) = w.begin("alice");
    let answer = serde_json::to_string(&key.do_authentication(origin(), rcr).unwrap()).unwrap();
    let (outcome, failures) = w.finish(&s, &answer);
    assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::ClonedPasskey)));
    assert_eq!(failures, [Some("cloned_passkey")]);
    assert_eq!(w.user("alice").passkeys[0].counter, 1000, "not moved back");

    // Removed while the person was touching it.
    let (s, rcr) = w.begin("alice");
    let answer = serde_json::to_string(&key.do_authentication(origin(), rcr).unwrap()).unwrap();
    w.engine
        .directory
        .update("alice", &mut |u| {
            u.passkeys.clear();
            true
        })
        .unwrap();
    let (outcome, _) = w.finish(&s, &answer);
    assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::BadPasskey)));
    // With no passkey, none is offered.
    let s = w.login("alice", None);
    let (b, _) = w.engine.authorizer().passkey_login_begin(s.as_str(), IP).unwrap();
    assert!(
        matches!(b, PasskeyBegin::Refused(Refusal::Rejected(Rejection::NoToken))),
        "{b:?}"
    );
}

#[test]
fn failed_assertions_lock_the_account_like_wrong_codes() {
    let w = world(false);
    let mut key = SoftPasskey::new(true);
    assert!(matches!(w.register("alice", &mut key, "key"), Registration::Added(_)));
    // A stranger's key, registered to bob: its assertions for alice are refused.
    let mut stranger = SoftPasskey::new(true);
    assert!(matches!(
        w.register("bob", &mut stranger, "key"),
        Registration::Added(_)
    ));
    let before = w.login("alice", None);
    let limit = Config::default().lockout.max_failures;
    for _ in 0..limit {
        let (s, mut rcr) = w.begin("alice");
        rcr.public_key.allow_credentials = w
            .user("bob")
            .passkeys
            .iter()
            .map(|p| webauthn_rs_proto::AllowCredentials {
                type_: "public-key".into(),
                id: p.id.clone(),
                transports: None,
            })
            .collect();
        let answer = serde_json::to_string(&stranger.do_authentication(origin(), rcr).unwrap()).unwrap();
        let (outcome, failures) = w.finish(&s, &answer);
        assert_eq!(refusal(&outcome), Some(Refusal::Rejected(Rejection::BadPasskey)));
        assert_eq!(failures, [Some("bad_passkey")]);
    }
    assert_eq!(w.user("alice").failures, limit);
    // Locked (and banned) now: no passkey is offered, even on a session made before.
    let (b, _) = w.engine.authorizer().passkey_login_begin(before.as_str(), IP).unwrap();
    assert!(matches!(b, PasskeyBegin::Refused(_)), "{b:?}");
}

#[test]
fn one_credential_has_one_owner() {
    let w = world(false);
    let mut key = SoftPasskey::new(true);
    assert!(matches!(w.register("alice", &mut key, "key"), Registration::Added(_)));
    // Bob registers a new key; before it lands, alice's stored key takes its ID (as if the
    // same authenticator answered both): the registration is refused, not shared.
    let s = w.two_factor("bob");
    let PasskeyBegin::Options(o) = w
        .engine
        .authorizer()
        .passkey_register_begin(s.as_str(), IP, "mine")
        .unwrap()
    else {
        panic!()
    };
    let mut bobs = SoftPasskey::new(true);
    let reg = bobs
        .do_registration(origin(), serde_json::from_str(&o).unwrap())
        .unwrap();
    let id = reg.raw_id.to_vec();
    w.engine
        .directory
        .update("alice", &mut |u| {
            u.passkeys[0].id.clone_from(&id);
            true
        })
        .unwrap();
    let answer = serde_json::to_string(&reg).unwrap();
    let (r, event) = w
        .engine
        .authorizer()
        .passkey_register_finish(s.as_str(), &answer, IP)
        .unwrap();
    assert_eq!(r, Registration::Duplicate);
    assert_eq!(event.unwrap().failure, Some("bad_passkey"), "logged and counted");
    assert!(w.user("bob").passkeys.is_empty());
    // An answer for no open registration is refused.
    let (r, _) = w
        .engine
        .authorizer()
        .passkey_register_finish(s.as_str(), &answer, IP)
        .unwrap();
    assert_eq!(r, Registration::Expired);
    // Registration needs a two-factor session; a one-factor one gets nothing.
    let one = w.login("bob", None);
    assert!(matches!(
        w.engine
            .authorizer()
            .passkey_register_begin(one.as_str(), IP, "x")
            .unwrap(),
        PasskeyBegin::NotSignedIn
    ));
}

#[test]
fn passwordless_needs_it_turned_on_and_refuses_unknown_credentials() {
    let off = world(false);
    assert!(matches!(
        off.engine.authorizer().passwordless_begin(&random_token(), IP).unwrap(),
        PasskeyBegin::Unavailable
    ));
    let w = world(true);
    let token = random_token();
    let token = token.as_str();
    let PasskeyBegin::Options(o) = w.engine.authorizer().passwordless_begin(token, IP).unwrap() else {
        panic!()
    };
    let rcr: RequestChallengeResponse = serde_json::from_str(&o).unwrap();
    assert!(
        rcr.public_key.allow_credentials.is_empty(),
        "any discoverable credential"
    );
    assert_eq!(
        rcr.public_key.user_verification,
        webauthn_rs_proto::UserVerificationPolicy::Required
    );
    // A made-up answer names no owner: refused, counted against the address.
    let made_up = r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"authenticatorData":"AAAA","clientDataJSON":"AAAA","signature":"AAAA","userHandle":null},"extensions":{}}"#;
    let step = w
        .engine
        .authorizer()
        .passwordless_finish(token, None, made_up, IP)
        .unwrap();
    assert!(matches!(
        step.outcome,
        LoginOutcome::Refused(Refusal::Rejected(Rejection::BadPasskey))
    ));
    assert_eq!(step.events[0].failure, Some("bad_passkey"));
    // A ceremony of another browser (another cookie) is not found.
    let step = w
        .engine
        .authorizer()
        .passwordless_finish(&random_token(), None, "{}", IP)
        .unwrap();
    assert!(matches!(
        step.outcome,
        LoginOutcome::Refused(Refusal::Rejected(Rejection::Replayed))
    ));
    // Registration asks for a discoverable credential with user verification.
    let s = w.two_factor("alice");
    let PasskeyBegin::Options(o) = w
        .engine
        .authorizer()
        .passkey_register_begin(s.as_str(), IP, "x")
        .unwrap()
    else {
        panic!()
    };
    let ccr: CreationChallengeResponse = serde_json::from_str(&o).unwrap();
    let sel = ccr.public_key.authenticator_selection.unwrap();
    assert!(sel.require_resident_key);
    assert_eq!(
        sel.user_verification,
        webauthn_rs_proto::UserVerificationPolicy::Required
    );
    // Too many open passwordless ceremonies from one address are refused.
    let refused = (0..20)
        .filter(|_| {
            matches!(
                w.engine.authorizer().passwordless_begin(&random_token(), IP).unwrap(),
                PasskeyBegin::Unavailable
            )
        })
        .count();
    assert!(refused >= 10, "{refused}");
}

/// An AAGUID list admits only authenticators whose attestation chains to the given roots:
/// the software passkey attests nothing ("none"), so it is refused, and nothing is stored.
#[test]
fn an_aaguid_list_refuses_an_authenticator_without_a_proven_model() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("roots.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=test attestation root", "-keyout"])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let strict = WebauthnConfig {
        attestation: portcullis_core::config::Attestation::Aaguids(vec!["cb69481e-8ff7-4039-93ec-0a2729a154a8".into()]),
        attestation_ca_file: Some(ca),
        ..WebauthnConfig::default()
    };
    let mut w = world(false);
    let verifier = WebauthnVerifier::new(&strict, PORTAL, "").unwrap();
    w.engine.passkeys = Some(Passkeys::new(Box::new(verifier), false, false, 150));
    let s = w.two_factor("alice");
    let PasskeyBegin::Options(o) = w
        .engine
        .authorizer()
        .passkey_register_begin(s.as_str(), IP, "key")
        .unwrap()
    else {
        panic!()
    };
    let ccr: CreationChallengeResponse = serde_json::from_str(&o).unwrap();
    assert!(
        matches!(
            ccr.public_key.attestation,
            Some(webauthn_rs_proto::AttestationConveyancePreference::Direct)
        ),
        "an attestation is asked for"
    );
    let mut key = SoftPasskey::new(true);
    let answer = serde_json::to_string(&key.do_registration(origin(), ccr).unwrap()).unwrap();
    let (r, event) = w
        .engine
        .authorizer()
        .passkey_register_finish(s.as_str(), &answer, IP)
        .unwrap();
    assert!(matches!(r, Registration::Refused(_)), "{r:?}");
    assert_eq!(event.unwrap().failure, Some("bad_passkey"));
    assert!(w.user("alice").passkeys.is_empty());
    // A file without a certificate is named at start-up.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let e = WebauthnVerifier::new(
        &WebauthnConfig {
            attestation_ca_file: Some(empty),
            ..strict
        },
        PORTAL,
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("attestation_ca_file") && e.contains("no certificate"), "{e}");
}

/// Drives the factor contract: right answers from the software passkey at the portal's
/// origin, wrong ones signed for another origin under the RP ID.
struct KeyDriver<'w> {
    world: &'w World,
    key: std::cell::RefCell<SoftPasskey>,
}

impl KeyDriver<'_> {
    fn sign(&self, challenge: &portcullis_core::factor::Challenge, at: &str) -> String {
        let portcullis_core::factor::Challenge::Assertion { options } = challenge else {
            return "{}".into();
        };
        let rcr: RequestChallengeResponse = serde_json::from_str(options).unwrap();
        let a = self
            .key
            .borrow_mut()
            .do_authentication(Url::parse(at).unwrap(), rcr)
            .unwrap();
        serde_json::to_string(&a).unwrap()
    }
}

impl portcullis_core::factor::FactorDriver for KeyDriver<'_> {
    fn right(&self, challenge: &portcullis_core::factor::Challenge) -> String {
        self.sign(challenge, "https://auth.example.com")
    }
    fn wrong(&self, challenge: &portcullis_core::factor::Challenge) -> String {
        self.sign(challenge, "https://evil.auth.example.com")
    }
    fn answer<'x>(&self, _: &portcullis_core::factor::Challenge, text: &'x str) -> portcullis_core::factor::Answer<'x> {
        portcullis_core::factor::Answer::Assertion(text)
    }
    fn lock(&self) {
        self.world
            .engine
            .directory
            .update("alice", &mut |u| {
                u.locked = true;
                true
            })
            .unwrap();
    }
}

#[test]
fn passkeys_keep_the_second_factor_contract() {
    let w = world(false);
    let mut key = SoftPasskey::new(true);
    assert!(matches!(w.register("alice", &mut key, "key"), Registration::Added(_)));
    let alice = w.user("alice");
    let bob = w.user("bob");
    let driver = KeyDriver {
        world: &w,
        key: std::cell::RefCell::new(key),
    };
    let authorizer = w.engine.authorizer();
    portcullis_core::factor::check_second_factor_contract(
        &portcullis_core::passkey::PasskeyFactor(&authorizer),
        &driver,
        &alice,
        &bob,
    );
}

/// The positive side of an AAGUID list: webauthn-authenticator-rs's software token attests
/// with a certificate chained to its own root, under its AAGUID. With that root and AAGUID
/// listed it registers; with that root listed for another model only, it is refused.
#[test]
fn an_aaguid_list_admits_the_listed_model_proven_by_its_attestation() {
    use crypto_glue::traits::EncodePem;
    let dir = tempfile::tempdir().unwrap();
    let register = |aaguid: &str, token: &mut webauthn_authenticator_rs::softtoken::SoftToken, root: &str| {
        let ca = dir.path().join(format!("{aaguid}.pem"));
        std::fs::write(&ca, root).unwrap();
        let config = WebauthnConfig {
            attestation: portcullis_core::config::Attestation::Aaguids(vec![aaguid.into()]),
            attestation_ca_file: Some(ca),
            ..WebauthnConfig::default()
        };
        let mut w = world(false);
        let verifier = WebauthnVerifier::new(&config, PORTAL, "").unwrap();
        w.engine.passkeys = Some(Passkeys::new(Box::new(verifier), false, false, 150));
        let s = w.two_factor("alice");
        let PasskeyBegin::Options(o) = w
            .engine
            .authorizer()
            .passkey_register_begin(s.as_str(), IP, "token")
            .unwrap()
        else {
            panic!()
        };
        let made = token
            .do_registration(origin(), serde_json::from_str(&o).unwrap())
            .unwrap();
        let r = w
            .engine
            .authorizer()
            .passkey_register_finish(s.as_str(), &serde_json::to_string(&made).unwrap(), IP)
            .unwrap()
            .0;
        (r, w.user("alice").passkeys.len())
    };
    let (mut token, root) = webauthn_authenticator_rs::softtoken::SoftToken::new(true).unwrap();
    let root = root.to_pem(crypto_glue::der::pem::LineEnding::LF).unwrap();
    let model = webauthn_authenticator_rs::softtoken::AAGUID.to_string();
    let (r, kept) = register(&model, &mut token, &root);
    assert_eq!((r, kept), (Registration::Added("token".into()), 1));
    let (r, kept) = register("cb69481e-8ff7-4039-93ec-0a2729a154a8", &mut token, &root);
    assert!(matches!(r, Registration::Refused(_)) && kept == 0, "{r:?}");
}

//! Passkeys through the real gateway over HTTP, with webauthn-authenticator-rs's software
//! passkey doing the browser's and the key's part (the Chromium test in `browser.rs` does
//! it with a real browser and a CDP virtual authenticator): register on /settings, sign in
//! with password + passkey, a replayed answer refused, the CLI's view and removal, an
//! invitation link, and `config check` on a bad RP ID.

use crate::harness::*;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

const PASSWORD: &str = "alice's long password";

/// A loopback portal by name: browsers (and the library's client) refuse an IP address as
/// a relying party.
fn localhost_portal(env: &Env, port: u16) -> String {
    let url = format!("http://localhost:{port}");
    env.loopback_portal(port);
    env.set("server", "portal_url", &format!("\"{url}\""));
    env.set("server", "default_redirect", &format!("\"{url}/\""));
    url
}

/// `data-csrf` of the page's passkey button.
fn button_csrf(body: &str) -> String {
    let at = body.find("data-csrf=\"").expect("no passkey button") + 11;
    body[at..].split('"').next().unwrap().to_string()
}

fn post_json(b: &Browser, url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let text = body.to_string();
    let r = b.get(url, &["-H", "Content-Type: application/json", "--data-binary", &text]);
    let v = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{url}: {} {}", r.status, r.body));
    (r.status, v)
}

#[test]
fn passkeys_register_sign_in_and_refuse_a_replay_over_http() {
    let env = Env::new("");
    let port = free_port();
    let portal = localhost_portal(&env, port);
    let secret = secret_of(&env.add_user("alice", PASSWORD, &[]));
    let gw = env.serve();
    let origin = Url::parse(&portal).unwrap();
    let b = Browser::new(&env, "alice");

    // Sign in with both factors; /settings offers "Add a passkey".
    let r = b.login_at(&portal, "alice", PASSWORD, &code_now(&env, &secret), "");
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&format!("{portal}/settings"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Add a passkey") && page.body.contains("no passkey yet"),
        "{}",
        page.body
    );
    let csrf = button_csrf(&page.body);
    let (status, begun) = post_json(
        &b,
        &format!("{portal}/settings/passkeys/begin"),
        &serde_json::json!({"csrf": csrf, "label": "laptop"}),
    );
    assert_eq!(status, 200, "{begun}");
    let mut key = SoftPasskey::new(true);
    let ccr: webauthn_rs_proto::CreationChallengeResponse = serde_json::from_value(begun["options"].clone()).unwrap();
    let made = key.do_registration(origin.clone(), ccr).unwrap();
    let (status, done) = post_json(
        &b,
        &format!("{portal}/settings/passkeys/finish"),
        &serde_json::json!({"csrf": csrf, "credential": made}),
    );
    assert_eq!(status, 200, "{done}");
    assert!(done["next"].as_str().unwrap().contains("added=laptop"), "{done}");
    let page = b.get(&format!("{portal}/settings?added=laptop"), &[]);
    assert!(
        page.body.contains("<strong>laptop</strong>") && page.body.contains("Remove"),
        "{}",
        page.body
    );
    let shown = env.ok(&["user", "show", "alice"], None);
    assert!(shown.contains("passkey:      \"laptop\""), "{shown}");
    // Without a CSRF token nothing begins.
    let (status, _) = post_json(&b, &format!("{portal}/settings/passkeys/begin"), &serde_json::json!({}));
    assert_eq!(status, 403);

    // Sign out; the password leads to the code page, which offers the passkey.
    b.logout_at(&portal);
    let page = b.get(&format!("{portal}/login"), &[]);
    let r = b.post(
        &format!("{portal}/login"),
        &[
            ("csrf", &page.csrf()),
            ("rd", ""),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let code_page = b.get(&format!("{portal}/login/code"), &[]);
    assert!(code_page.body.contains("Use your passkey"), "{}", code_page.body);
    assert!(code_page.body.contains("name=\"code\""), "the code form stays");
    let csrf = button_csrf(&code_page.body);
    let (status, begun) = post_json(
        &b,
        &format!("{portal}/login/passkey/begin"),
        &serde_json::json!({"csrf": csrf}),
    );
    assert_eq!(status, 200, "{begun}");
    let rcr: webauthn_rs_proto::RequestChallengeResponse = serde_json::from_value(begun["options"].clone()).unwrap();
    let signed = key.do_authentication(origin.clone(), rcr).unwrap();
    let finish = serde_json::json!({"csrf": csrf, "credential": signed});
    let (status, done) = post_json(&b, &format!("{portal}/login/passkey/finish"), &finish);
    assert_eq!(status, 200, "{done}");
    let home = b.get(&format!("{portal}/"), &[]);
    assert!(
        home.body
            .contains("Signed in as <strong>alice</strong> with password and code"),
        "{}",
        home.body
    );

    // The captured request again, from a new one-factor session: refused and logged.
    let attacker = Browser::new(&env, "attacker");
    let page = attacker.get(&format!("{portal}/login"), &[]);
    attacker.post(
        &format!("{portal}/login"),
        &[
            ("csrf", &page.csrf()),
            ("rd", ""),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    );
    let code_page = attacker.get(&format!("{portal}/login/code"), &[]);
    let csrf = button_csrf(&code_page.body);
    let replay = serde_json::json!({"csrf": csrf, "credential": finish["credential"]});
    let (status, said) = post_json(&attacker, &format!("{portal}/login/passkey/finish"), &replay);
    assert_eq!(status, 401, "{said}");
    let (_, _) = post_json(
        &attacker,
        &format!("{portal}/login/passkey/begin"),
        &serde_json::json!({"csrf": csrf}),
    );
    let (status, _) = post_json(&attacker, &format!("{portal}/login/passkey/finish"), &replay);
    assert_eq!(status, 401, "a new challenge does not take the old answer");
    let log = gw.log_text();
    assert!(
        log.contains("reason=\"replayed\"") && log.contains("reason=\"bad_passkey\""),
        "{log}"
    );

    // The administrator removes it; the code page offers it no more.
    let out = env.ok(&["user", "factor", "remove", "alice", "passkey", "laptop"], None);
    assert!(out.contains("removed"), "{out}");
    let code_page = attacker.get(&format!("{portal}/login/code"), &[]);
    assert!(!code_page.body.contains("Use your passkey"), "{}", code_page.body);
    let none = env.run(&["user", "factor", "remove", "alice", "passkey"], None);
    assert!(!none.status.success() && String::from_utf8_lossy(&none.stderr).contains("no passkey"));

    // An invitation to register one without signing in.
    let link = env.ok(&["user", "invite", "alice", "--passkey"], None);
    let path = link
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}/", gw.url("").trim_end_matches('/'))))
        .or_else(|| link.lines().find_map(|l| l.split_once("/enroll/").map(|(_, p)| p)))
        .unwrap_or_else(|| panic!("{link}"));
    assert!(path.ends_with("/passkey"), "{link}");
    let token = path.trim_start_matches("enroll/").trim_end_matches("/passkey");
    let guest = Browser::new(&env, "guest");
    let page = guest.get(&format!("{portal}/enroll/{token}/passkey"), &[]);
    assert!(page.body.contains("Register a passkey"), "{}", page.body);
    let csrf = button_csrf(&page.body);
    let (status, begun) = post_json(
        &guest,
        &format!("{portal}/enroll/{token}/passkey/begin"),
        &serde_json::json!({"csrf": csrf, "label": "phone"}),
    );
    assert_eq!(status, 200, "{begun}");
    let mut phone = SoftPasskey::new(true);
    let made = phone
        .do_registration(
            origin.clone(),
            serde_json::from_value(begun["options"].clone()).unwrap(),
        )
        .unwrap();
    let (status, done) = post_json(
        &guest,
        &format!("{portal}/enroll/{token}/passkey/finish"),
        &serde_json::json!({"csrf": csrf, "credential": made}),
    );
    assert_eq!(status, 200, "{done}");
    assert!(env.ok(&["user", "show", "alice"], None).contains("\"phone\""));
    let again = guest.get(&format!("{portal}/enroll/{token}/passkey"), &[]);
    assert_eq!(again.status, 404, "the link is used up");
}

#[test]
fn config_check_names_an_rp_id_the_portal_is_not_in() {
    let env = Env::new("");
    localhost_portal(&env, free_port());
    env.set("webauthn", "rp_id", "\"example.org\"");
    let out = env.run(&["config", "check"], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("rp_id") && text.contains("localhost"), "{text}");
    env.set("webauthn", "rp_id", "\"https://x\"");
    let out = env.run(&["config", "check"], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("webauthn.rp_id") && text.contains("no scheme"), "{text}");
}

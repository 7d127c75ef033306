//! HTTPS in `serve` itself (`[server] tls_cert`/`tls_key`): the portal and an app in
//! reverse-proxy mode with nothing in front, Secure cookies, WebSocket over TLS, plain HTTP
//! refused, a renewed certificate picked up without a restart, and a file without a key
//! refused at start with the file named.

use crate::harness::*;
use crate::proxy::{App, seen, ws_trusting};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed certificate for 127.0.0.1 (its own CA) and its key, named `name`.
fn make_cert(dir: &Path, name: &str, common_name: &str) -> (PathBuf, PathBuf) {
    require_tool("openssl");
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", &format!("/CN={common_name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// The subject of the certificate the server at `port` presents now.
fn presented_subject(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn quoted(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

#[test]
fn https_gateway_serves_portal_and_proxied_app_and_reloads_a_renewed_certificate() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("erin", "erin's pw", &[]));
    let app = App::start();
    let port = free_port();
    env.loopback_portal(port);
    let origin = format!("https://127.0.0.1:{port}");
    let portal = format!("{origin}/.portcullis");
    env.set("session", "secure", "true");
    env.set("server", "portal_url", &format!("\"{portal}\""));
    env.set("server", "default_redirect", &format!("\"{origin}/\""));
    env.set("proxy", "upstream", &format!("\"http://127.0.0.1:{}\"", app.port));
    let (cert, key) = make_cert(env.path(), "first", "portcullis-first");
    env.set("server", "tls_cert", &quoted(&cert));
    env.set("server", "tls_key", &quoted(&key));
    let gw = env.serve();
    assert!(
        presented_subject(port).contains("portcullis-first"),
        "{}",
        gw.log_text()
    );

    let mut browser = Browser::new(&env, "erin");
    browser.ca = Some(env.path().join("trusted.crt"));
    std::fs::copy(&cert, browser.ca.as_ref().unwrap()).unwrap();
    let page = format!("{origin}/headers");
    let r = browser.get(&page, &["-H", "Accept: text/html"]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("{portal}/login?rd={}", urlencode(&page)).as_str())
    );

    settle(8);
    let r = browser.login_at(&portal, "erin", "erin's pw", &code_now(&env, &secret), &page);
    assert_eq!(r.status, 303, "{}", r.body);
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("; Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    // Issue 9.11: HSTS and nosniff on the portal's answers when portcullis serves TLS.
    let login = browser.get(&format!("{portal}/login"), &[]);
    assert_eq!(login.header("strict-transport-security"), Some("max-age=31536000"));
    assert_eq!(login.header("x-content-type-options"), Some("nosniff"));
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen_by_app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen(&seen_by_app, "remote-user"), ["erin"]);
    assert_eq!(seen(&seen_by_app, "x-forwarded-proto"), ["https"]);

    // A WebSocket over TLS, spliced to the app's plain one.
    let session = browser.cookie("portcullis_session").unwrap();
    let echo = ws_trusting(
        &format!("wss://127.0.0.1:{port}/ws"),
        &[&format!("Cookie: portcullis_session={session}")],
        browser.ca.as_deref(),
    );
    assert_eq!(echo["binary_intact"], true, "{echo}");
    assert_eq!(echo["who"], "user=erin", "{echo}");

    // Plain HTTP on the HTTPS port gets no answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/.portcullis/api/health"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "{}", String::from_utf8_lossy(&plain.stdout));

    // A renewed pair (written as certbot does: new files renamed into place) is served
    // without a restart; the session survives it.
    let (new_cert, new_key) = make_cert(env.path(), "second", "portcullis-renewed");
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let mut subject = String::new();
    for _ in 0..60 {
        subject = presented_subject(port);
        if subject.contains("portcullis-renewed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(subject.contains("portcullis-renewed"), "{subject}\n{}", gw.log_text());
    std::fs::copy(&cert, browser.ca.as_ref().unwrap()).unwrap();
    assert_eq!(browser.get(&page, &[]).status, 200);
    assert!(gw.log_text().contains("TLS certificate reloaded"), "{}", gw.log_text());
    drop(gw);

    // A key file holding no key (the certificate given twice): `serve` refuses to start
    // and names the file.
    let wrong = env.path().join("not-a-key.pem");
    std::fs::copy(&cert, &wrong).unwrap();
    env.set("server", "tls_key", &quoted(&wrong));
    let out = env.run(&["serve"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tls_key") && err.contains("not-a-key.pem"), "{err}");
}

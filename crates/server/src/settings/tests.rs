//! Settings: each gateway key's bounds, and every problem of a file reported at once.

use super::*;

#[test]
fn every_bound_admits_its_limit_and_refuses_one_past_it() {
    let parse = |text: &str| Settings::parse(text, Path::new("/etc/p.toml"));
    let cases = [
        ("server", "header_timeout", "300", "301"),
        ("server", "max_connections", "1", "0"),
        ("apache", "check_socket_mode", "0o660", "0o662"),
        ("apache", "check_socket_mode", "0o600", "0o460"),
        ("apache", "check_socket_mode", "0o600", "0o1600"),
    ];
    for (section, key, ok, bad) in cases {
        let good = format!("[{section}]\n{key} = {ok}\n");
        assert!(parse(&good).is_ok(), "{good}: {:?}", parse(&good).err());
        let e = parse(&format!("[{section}]\n{key} = {bad}\n")).unwrap_err().to_string();
        assert!(
            e.contains(&format!("p.toml:2: {section}.{key}")),
            "{section}.{key} = {bad}: {e}"
        );
    }
}

#[test]
fn the_core_leaves_unread_exactly_the_sections_read_here() {
    for section in portcullis_core::config::GATEWAY_SECTIONS {
        let e = Settings::parse(&format!("[{section}]\nbogus = 1\n"), Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:2:1:") && e.contains("bogus"), "[{section}]: {e}");
    }
    let e = Settings::parse("[tls]\ncert = \"c.pem\"\n", Path::new("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("p.toml:1:2:") && e.contains("`tls`"), "{e}");
}

#[test]
fn errors_in_core_and_gateway_sections_are_all_reported_in_file_order() {
    let text = "[otp]\nwindow = 50\n[server]\nlisten = \"nowhere\"\n[apache]\nfastcgi_listen = \"0.0.0.0:9092\"\n";
    let e = Settings::parse(text, Path::new("/etc/p.toml")).unwrap_err();
    let lines: Vec<String> = e.errors().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("/etc/p.toml:2: otp.window = 50: use 0 to 10"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("/etc/p.toml:4: server.listen = \"nowhere\": give an address"),
        "{e}"
    );
    assert!(lines[2].starts_with("/etc/p.toml:6: apache.fastcgi_listen"), "{e}");
    // A section that cannot be read is reported; the others are still checked.
    let text = "[server]\nlisten = 9091\n[proxy]\nupstream = \"https://x\"\n[session]\nidle = 0\n";
    let e = Settings::parse(text, Path::new("p.toml")).unwrap_err().to_string();
    assert!(
        e.contains("p.toml:2:10:") && e.contains("p.toml:6: session.idle"),
        "{e}"
    );
    assert!(
        !e.contains("proxy.upstream"),
        "no check against a [server] that was not read: {e}"
    );
}

#[test]
fn fastcgi_listener_must_be_on_loopback() {
    let ok = Settings::parse("[apache]\nfastcgi_listen = \"127.0.0.1:9092\"\n", Path::new("p.toml")).unwrap();
    assert_eq!(ok.apache.fastcgi_listen, "127.0.0.1:9092");
    assert!(
        Settings::parse("", Path::new("p.toml"))
            .unwrap()
            .apache
            .fastcgi_listen
            .is_empty()
    );
    for bad in ["0.0.0.0:9092", "192.168.1.5:9092", "localhost"] {
        let err = Settings::parse(
            &format!("[apache]\n\nfastcgi_listen = \"{bad}\"\n"),
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.toml:3: apache.fastcgi_listen"), "{err}");
    }
}

#[test]
fn proxy_upstream_needs_plain_http_and_a_portal_path() {
    let p = Path::new("p.toml");
    let ok = Settings::parse(
        "[server]\nportal_url = \"https://app.example.com/.portcullis/\"\n[proxy]\nupstream = \"http://127.0.0.1:8080/\"\n",
        p,
    )
    .unwrap();
    assert_eq!(ok.proxy.authority(), Some("127.0.0.1:8080"));
    assert_eq!(ok.server.base_path(), "/.portcullis");
    assert_eq!(Settings::parse("", p).unwrap().server.base_path(), "");
    for (text, want) in [
        (
            "[proxy]\nupstream = \"http://127.0.0.1:8080\"\n",
            "p.toml:2: proxy.upstream",
        ),
        (
            "[server]\nportal_url = \"https://a/p\"\n[proxy]\nupstream = \"https://127.0.0.1:8443\"\n",
            "p.toml:4: proxy.upstream",
        ),
        (
            "[server]\nportal_url = \"https://a/p\"\n[proxy]\nupstream = \"http://127.0.0.1:8080/app\"\n",
            "p.toml:4: proxy.upstream",
        ),
        (
            "[server]\nportal_url = \"https://a/p?x=1\"\n",
            "p.toml:2: server.portal_url",
        ),
    ] {
        let err = Settings::parse(text, p).unwrap_err().to_string();
        assert!(err.starts_with(want), "{text}: {err}");
    }
}

#[test]
fn tls_needs_both_the_certificate_and_the_key() {
    let p = Path::new("p.toml");
    let both = Settings::parse("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n", p).unwrap();
    assert_eq!(both.server.tls_key.as_deref(), Some(Path::new("k.pem")));
    let err = Settings::parse("[server]\n\ntls_key = \"k.pem\"\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:3: server.tls_key") && err.contains("tls_cert"),
        "{err}"
    );
}

#[test]
fn missing_ldap_files_are_warned_about_by_line() {
    let text = "[ldap]\nurl = \"ldaps://ldap.example.com\"\nbase_dn = \"dc=x\"\nca_file = \"/nonexistent/ca.pem\"\n";
    let s = Settings::parse(text, Path::new("p.toml")).unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("p.toml:4: ldap.ca_file") && w.contains("no such file")),
        "{:?}",
        s.warnings
    );
}

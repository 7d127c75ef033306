//! End to end with a real Apache 2.4 (Debian's apache2) using the shipped contrib/apache
//! snippets: mod_authnz_fcgi in cookie mode and Basic mode, and mod_authnz_external
//! running `portcullis check`. A CGI script shows what identity reached the application.

use crate::apache_server::{Apache, MODULES};
use crate::harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/apache");

/// The shipped snippets as `portcullis config apache --out` writes them for this
/// configuration (the FastCGI address and the paths are the configuration's).
fn snippets(dir: &Path, env: &Env, fcgi_port: u16) {
    let config = std::fs::read_to_string(env.config()).unwrap();
    assert!(
        config.contains(&format!("127.0.0.1:{fcgi_port}")),
        "set fastcgi_listen first"
    );
    env.ok(&["config", "apache", "--out", dir.to_str().unwrap()], None);
}

/// The application: prints the identity Apache hands a CGI program.
const WHO: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nprintf 'user=[%s] groups=[%s] auth=[%s] cookie=[%s]\\n' \"$REMOTE_USER\" \"$PORTCULLIS_GROUPS\" \"$AUTH_TYPE\" \"$HTTP_COOKIE\"\n";

/// Makes the test's files reachable for Apache's unprivileged user (www-data): the CGI
/// programs and, for mod_authnz_external, `portcullis check` reading the config and store.
fn open_to_www_data(env: &Env) {
    let status = Command::new("chown")
        .args(["-R", "www-data:www-data"])
        .arg(env.path())
        .status()
        .unwrap();
    assert!(status.success(), "chown www-data (the tests run as root)");
    std::fs::set_permissions(env.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

pub(crate) fn start_apache(env: &Env, fcgi_port: u16) -> Apache {
    require_tool("apache2");
    assert!(
        Path::new(MODULES).join("mod_authnz_external.so").exists(),
        "apt-get install libapache2-mod-authnz-external"
    );
    let dir = env.path().join("apache");
    for sub in [
        "site/dav",
        "site/ext",
        "site/admin",
        "site/authz/admin",
        "site/authz-cookie/admin",
        "site/authz-file/admin",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for cgi in [
        "site/who.cgi",
        "site/dav/who.cgi",
        "site/ext/who.cgi",
        "site/admin/who.cgi",
        "site/authz/who.cgi",
        "site/authz/admin/who.cgi",
        "site/authz-cookie/admin/who.cgi",
        "site/authz-file/who.cgi",
        "site/authz-file/admin/who.cgi",
    ] {
        std::fs::write(dir.join(cgi), WHO).unwrap();
        std::fs::set_permissions(dir.join(cgi), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("site/index.html"), "<h1>static secret page</h1>\n").unwrap();
    snippets(&dir, env, fcgi_port);
    let port = free_port();
    let d = dir.display();
    let modules = [
        ("mpm_prefork_module", "mod_mpm_prefork.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("auth_basic_module", "mod_auth_basic.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("authnz_fcgi_module", "mod_authnz_fcgi.so"),
        ("authnz_external_module", "mod_authnz_external.so"),
        ("mime_module", "mod_mime.so"),
        ("dir_module", "mod_dir.so"),
        ("env_module", "mod_env.so"),
        ("log_config_module", "mod_log_config.so"),
        ("unixd_module", "mod_unixd.so"),
        ("cgi_module", "mod_cgi.so"),
        ("headers_module", "mod_headers.so"),
    ];
    let site = format!(
        r#"TypesConfig /etc/mime.types
DocumentRoot {d}/site
DirectoryIndex index.html
Include {d}/portcullis-provider.conf
Include {d}/portcullis-external.conf
Include {d}/portcullis-authz.conf
<Directory {d}/site>
    Options +ExecCGI
    AddHandler cgi-script .cgi
</Directory>
<Location "/">
    Include {d}/portcullis-protect.conf
</Location>
<Location "/dav/">
    Include {d}/portcullis-protect-basic.conf
</Location>
<Location "/ext/">
    Include {d}/portcullis-protect-external.conf
</Location>
<Location "/admin/">
    Include {d}/portcullis-protect-group.conf
</Location>
<Location "/authz/">
    Include {d}/portcullis-protect-authz.conf
</Location>
<Location "/authz-cookie/">
    AuthnzFcgiCheckAuthnProvider portcullis Authoritative On RequireBasicAuth Off UserExpr "%{{reqenv:PORTCULLIS_USER}}"
    Require portcullis-authz
</Location>
<Location "/authz-file/">
    AuthnzFcgiCheckAuthnProvider None
    AuthType Basic
    AuthName "files"
    AuthBasicProvider file
    AuthUserFile {d}/htpasswd
    AuthzSendForbiddenOnFailure On
    Require portcullis-authz
</Location>
"#
    );
    open_to_www_data(env);
    Apache::start(&dir, port, &modules, &site)
}

/// A gateway with the FastCGI authorizer on its own port.
pub(crate) fn gateway(env: &Env) -> (Server, u16) {
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    let fcgi = free_port();
    env.set("apache", "fastcgi_listen", &format!("\"127.0.0.1:{fcgi}\""));
    (env.serve(), fcgi)
}

pub(crate) fn basic(user: &str, secret: &str, url: &str, extra: &[&str]) -> Reply {
    let creds = format!("{user}:{secret}");
    let mut args = vec!["-u", creds.as_str()];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

#[test]
fn apache_cookie_mode_login_identity_logout_replay_and_forgery() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("alice", "correct horse", &["--group", "staff"]));
    let root = secret_of(&env.add_user("root", "root pw", &["--group", "staff", "--group", "admins"]));
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let page = apache.url("/who.cgi");

    // No cookie: Apache sends the browser to the portal with the page it asked for.
    let r = curl(&[&page]);
    assert_eq!(r.status, 302, "{}\n{}", r.body, apache.error_log());
    assert_eq!(
        r.header("location"),
        Some(gw.url(&format!("/login?rd={}", urlencode(&page))).as_str())
    );
    assert_eq!(curl(&[&apache.url("/index.html")]).status, 302);
    // Issue 9.1's class: an absolute-form target names the host; Apache routes on it and
    // hands it on as HTTP_HOST, so portcullis judges that host, not the Host header's.
    let r = curl(&[
        "--request-target",
        &page,
        "-H",
        "Host: public.example.test",
        &apache.url("/"),
    ]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(gw.url(&format!("/login?rd={}", urlencode(&page))).as_str())
    );

    // After login the page is served and the application sees the user and groups.
    settle(8);
    let code = code_now(&env, &secret);
    let browser = Browser::new(&env, "alice");
    let r = browser.login(&gw, "alice", "correct horse", &code, &page);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(page.as_str()));
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[alice] groups=[staff]"), "{}", r.body);
    // The authorizer's Variable-* headers become environment, never response headers.
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("variable-"))
    );
    // Issue 9.10: the application never sees the gateway's cookies.
    let session = browser.cookie("portcullis_session").unwrap();
    for (cookie, expected) in [
        (format!("portcullis_session={session}"), "cookie=[]"),
        (
            format!("a=1; portcullis_session={session}; portcullis_csrf=x; b=2"),
            "cookie=[a=1; b=2]",
        ),
        (format!("portcullis_session={session}; c=3"), "cookie=[c=3]"),
    ] {
        let r = curl(&["-H", &format!("Cookie: {cookie}"), &page]);
        assert_eq!(r.status, 200, "{cookie}: {}\n{}", r.body, apache.error_log());
        assert!(r.body.contains(expected), "{cookie}: {}", r.body);
    }
    let r = browser.get(&apache.url("/index.html"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("static secret page"));
    assert!(
        apache.access_log().contains(" alice \"GET /who.cgi"),
        "{}",
        apache.access_log()
    );

    // The group location: signed in is not enough, the group must match.
    let admin = apache.url("/admin/who.cgi");
    assert_eq!(curl(&[&admin]).status, 302);
    // Apache answers an authenticated user that fails Require with 401 (not 403).
    let r = browser.get(&admin, &[]);
    assert!(matches!(r.status, 401 | 403), "{} {}", r.status, r.body);
    let admin_browser = Browser::new(&env, "root");
    let code_root = code_now(&env, &root);
    let r = admin_browser.login(&gw, "root", "root pw", &code_root, &admin);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = admin_browser.get(&admin, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("user=[root] groups=[staff,admins]"), "{}", r.body);

    // The same code again, from a fresh browser: refused, no session.
    let thief = Browser::new(&env, "thief");
    let r = thief.login(&gw, "alice", "correct horse", &code, &page);
    assert_ne!(r.status, 303, "a replayed code was accepted");
    assert_eq!(thief.get(&page, &[]).status, 302);

    // A forged cookie is just no session.
    let forged = format!("Cookie: portcullis_session={}", "A".repeat(43));
    assert_eq!(curl(&["-H", &forged, &page]).status, 302);

    // Logout ends it for Apache too.
    browser.logout_at(&gw.url(""));
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(!gw.log_text().contains("correct horse"));
}

#[test]
fn apache_basic_mode_linger_other_address_and_wrong_pin() {
    let env = Env::new("");
    env.set("otp", "linger", "4");
    let alice = secret_of(&env.add_user("alice", "pin1", &[]));
    let bob = secret_of(&env.add_user("bob", "pin2", &[]));
    let (_gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let url = apache.url("/dav/who.cgi");

    assert_eq!(curl(&[&url]).status, 401);
    settle(12);
    let code = code_now(&env, &alice);
    let r = basic("alice", &format!("pin1{code}"), &url, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(
        r.body.contains("user=[alice]") && r.body.contains("auth=[Basic]"),
        "{}",
        r.body
    );
    // Clients resend the same header: accepted within linger, from the same address...
    assert_eq!(basic("alice", &format!("pin1{code}"), &url, &[]).status, 200);
    // ...never from another one.
    let other = basic("alice", &format!("pin1{code}"), &url, &["--interface", "127.0.0.2"]);
    assert_eq!(other.status, 401);

    // A wrong PIN is refused and does not use up the code: the right PIN then passes.
    let code = code_now(&env, &bob);
    assert_eq!(basic("bob", &format!("wrong{code}"), &url, &[]).status, 401);
    assert_eq!(basic("bob", &format!("pin2{code}"), &url, &[]).status, 200);

    // After linger the same header is refused.
    std::thread::sleep(Duration::from_secs(5));
    let r = basic("bob", &format!("pin2{code}"), &url, &[]);
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn apache_authnz_external_runs_portcullis_check() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("carol", "pin3", &["--group", "ops"]));
    let (_gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let url = apache.url("/ext/who.cgi");

    assert_eq!(curl(&[&url]).status, 401);
    settle(8);
    let code = code_now(&env, &secret);
    let r = basic("carol", &format!("pin3{code}"), &url, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[carol]"), "{}", r.body);
    assert_eq!(basic("carol", &format!("nope{code}"), &url, &[]).status, 401);
    assert_eq!(basic("nobody", &format!("pin3{code}"), &url, &[]).status, 401);
}

#[test]
fn apache_check_socket_shares_linger_with_the_gateway() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("dan", "pin4", &[]));
    let socket = env.path().join("check.sock");
    env.set("apache", "check_socket", &format!("\"{}\"", socket.display()));
    // Issue 11.4: Apache's user reaches the socket through the group the gateway gives it
    // at every bind (a `chgrp` by hand was undone at each restart).
    env.set("apache", "check_socket_group", "\"www-data\"");
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let meta = std::fs::metadata(&socket).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o660);
    let www_data = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("www-data:x:")
                .and_then(|r| r.split(':').next()?.parse::<u32>().ok())
        })
        .unwrap();
    assert_eq!(meta.gid(), www_data);
    let url = apache.url("/ext/who.cgi");
    settle(8);
    let code = code_now(&env, &secret);
    let r = basic("dan", &format!("pin4{code}"), &url, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    // The gateway decided (its audit log has the event), and its linger cache serves the
    // FastCGI side too: one verification, then accepted without a second one.
    assert!(gw.log_text().contains("user=\"dan\""), "{}", gw.log_text());
    let r = basic("dan", &format!("pin4{code}"), &apache.url("/dav/who.cgi"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        basic("dan", &format!("pin4{code}"), &url, &["--interface", "127.0.0.2"]).status,
        401
    );
}

#[test]
fn apache_basic_mode_with_a_live_mod_authn_otp_users_file() {
    let env = Env::new("");
    let hex = "3132333435363738393031323334353637383930";
    let users = env.path().join("otp-users.txt");
    std::fs::write(&users, format!("HOTP/T30 erin 5678 {hex}\n")).unwrap();
    env.set("store", "backend", "\"mod_authn_otp\"");
    env.set("store", "path", &format!("\"{}\"", users.display()));
    env.set("session", "store", "\"memory\"");
    let (_gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let url = apache.url("/dav/who.cgi");
    settle(8);
    let code = env
        .ok(&["otp", "code", "--secret", hex, "--hex"], None)
        .trim()
        .to_string();
    let r = basic("erin", &format!("5678{code}"), &url, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[erin]"), "{}", r.body);
    // The file is updated in mod_authn_otp's format, field by field:
    // TYPE USER PIN KEY OFFSET FAILCOUNT LASTOTP LASTTIME LASTIP (a Basic client may linger,
    // so LASTIP is its address).
    let text = std::fs::read_to_string(&users).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 9, "{text}");
    assert_eq!(
        &fields[..7],
        ["HOTP/T30", "erin", "5678", hex, "0", "0", code.as_str()],
        "{text}"
    );
    assert!(fields[7].ends_with('L') && fields[7].len() == 20, "LASTTIME: {text}");
    assert_eq!(fields[8], "127.0.0.1", "{text}");
    assert_eq!(basic("erin", &format!("0000{code}"), &url, &[]).status, 401);
}

/// `/authz…/admin/` for group `admins` only (the first matching rule wins).
const ADMIN_RULES: &str = "
[[access.rules]]
path = \"^/authz[^/]*/admin/\"
groups = \"admins\"
policy = \"two_factor\"

[[access.rules]]
path = \"^/authz[^/]*/admin/\"
policy = \"deny\"
";

#[test]
fn apache_authz_provider_applies_access_rules_to_the_user_apache_authenticated() {
    let env = Env::new(ADMIN_RULES);
    env.set("otp", "linger", "30");
    let root = secret_of(&env.add_user("root", "rootpw", &["--group", "staff", "--group", "admins"]));
    let alice = secret_of(&env.add_user("alice", "alicepw", &["--group", "staff"]));
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);

    // Basic with password+code, then `Require portcullis-authz` for the user Apache named.
    settle(8);
    let root_creds = format!("rootpw{}", code_now(&env, &root));
    let r = basic("root", &root_creds, &apache.url("/authz/admin/who.cgi"), &[]);
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.body, apache.error_log(), gw.log_text());
    assert!(
        r.body.contains("user=[root] groups=[staff,admins] auth=[Basic]"),
        "{}",
        r.body
    );
    let alice_creds = format!("alicepw{}", code_now(&env, &alice));
    let r = basic("alice", &alice_creds, &apache.url("/authz/who.cgi"), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[alice] groups=[staff]"), "{}", r.body);
    // Outside the group: portcullis's Basic step already applies the rules and refuses the
    // credentials for this path, which Apache answers as wrong credentials: 401.
    let r = basic("alice", &alice_creds, &apache.url("/authz/admin/who.cgi"), &[]);
    assert_eq!(r.status, 401, "{}", r.body);

    // Another authn provider (a password file): only the authz provider knows the rules.
    let htpasswd = apache.dir.join("htpasswd");
    for (i, (user, pw)) in [("root", "root-file"), ("alice", "alice-file"), ("mallory", "mal-file")]
        .iter()
        .enumerate()
    {
        let mut cmd = Command::new("htpasswd");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd.args(["-b", "-m"]).arg(&htpasswd).args([user, pw]).output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }
    std::fs::set_permissions(&htpasswd, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let admin = apache.url("/authz-file/admin/who.cgi");
    let page = apache.url("/authz-file/who.cgi");
    let r = basic("root", "root-file", &admin, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    // The groups come from the authorizer's Variable-PORTCULLIS_GROUPS.
    assert!(
        r.body.contains("user=[root] groups=[staff,admins] auth=[Basic]"),
        "{}",
        r.body
    );
    let r = basic("alice", "alice-file", &page, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("user=[alice] groups=[staff]"), "{}", r.body);
    // Authenticated by Apache, refused by the rules: 403 here because this location says
    // `AuthzSendForbiddenOnFailure On` (Apache's default for a failed Require is 401).
    let r = basic("alice", "alice-file", &admin, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    // Not a portcullis user at all: refused everywhere.
    assert_eq!(basic("mallory", "mal-file", &page, &[]).status, 403);
    // A wrong file password never reaches the authorizer: Apache's own 401.
    assert_eq!(basic("root", "nope", &admin, &[]).status, 401);
    // The directory is read on every request: a locked user is refused at once.
    env.ok(&["user", "lock", "alice"], None);
    assert_eq!(basic("alice", "alice-file", &page, &[]).status, 403);
    assert!(!gw.log_text().contains("alice-file"));
}

#[test]
fn apache_authz_provider_behind_cookie_mode() {
    let env = Env::new(ADMIN_RULES);
    let carol = secret_of(&env.add_user("carol", "carol pw", &["--group", "admins"]));
    let dave = secret_of(&env.add_user("dave", "dave pw", &["--group", "staff"]));
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let admin = apache.url("/authz-cookie/admin/who.cgi");

    // No session: cookie mode sends the browser to the portal before any authorization.
    assert_eq!(curl(&[&admin]).status, 302);
    settle(8);
    let browser = Browser::new(&env, "carol");
    let r = browser.login(&gw, "carol", "carol pw", &code_now(&env, &carol), &admin);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = browser.get(&admin, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[carol] groups=[admins]"), "{}", r.body);
    // Outside the group: the cookie step applies the same rules and answers 403 itself.
    let browser = Browser::new(&env, "dave");
    let r = browser.login(&gw, "dave", "dave pw", &code_now(&env, &dave), &admin);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = browser.get(&admin, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn apache_malformed_fastcgi_input_is_refused_and_logged() {
    use std::io::{Read, Write};
    let env = Env::new("");
    let (gw, fcgi) = gateway(&env);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", fcgi)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        gw.log_text().contains("malformed FastCGI request refused"),
        "{}",
        gw.log_text()
    );
    // The gateway still answers.
    assert_eq!(curl(&[&gw.url("/api/health")]).status, 200);
}

#[test]
fn config_apache_prints_one_snippet_or_writes_them_all_never_a_stream_of_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("");
    env.set("apache", "fastcgi_listen", "\"127.0.0.1:9555\"");
    let expected = |name: &str, dir: &str| {
        std::fs::read_to_string(Path::new(CONTRIB).join(name))
            .unwrap()
            .replace("127.0.0.1:9092", "127.0.0.1:9555")
            .replace("/usr/local/bin/portcullis", bin().to_str().unwrap())
            .replace("/etc/portcullis/portcullis.toml", env.config().to_str().unwrap())
            .replace("/etc/apache2/portcullis/", dir)
    };
    // `config apache > file` with no name writes nothing into the file (the bug: ten files
    // in one stream, which Apache refused and went down), and lists the names on stderr.
    let listed = env.run(&["config", "apache"], None);
    assert_eq!(listed.status.code(), Some(2));
    assert!(listed.stdout.is_empty());
    let names: Vec<String> = std::fs::read_dir(CONTRIB)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    let stderr = String::from_utf8_lossy(&listed.stderr);
    for name in &names {
        assert!(stderr.contains(name.as_str()), "{name} not listed:\n{stderr}");
    }
    // One snippet, whole, with only the addresses and paths changed.
    let provider = env.ok(&["config", "apache", "portcullis-provider.conf"], None);
    assert_eq!(
        provider,
        expected("portcullis-provider.conf", "/etc/apache2/portcullis/")
    );
    assert!(provider.contains("AuthnzFcgiDefineProvider authn portcullis fcgi://127.0.0.1:9555/"));
    assert_eq!(
        env.ok(&["config", "apache", "authz"], None),
        expected("portcullis-authz.conf", "/etc/apache2/portcullis/")
    );
    let missing = env.run(&["config", "apache", "nope.conf"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no apache snippet `nope.conf`"));
    // --out: every file, each on its own, and the example site includes them from there.
    let dir = env.path().join("apache-snippets");
    let written = env.ok(&["config", "apache", "--out", dir.to_str().unwrap()], None);
    let prefix = format!("{}/", dir.display());
    for name in &names {
        let path = dir.join(name);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected(name, &prefix),
            "{name}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(written.contains(&format!("wrote {}", path.display())), "{written}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len());
    assert!(
        std::fs::read_to_string(dir.join("example-site.conf"))
            .unwrap()
            .contains(&format!("Include {prefix}portcullis-provider.conf"))
    );
    assert!(written.contains("a2enconf portcullis"), "{written}");
    for (flavor, name, needle) in [
        ("nginx", "portcullis-protect.conf", "auth_request"),
        ("caddy", "portcullis.caddy", "forward_auth"),
        ("traefik", "portcullis.yml", "forwardAuth"),
    ] {
        assert!(env.ok(&["config", flavor, name], None).contains(needle), "{flavor}");
        let dir = env.path().join(flavor);
        env.ok(&["config", flavor, "--out", dir.to_str().unwrap()], None);
        assert!(
            std::fs::read_to_string(dir.join(name)).unwrap().contains(needle),
            "{flavor}"
        );
    }
}

/// Issue 15: every way in through Apache works on PostgreSQL + Redis. The gateway (cookie
/// and Basic mode over FastCGI) and `portcullis check` (a separate process, run by Apache as
/// www-data, opening the engines itself or asking the gateway) share spent codes and bans.
#[test]
fn apache_on_postgres_and_redis_fastcgi_and_external_check_share_spent_codes_sessions_and_bans() {
    let pg = crate::pg::Postgres::start_new();
    let redis = crate::redis_server::Redis::start_new();
    let env = Env::new("");
    env.on_postgres(&pg.database("apache_nodes"));
    env.on_redis(&redis.url());
    // Only the address ban can refuse below, not the account lockout.
    env.set("lockout", "max_failures", "0");
    let alice = secret_of(&env.add_user("alice", "correct horse", &[]));
    let eve = secret_of(&env.add_user("eve", "pin5", &[]));
    let frank = secret_of(&env.add_user("frank", "pin6", &[]));
    let (gw, fcgi) = gateway(&env);
    let apache = start_apache(&env, fcgi);
    let (dav, ext) = (apache.url("/dav/who.cgi"), apache.url("/ext/who.cgi"));
    settle(8);

    // Cookie mode: a session the gateway keeps in Redis lets Apache serve the page.
    let page = apache.url("/who.cgi");
    let browser = Browser::new(&env, "alice");
    let r = browser.login(&gw, "alice", "correct horse", &code_now(&env, &alice), &page);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[alice]"), "{}", r.body);

    // A code spent through the FastCGI authorizer is spent for `portcullis check` (which
    // opened PostgreSQL itself), and the other way round.
    let code = code_now(&env, &eve);
    let r = basic("eve", &format!("pin5{code}"), &dav, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    let other = ["--interface", "127.0.0.2"];
    assert_eq!(basic("eve", &format!("pin5{code}"), &ext, &other).status, 401);
    assert!(apache.error_log().contains("replayed"), "{}", apache.error_log());
    let code = code_now(&env, &frank);
    let r = basic("frank", &format!("pin6{code}"), &ext, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(r.body.contains("user=[frank]"), "{}", r.body);
    assert!(
        !gw.log_text().contains("user=\"frank\""),
        "the check process decided alone: {}",
        gw.log_text()
    );
    assert_eq!(basic("frank", &format!("pin6{code}"), &dav, &other).status, 401);
    assert!(gw.log_text().contains("replayed"), "{}", gw.log_text());

    // Wrong codes through `portcullis check` ban the address in Redis; the gateway honours it.
    let banned = ["--interface", "127.0.0.3"];
    for _ in 0..5 {
        assert_eq!(basic("frank", "pin6000000", &ext, &banned).status, 401);
    }
    // A code of the next step: not spent, so only the ban can refuse it.
    let r = basic("frank", &format!("pin6{}", code_next_step(&env, &frank)), &dav, &banned);
    assert_eq!(
        r.status, 401,
        "the gateway let in an address the check process had banned"
    );
    assert!(gw.log_text().contains("reason=\"banned\""), "{}", gw.log_text());

    // With the check socket the gateway decides for Apache's check too, on the same engines.
    drop(gw);
    let socket = env.path().join("check.sock");
    env.set("apache", "check_socket", &format!("\"{}\"", socket.display()));
    env.set("apache", "check_socket_group", "\"www-data\"");
    env.set("apache", "check_fallback", "\"refuse\"");
    let gw = env.serve();
    let code = code_next_step(&env, &eve);
    let r = basic("eve", &format!("pin5{code}"), &ext, &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, apache.error_log());
    assert!(gw.log_text().contains("user=\"eve\""), "{}", gw.log_text());
    assert_eq!(basic("eve", &format!("pin5{code}"), &dav, &other).status, 401);
}

//! End to end with a real nginx using `auth_request` and the shipped contrib/nginx snippets,
//! in front of a static site and a backend that echoes the identity headers it receives.

use crate::harness::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/nginx");

/// A running nginx, stopped when dropped.
pub(crate) struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// Copies the shipped snippets, pointing them at the gateway's port (the only edit a user makes).
fn snippets(dir: &Path, gateway_port: u16) {
    for name in [
        "portcullis-upstream.conf",
        "portcullis-authrequest.conf",
        "portcullis-protect.conf",
        "portcullis-protect-basic.conf",
    ] {
        let text = std::fs::read_to_string(Path::new(CONTRIB).join(name)).unwrap();
        std::fs::write(
            dir.join(name),
            text.replace("127.0.0.1:9091", &format!("127.0.0.1:{gateway_port}")),
        )
        .unwrap();
    }
}

fn start_nginx(env: &Env, gw: &Server) -> Nginx {
    let d = env.path().join("nginx").display().to_string();
    let servers = format!(
        r#"
    server {{
        listen 127.0.0.1:{{front}};
        include {d}/portcullis-authrequest.conf;
        location / {{
            include {d}/portcullis-protect.conf;
            root {d}/site;
        }}
        location /app/ {{
            include {d}/portcullis-protect.conf;
            proxy_pass http://127.0.0.1:{{back}};
        }}
        location /public/ {{
            include {d}/portcullis-protect.conf;
            proxy_pass http://127.0.0.1:{{back}};
        }}
        location /dav/ {{
            include {d}/portcullis-protect-basic.conf;
            proxy_pass http://127.0.0.1:{{back}};
        }}
    }}
"#
    );
    start_nginx_with(env, gw, &servers)
}

/// nginx with the shipped snippets, the echoing backend on `{back}`, and `servers` (server
/// blocks, with `{front}` and `{back}` standing for the ports).
fn start_nginx_with(env: &Env, gw: &Server, servers: &str) -> Nginx {
    start_nginx_over(env, &[gw.port], servers)
}

/// `start_nginx_with` with the `portcullis` upstream over several gateways (round robin).
pub(crate) fn start_nginx_over(env: &Env, gateway_ports: &[u16], servers: &str) -> Nginx {
    require_tool("nginx");
    let dir = env.path().join("nginx");
    std::fs::create_dir_all(dir.join("site/public")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("site/index.html"), "<h1>static secret page</h1>\n").unwrap();
    std::fs::write(dir.join("site/public/hello.txt"), "public hello\n").unwrap();
    snippets(&dir, gateway_ports[0]);
    let upstream = dir.join("portcullis-upstream.conf");
    let one = format!("    server 127.0.0.1:{};\n", gateway_ports[0]);
    let all: String = gateway_ports
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    let text = std::fs::read_to_string(&upstream).unwrap();
    assert!(text.contains(&one), "{text}");
    std::fs::write(&upstream, text.replace(&one, &all)).unwrap();
    let (front, back) = (free_port(), free_port());
    let servers = servers
        .replace("{front}", &front.to_string())
        .replace("{back}", &back.to_string());
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/portcullis-upstream.conf;
    # The application: echoes what identity reached it (a backend, not a protected location).
    server {{
        listen 127.0.0.1:{back};
        location / {{
            default_type text/plain;
            return 200 "uri=[$request_uri] host=[$host] user=[$http_remote_user] groups=[$http_remote_groups] name=[$http_remote_name] underscore=[$http_remote_user_] auth=[$http_authorization] cookie=[$http_cookie]\n";
        }}
    }}
{servers}
}}
"#,
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .args(["-e", "stderr", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let nginx = Nginx {
        child,
        port: front,
        dir: dir.clone(),
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", front)).is_ok() {
            return nginx;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
    );
}

fn gateway(env: &Env) -> Server {
    env.loopback_portal(free_port());
    env.set("access", "protected_domains", "[\"127.0.0.1\"]");
    std::fs::write(
        env.config(),
        std::fs::read_to_string(env.config()).unwrap()
            + "\n[[access.rules]]\npath = \"^/public/\"\npolicy = \"bypass\"\n",
    )
    .unwrap();
    env.serve()
}

#[test]
fn shipped_snippets_never_use_return() {
    for entry in std::fs::read_dir(CONTRIB).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let code = line.split('#').next().unwrap().trim();
            assert!(
                !code.starts_with("return"),
                "{}: `{line}`: nginx runs return before auth_request",
                path.display()
            );
        }
    }
}

#[test]
fn nginx_auth_request_login_identity_replay_logout_redirects_and_lockout() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user(
        "alice",
        "correct horse",
        &["--group", "staff", "--display-name", "Alice A"],
    ));
    let gw = gateway(&env);
    let nginx = start_nginx(&env, &gw);
    let page = nginx.url("/index.html");

    // No cookie: nginx sends the browser to the portal with the page it asked for.
    let r = curl(&[&page]);
    assert_eq!(r.status, 302, "{}", r.body);
    // Issue 14.11: no Basic challenge rides along on the redirect (a password dialog).
    assert_eq!(r.header("www-authenticate"), None, "{:?}", r.headers);
    let dav = curl(&[&nginx.url("/dav/x")]);
    assert!(
        dav.header("www-authenticate").is_some_and(|c| c.starts_with("Basic ")),
        "{:?}",
        dav.headers
    );
    let location = r.header("location").unwrap().to_string();
    assert_eq!(location, gw.url(&format!("/login?rd={}", urlencode(&page))));
    // Every protected location is closed, whatever it serves.
    for (p, status) in [("/", 302), ("/app/x", 302), ("/dav/x", 401)] {
        assert_eq!(
            curl(&[&nginx.url(p)]).status,
            status,
            "{p} served without authentication"
        );
    }
    // The bypass rule serves /public/ without login, and no spoofed identity gets through.
    let r = curl(&[
        "-H",
        "Remote-User: mallory",
        "-H",
        "remote_user: mallory",
        &nginx.url("/public/x"),
    ]);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("user=[]") && r.body.contains("underscore=[]"),
        "{}",
        r.body
    );
    // Rules see the normalised path: dot segments cannot reach the bypass.
    for sneaky in [
        "/public/../app/x",
        "/public/%2e%2e/app/x",
        "/public/..;/app/x",
        "/public%2f..%2fapp/x",
    ] {
        let r = curl(&["--path-as-is", &nginx.url(sneaky)]);
        // 302: to the portal. 500: portcullis answered 400 (a path it cannot normalise
        // safely), which auth_request turns into 500; nginx's log must say so, since a
        // gateway that is down is a 500 as well.
        match r.status {
            302 => {}
            500 => assert!(
                nginx.error_log().contains("auth request unexpected status: 400"),
                "{sneaky}: {}",
                nginx.error_log()
            ),
            other => panic!("{sneaky}: {other} {}", r.body),
        }
    }

    // Log in with password and a code from `portcullis otp code`.
    let browser = Browser::new(&env, "alice");
    settle(5);
    let code = code_now(&env, &secret);
    let pre = browser.get(&gw.url("/login"), &[]);
    assert_eq!(pre.status, 200);
    let r = browser.login(&gw, "alice", "correct horse", &code, &page);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(page.as_str()), "back on the original page");
    let cookie_attrs = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("portcullis_session="))
        .unwrap();
    assert!(
        cookie_attrs.1.contains("HttpOnly") && cookie_attrs.1.contains("SameSite=Lax"),
        "{cookie_attrs:?}"
    );
    let r = browser.get(&page, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("static secret page"));

    // Identity reaches the application; spoofed identity headers in any spelling do not.
    let r = browser.get(
        &nginx.url("/app/whoami"),
        &[
            "-H",
            "Remote-User: mallory",
            "-H",
            "REMOTE-GROUPS: admins",
            "-H",
            "remote_user: mallory",
        ],
    );
    assert!(
        r.body
            .contains("user=[alice] groups=[staff] name=[Alice A] underscore=[]"),
        "{}",
        r.body
    );

    // The same code cannot be used for a second login.
    let other = Browser::new(&env, "other");
    let r = other.login(&gw, "alice", "correct horse", &code, &page);
    assert_eq!(r.status, 401, "replayed code must be refused");
    assert!(r.body.contains("not correct"), "{}", r.body);

    // An open-redirect attempt lands on the default page.
    let r = browser.get(
        &gw.url(&format!("/login?rd={}", urlencode("https://evil.example.com/phish"))),
        &[],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some(gw.url("/").as_str()));

    // Logout revokes the session server-side: a copied cookie stops working.
    let session = browser.cookie("portcullis_session").unwrap();
    let r = browser.logout_at(&gw.url(""));
    assert_eq!(r.status, 200);
    let copied = curl(&["-H", &format!("Cookie: portcullis_session={session}"), &page]);
    assert_eq!(copied.status, 302, "a logged-out cookie still opened the page");

    // Lockout after max_failures (5) wrong codes: then even the right code is refused.
    let mallory = Browser::new(&env, "mallory");
    for _ in 0..5 {
        let r = mallory.login(&gw, "alice", "correct horse", "000000", &page);
        assert_eq!(r.status, 401);
    }
    settle(5);
    let r = mallory.login(&gw, "alice", "correct horse", &code_now(&env, &secret), &page);
    assert_eq!(r.status, 401, "locked or banned after 5 wrong codes");
    assert!(env.ok(&["user", "list"], None).contains("locked"));
    let log = gw.log_text();
    assert!(
        log.contains("result=\"failure\"") && log.contains("reason=\"wrong_code\""),
        "{log}"
    );
}

#[test]
fn spoofed_forwarded_for_from_an_untrusted_address_is_ignored() {
    let env = Env::new("");
    env.add_user("bob", "pw", &[]);
    let gw = gateway(&env);
    // 127.0.0.2 is loopback but not a trusted proxy (only 127.0.0.1/32 and ::1 are).
    let mut b = Browser::new(&env, "spoofer");
    b.interface = Some("127.0.0.2");
    let page = b.get(&gw.url("/login"), &["-H", "X-Forwarded-For: 10.9.9.9"]);
    let r = b.post(
        &gw.url("/login"),
        &[("csrf", &page.csrf()), ("username", "bob"), ("password", "wrong")],
    );
    assert_eq!(r.status, 401);
    let log = gw.log_text();
    assert!(log.contains("client=127.0.0.2"), "{log}");
    assert!(!log.contains("10.9.9.9"), "{log}");
    // A forward-auth request from an untrusted peer cannot describe a resource.
    let r = curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "X-Original-URL: http://127.0.0.1/public/x",
        &gw.url("/api/authz/auth-request"),
    ]);
    assert_eq!(r.status, 401);
}

#[test]
fn missing_or_malformed_original_url_is_never_200() {
    let env = Env::new("");
    let gw = gateway(&env);
    let ep = gw.url("/api/authz/auth-request");
    assert_eq!(curl(&[&ep]).status, 401);
    for bad in [
        "/relative/path",
        "javascript:alert(1)",
        "http://",
        "http://h//x",
        "http://user@h/x",
        "ftp://h/x",
    ] {
        assert_eq!(
            curl(&["-H", &format!("X-Original-URL: {bad}"), &ep]).status,
            400,
            "{bad}"
        );
    }
    let fa = gw.url("/api/authz/forward-auth");
    assert_eq!(curl(&[&fa]).status, 401);
    assert_eq!(
        curl(&["-H", "X-Forwarded-Host: h", "-H", "X-Forwarded-Uri: nope", &fa]).status,
        400
    );
    // A path that cannot be normalised safely is a 400 too.
    assert_eq!(
        curl(&["-H", "X-Original-URL: http://127.0.0.1/public/%2e%2e%2f", &ep]).status,
        400
    );
}

/// Two sites on one nginx port: public.example.test (bypass) and app.example.test, whose
/// /admin/ is for the admins group only.
fn two_sites(env: &Env) -> (Server, Nginx) {
    env.loopback_portal(free_port());
    env.set(
        "access",
        "protected_domains",
        "[\"127.0.0.1\", \"app.example.test\", \"public.example.test\"]",
    );
    std::fs::write(
        env.config(),
        std::fs::read_to_string(env.config()).unwrap()
            + r#"
[[access.rules]]
domain = ["public.example.test"]
policy = "bypass"
[[access.rules]]
domain = ["app.example.test"]
path = "^/admin/"
groups = ["admins"]
policy = "two_factor"
[[access.rules]]
domain = ["app.example.test"]
path = "^/admin/"
policy = "deny"
"#,
    )
    .unwrap();
    let gw = env.serve();
    let d = env.path().join("nginx").display().to_string();
    let servers = format!(
        r#"
    server {{
        listen 127.0.0.1:{{front}};
        server_name public.example.test;
        include {d}/portcullis-authrequest.conf;
        location / {{
            include {d}/portcullis-protect.conf;
            proxy_pass http://127.0.0.1:{{back}}/public-site$request_uri;
        }}
    }}
    server {{
        listen 127.0.0.1:{{front}};
        server_name app.example.test;
        include {d}/portcullis-authrequest.conf;
        location / {{
            include {d}/portcullis-protect.conf;
            proxy_pass http://127.0.0.1:{{back}}/app-site$request_uri;
        }}
    }}
"#
    );
    let nginx = start_nginx_with(env, &gw, &servers);
    (gw, nginx)
}

/// Regression (issue 9.1): an absolute-form request line names one site, the Host header
/// another; nginx routes on the request line, so portcullis must judge that site.
#[test]
fn nginx_absolute_form_target_cannot_borrow_another_hosts_rules() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("bob", "pw-bob", &[]));
    let (gw, nginx) = two_sites(&env);
    let port = nginx.port;
    let ask = |target: &str, host: &str, extra: &[&str]| {
        let mut args = vec!["--request-target", target, "-H", host];
        args.extend_from_slice(extra);
        let url = nginx.url("/");
        args.push(&url);
        curl(&args)
    };
    let app_admin = format!("http://app.example.test:{port}/admin/");
    let public_x = format!("http://public.example.test:{port}/x");

    // Ordinary requests: the public site is open, the app's admin area sends to the portal.
    let r = ask("/x", "Host: public.example.test", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("public-site"), "{}", r.body);
    let r = ask("/admin/", "Host: app.example.test", &[]);
    assert_eq!(r.status, 302, "{}", r.body);

    // The bypass: the app's admin area on the request line, the public host in Host.
    let r = ask(&app_admin, "Host: public.example.test", &[]);
    assert_eq!(r.status, 302, "judged under public.example.test's bypass: {}", r.body);
    let login = r.header("location").unwrap();
    assert!(
        login.contains(&urlencode(&format!("http://app.example.test:{port}/admin/"))),
        "{login}"
    );
    // The other order: the public site on the request line is public whatever Host says.
    let r = ask(&public_x, "Host: app.example.test", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("public-site"), "{}", r.body);

    // Signed in without the admins group: the group rule denies, in every spelling.
    let b = Browser::new(&env, "bob");
    settle(5);
    let r = b.login(&gw, "bob", "pw-bob", &code_now(&env, &secret), "http://127.0.0.1/");
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = format!("Cookie: portcullis_session={}", b.cookie("portcullis_session").unwrap());
    let r = ask("/admin/", "Host: app.example.test", &["-H", &cookie]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = ask(&app_admin, "Host: public.example.test", &["-H", &cookie]);
    assert_eq!(r.status, 403, "group rule skipped through the Host header: {}", r.body);
    // Elsewhere on the app bob is in, and the app sees neither of the gateway's cookies.
    let r = ask(
        &format!("http://app.example.test:{port}/page"),
        "Host: public.example.test",
        &["-H", &format!("{cookie}; theme=dark; portcullis_csrf=abc; lang=en")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("app-site") && r.body.contains("user=[bob]"),
        "{}",
        r.body
    );
    assert!(r.body.contains("cookie=[theme=dark; lang=en]"), "{}", r.body);
}

/// Regression (issue 9.10 and 9.11): the app never sees the session cookie, and the return
/// URL survives `&` and its own `rd=` parameter.
#[test]
fn nginx_session_cookie_stays_out_of_the_app_and_return_url_is_encoded() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("carol", "pw-carol", &[]));
    let gw = gateway(&env);
    let nginx = start_nginx(&env, &gw);
    let page = nginx.url("/app/report?a=1&rd=x&b=%2F");
    let r = curl(&[&page]);
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap().to_string();
    assert_eq!(location, gw.url(&format!("/login?rd={}", urlencode(&page))));

    let b = Browser::new(&env, "carol");
    settle(5);
    let r = b.login(&gw, "carol", "pw-carol", &code_now(&env, &secret), &page);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(page.as_str()), "back on the whole URL");
    let session = b.cookie("portcullis_session").unwrap();
    for (cookie, expected) in [
        (format!("portcullis_session={session}"), "cookie=[]"),
        (format!("portcullis_session={session}; a=1"), "cookie=[a=1]"),
        (format!("a=1; portcullis_session={session}"), "cookie=[a=1]"),
        (format!("a=1;portcullis_session={session}; b=2"), "cookie=[a=1; b=2]"),
        (
            format!("portcullis_csrf=x; portcullis_session={session}; c=3"),
            "cookie=[c=3]",
        ),
    ] {
        let r = curl(&["-H", &format!("Cookie: {cookie}"), &nginx.url("/app/x")]);
        assert_eq!(r.status, 200, "{cookie}: {}", r.body);
        assert!(r.body.contains(expected), "{cookie}: {}", r.body);
        assert!(!r.body.contains(&session), "{cookie}: {}", r.body);
    }
    // Basic clients' locations drop the cookies too.
    let r = curl(&[
        "-H",
        &format!("Cookie: x=1; portcullis_session={session}"),
        &nginx.url("/dav/x"),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("cookie=[x=1]"), "{}", r.body);
}

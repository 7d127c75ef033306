//! End to end with a real Caddy 2 (Debian package) using the shipped contrib/caddy snippet,
//! and a check of the Traefik middleware against the endpoint the forward-auth tests use.

use crate::harness::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib");

struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_caddy(env: &Env, gw: &Server, front: u16, back: u16) -> Caddy {
    require_tool("caddy");
    let dir = env.path().join("caddy");
    std::fs::create_dir_all(&dir).unwrap();
    let snippet = std::fs::read_to_string(Path::new(CONTRIB).join("caddy/portcullis.caddy")).unwrap();
    std::fs::write(
        dir.join("portcullis.caddy"),
        snippet.replace("127.0.0.1:9091", &format!("127.0.0.1:{}", gw.port)),
    )
    .unwrap();
    let d = dir.display();
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\nimport {d}/portcullis.caddy\n\
http://127.0.0.1:{front} {{\n\timport portcullis\n\treverse_proxy 127.0.0.1:{back}\n}}\n\
http://127.0.0.1:{back} {{\n\trespond \"user=[{{http.request.header.Remote-User}}] groups=[{{http.request.header.Remote-Groups}}] underscore=[{{http.request.header.Remote_User}}{{http.request.header.Remote_Groups}}] auth=[{{http.request.header.Authorization}}] cookie=[{{http.request.header.Cookie}}]\"\n}}\n"
    );
    std::fs::write(dir.join("Caddyfile"), caddyfile).unwrap();
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("caddy.log")).unwrap())
        .spawn()
        .unwrap();
    let caddy = Caddy(child);
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", front)).is_ok() {
            return caddy;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!(
        "caddy did not start: {}",
        std::fs::read_to_string(dir.join("caddy.log")).unwrap_or_default()
    );
}

#[test]
fn caddy_forward_auth_redirects_logs_in_and_passes_identity() {
    let env = Env::new("");
    let secret = secret_of(&env.add_user("kim", "pw", &["--group", "ops"]));
    env.loopback_portal(free_port());
    std::fs::write(
        env.config(),
        std::fs::read_to_string(env.config()).unwrap()
            + "\n[[access.rules]]\npath = \"^/public/\"\npolicy = \"bypass\"\n",
    )
    .unwrap();
    let gw = env.serve();
    let (front, back) = (free_port(), free_port());
    let _caddy = start_caddy(&env, &gw, front, back);
    let page = format!("http://127.0.0.1:{front}/reports/q3?x=1");

    let r = curl(&["-H", "Accept: text/html", &page]);
    assert_eq!(r.status, 302, "{}", r.body);
    let want = format!("{}?rd={}", gw.url("/login"), urlencode(&page));
    assert_eq!(r.header("location"), Some(want.as_str()));
    let r = curl(&[&page]);
    assert_eq!(r.status, 401, "a client that is not a browser is challenged");
    // Issue 9.1's class: Caddy routes an absolute-form target on its host and reports that
    // host to portcullis, whatever the Host header says.
    let r = curl(&[
        "--request-target",
        &page,
        "-H",
        "Host: public.example.test",
        "-H",
        "Accept: text/html",
        &format!("http://127.0.0.1:{front}/"),
    ]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.header("location"), Some(want.as_str()));

    // A bypassed path: a spoofed identity header does not reach the application.
    let r = curl(&[
        "-H",
        "Remote-User: mallory",
        &format!("http://127.0.0.1:{front}/public/x"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("user=[]"), "{}", r.body);

    settle(5);
    let code = code_now(&env, &secret);
    let b = Browser::new(&env, "kim");
    let r = b.login(&gw, "kim", "pw", &code, &page);
    assert_eq!(r.header("location"), Some(page.as_str()));
    let r = b.get(&page, &["-H", "Remote-User: mallory"]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("user=[kim] groups=[ops]"), "{}", r.body);

    // Issue 9.9: the underscore spelling of an identity header never reaches the app.
    let r = b.get(&page, &["-H", "Remote_User: mallory", "-H", "Remote_Groups: admins"]);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("user=[kim]") && r.body.contains("underscore=[]"),
        "{}",
        r.body
    );
    let r = curl(&[
        "-H",
        "Remote_User: mallory",
        &format!("http://127.0.0.1:{front}/public/x"),
    ]);
    assert!(r.body.contains("underscore=[]"), "{}", r.body);
    // Issue 9.10: nor do the gateway's cookies, wherever they stand in the header.
    let session = b.cookie("portcullis_session").unwrap();
    for (cookie, expected) in [
        (format!("portcullis_session={session}"), "cookie=[]"),
        (format!("portcullis_session={session}; a=1"), "cookie=[a=1]"),
        (
            format!("a=1; portcullis_session={session}; portcullis_csrf=x; b=2"),
            "cookie=[a=1; b=2]",
        ),
    ] {
        let r = curl(&["-H", &format!("Cookie: {cookie}"), &page]);
        assert_eq!(r.status, 200, "{cookie}: {}", r.body);
        assert!(r.body.contains(expected), "{cookie}: {}", r.body);
    }

    // HTTP Basic through Caddy: accepted, and the application never sees the credentials.
    // The portal's code is used up (issue 9.3): Basic takes the next step's.
    let next = code_next_step(&env, &secret);
    let basic = curl(&["-u", &format!("kim:pw{next}"), &page]);
    assert_eq!(basic.status, 200, "{}", basic.body);
    assert!(
        basic.body.contains("user=[kim]") && basic.body.contains("auth=[]"),
        "{}",
        basic.body
    );
}

#[test]
fn traefik_middleware_points_at_the_forward_auth_endpoint_with_identity_headers() {
    // Traefik is not packaged in Debian, so it cannot run here; the request shape it sends
    // (X-Forwarded-Proto/Host/Uri/Method) is what the forward-auth tests exercise.
    let text = std::fs::read_to_string(Path::new(CONTRIB).join("traefik/portcullis.yml")).unwrap();
    assert!(text.contains("address: \"http://127.0.0.1:9091/api/authz/forward-auth\""));
    assert!(text.contains("trustForwardHeader: false"));
    for h in ["Remote-User", "Remote-Groups", "Remote-Name", "Remote-Email"] {
        assert!(text.contains(&format!("- \"{h}\"")), "{h}");
        // Issue 9.9: the underscore spelling is emptied after the check.
        assert!(text.contains(&format!("{}: \"\"", h.replace('-', "_"))), "{h}");
    }
    assert!(
        text.contains("- portcullis\n") && text.contains("- portcullis-strip"),
        "{text}"
    );
}

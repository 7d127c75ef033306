//! Duo's request signing (signature version 2) checked three ways: against the published
//! test vectors of Duo's own Python client, against that client itself on requests like
//! the ones portcullis sends (tests/sign_with_duo_client.py), and against the Auth API
//! stand-in (tests/standin.py), which rejects what it cannot verify.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

#[path = "standin_harness/mod.rs"]
mod standin_harness;

use portcullis_duo::sign;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

// Values (not code) from duo_client_python's tests/test_client.py, at commit
// 6e207eb90326c76037530abe80cfd45c1c0053c9 of github.com/duosecurity/duo_client_python:
// TestCanonicalize.test_v2, TestSign.test_hmac_sha512 (sig_version=2, hashlib.sha512) and
// TestQueryParameters (canon_params). TestSign.test_hmac_sha1 signs the same request with
// HMAC-SHA1 (f01811cbbf9561623ab45b893096267fd46a5178), which portcullis does not use.

/// The request of TestCanonicalize.test_v2 and TestSign.
const DATE: &str = "Fri, 07 Dec 2012 17:18:00 -0000";
const HOST: &str = "foO.BAr52.cOm";
const METHOD: &str = "PoSt";
const URI: &str = "/Foo/BaR2/qux";
const PARAMS: [(&str, &str); 4] = [
    (
        "\u{469a}\u{287b}\u{35d0}\u{8ef3}\u{6727}\u{502a}\u{810}\u{d091}\u{c8}\u{c170}",
        "\u{f45}\u{1a76}\u{341a}\u{654c}\u{c23f}\u{9b09}\u{abe2}\u{8343}\u{1b27}\u{60d0}",
    ),
    (
        "\u{7449}\u{7e4b}\u{ccfb}\u{59ff}\u{fe5f}\u{83b7}\u{adcc}\u{900c}\u{cfd1}\u{7813}",
        "\u{8db7}\u{5022}\u{92d3}\u{42ef}\u{207d}\u{8730}\u{acfe}\u{5617}\u{946}\u{4e30}",
    ),
    (
        "\u{7470}\u{9314}\u{901c}\u{9eae}\u{40d8}\u{4201}\u{82d8}\u{8c70}\u{1d31}\u{a042}",
        "\u{17d9}\u{ba8}\u{9358}\u{aadf}\u{a42a}\u{48be}\u{fb96}\u{6fe9}\u{b7ff}\u{32f3}",
    ),
    (
        "\u{c2c5}\u{2c1d}\u{2620}\u{3617}\u{96b3}F\u{8605}\u{20e8}\u{ac21}\u{5934}",
        "\u{fba9}\u{41aa}\u{bd83}\u{840b}\u{2615}\u{3e6e}\u{652d}\u{a8b5}\u{d56b}U",
    ),
];
const CANONICAL_V2: &str = "Fri, 07 Dec 2012 17:18:00 -0000\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\n%E4%9A%9A%E2%A1%BB%E3%97%90%E8%BB%B3%E6%9C%A7%E5%80%AA%E0%A0%90%ED%82%91%C3%88%EC%85%B0=%E0%BD%85%E1%A9%B6%E3%90%9A%E6%95%8C%EC%88%BF%E9%AC%89%EA%AF%A2%E8%8D%83%E1%AC%A7%E6%83%90&%E7%91%89%E7%B9%8B%EC%B3%BB%E5%A7%BF%EF%B9%9F%E8%8E%B7%EA%B7%8C%E9%80%8C%EC%BF%91%E7%A0%93=%E8%B6%B7%E5%80%A2%E9%8B%93%E4%8B%AF%E2%81%BD%E8%9C%B0%EA%B3%BE%E5%98%97%E0%A5%86%E4%B8%B0&%E7%91%B0%E9%8C%94%E9%80%9C%E9%BA%AE%E4%83%98%E4%88%81%E8%8B%98%E8%B1%B0%E1%B4%B1%EA%81%82=%E1%9F%99%E0%AE%A8%E9%8D%98%EA%AB%9F%EA%90%AA%E4%A2%BE%EF%AE%96%E6%BF%A9%EB%9F%BF%E3%8B%B3&%EC%8B%85%E2%B0%9D%E2%98%A0%E3%98%97%E9%9A%B3F%E8%98%85%E2%83%A8%EA%B0%A1%E5%A4%B4=%EF%AE%A9%E4%86%AA%EB%B6%83%E8%90%8B%E2%98%95%E3%B9%AE%E6%94%AD%EA%A2%B5%ED%95%ABU";
const IKEY: &str = "test_ikey";
const SKEY: &str = "gtdfxv9YgVBYcF6dl2Eq17KUQJN2PLM2ODVTkvoT";
const SHA512_SIGNATURE: &str = "0508065035a03b2a1de2f453e629e791d180329e157f65df6b3e0f08299d4321e1c5c7a7c7ee6b9e5fc80d1fb6fbf3ad5eb7c44dd3b3985a02c37aca53ec3698";

#[test]
fn the_published_vectors_of_duos_client_hold() {
    let canonical = sign::canonical(DATE, METHOD, HOST, URI, &PARAMS);
    assert_eq!(canonical, CANONICAL_V2);
    assert_eq!(sign::signature(SKEY.as_bytes(), &canonical), SHA512_SIGNATURE);
    let basic = data_encoding::BASE64.encode(format!("{IKEY}:{SHA512_SIGNATURE}").as_bytes());
    assert_eq!(
        sign::authorization(IKEY, SKEY.as_bytes(), &canonical),
        format!("Basic {basic}")
    );

    // TestQueryParameters: the parameter line alone.
    assert_eq!(sign::canonical_params(&[]), "");
    assert_eq!(
        sign::canonical_params(&[("realname", "First Last")]),
        "realname=First%20Last"
    );
    assert_eq!(
        sign::canonical_params(&[("username", "root"), ("realname", "First Last")]),
        "realname=First%20Last&username=root"
    );
    assert_eq!(
        sign::canonical_params(&[("words", "First Last"), ("success", "true"), ("digit", "5")]),
        "digit=5&success=true&words=First%20Last"
    );
    assert_eq!(
        sign::canonical_params(&[
            ("digits", "0123456789"),
            ("letters", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            ("punctuation", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
            ("whitespace", "\t\n\u{b}\u{c}\r "),
        ]),
        "digits=0123456789&letters=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ&punctuation=%21%22%23%24%25%26%27%28%29%2A%2B%2C-.%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E_%60%7B%7C%7D~&whitespace=%09%0A%0B%0C%0D%20"
    );
    assert_eq!(
        sign::canonical_params(&[("foo_bar", "2"), ("foo", "1")]),
        "foo=1&foo_bar=2"
    );
    // test_unicode_fuzz_keys_and_values is the parameter line of the request above.
    assert_eq!(
        sign::canonical_params(&PARAMS),
        CANONICAL_V2.rsplit('\n').next().unwrap()
    );
}

/// One request to sign both ways.
struct Case {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    params: Vec<(&'static str, &'static str)>,
    date: String,
    ikey: &'static str,
    skey: &'static str,
}

impl Case {
    /// The case as sign_with_duo_client.py reads it: a repeated key's values in a list.
    fn json(&self) -> serde_json::Value {
        let mut params = serde_json::Map::new();
        for (k, v) in &self.params {
            let values = params
                .entry(k.to_string())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            values.as_array_mut().unwrap().push(serde_json::Value::from(*v));
        }
        serde_json::json!({
            "method": self.method, "host": self.host, "path": self.path, "params": params,
            "date": self.date, "ikey": self.ikey, "skey": self.skey,
        })
    }
}

#[test]
fn duos_own_client_signs_the_same_requests() {
    let imported = Command::new("python3").args(["-c", "import duo_client"]).status();
    assert!(
        matches!(imported, Ok(s) if s.success()),
        "python3 cannot import duo_client (Duo's own client, PyPI duo_client==5.7.0): run scripts/test, which installs it"
    );

    let ikey = "DIWJ8X6AEYOR5OMC6TQ1";
    let skey = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
    let today = sign::rfc2822(now());
    let cases = [
        Case {
            method: "POST",
            host: "api-xxxxxxxx.duosecurity.com",
            path: "/auth/v2/auth",
            params: vec![
                ("username", "alice"),
                ("factor", "push"),
                ("device", "auto"),
                ("async", "1"),
                ("ipaddr", "192.0.2.10"),
                (
                    "pushinfo",
                    "from=portcullis&where=Gate 1 (north) & more=yes&caf\u{e9}=\u{fc}ber \u{1f511}",
                ),
                ("type", "Portcullis login"),
                ("display_username", "Alice \u{c4}mmerl\u{e9}"),
            ],
            date: today.clone(),
            ikey,
            skey,
        },
        Case {
            method: "GET",
            host: "api-xxxxxxxx.duosecurity.com",
            path: "/auth/v2/auth_status",
            params: vec![("txid", "45f7c92b-f45f-4862-8545-e0f58e78075a")],
            date: today.clone(),
            ikey,
            skey,
        },
        Case {
            method: "GET",
            host: "api-xxxxxxxx.duosecurity.com",
            path: "/auth/v2/check",
            params: vec![],
            date: "Tue, 21 Aug 2012 17:29:18 -0000".to_string(),
            ikey,
            skey,
        },
        Case {
            method: "post",
            host: "API-XxXxXxXx.DuoSecurity.COM",
            path: "/auth/v2/preauth",
            params: vec![
                ("username", "Bob.Smith+duo@Example.com"),
                ("ipaddr", "2001:db8::1"),
                ("hostname", "gate-01"),
            ],
            date: today.clone(),
            ikey,
            skey,
        },
        Case {
            // Keys sharing a prefix, a repeated key, the characters around '=' in ASCII,
            // an empty value and a non-ASCII secret key.
            method: "POST",
            host: "localhost",
            path: "/auth/v2/auth",
            params: vec![
                ("a_b", "3"),
                ("a", "z"),
                ("a", "y"),
                ("a-b", "~*+%/?"),
                ("a.b", ""),
                ("passcode", "135790"),
            ],
            date: today,
            ikey: "DI\u{e9}",
            skey: "s\u{e9}cr\u{e8}t key",
        },
    ];

    let input = serde_json::Value::Array(cases.iter().map(Case::json).collect()).to_string();
    let mut child = Command::new("python3")
        .arg(tests_dir().join("sign_with_duo_client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sign_with_duo_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), cases.len());

    for (case, theirs) in cases.iter().zip(&theirs) {
        let ours = sign::canonical(&case.date, case.method, case.host, case.path, &case.params);
        assert_eq!(
            theirs["canonical"].as_str().unwrap(),
            ours,
            "canonical request of {} {}",
            case.method,
            case.path
        );
        assert_eq!(
            theirs["authorization"].as_str().unwrap(),
            sign::authorization(case.ikey, case.skey.as_bytes(), &ours),
            "Authorization of {} {}",
            case.method,
            case.path
        );
    }
}

/// curl trusting the stand-in's CA: (HTTP status, JSON body).
fn curl(ca: &Path, args: &[&str]) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")),
    )
}

#[test]
fn the_stand_in_verifies_signatures() {
    let (ikey, skey) = (standin_harness::IKEY, standin_harness::SKEY);
    let stand_in = standin_harness::StandIn::start_new();
    let url_of = |path: &str| format!("https://localhost:{}{path}", stand_in.port);
    let ca = stand_in.ca_file();
    let d = ca.as_path();
    let signed_get = |path: &str, date: &str, skey: &str| {
        let canonical = sign::canonical(date, "GET", "localhost", path, &[]);
        let auth = sign::authorization(ikey, skey.as_bytes(), &canonical);
        curl(
            d,
            &[
                "-H",
                &format!("Date: {date}"),
                "-H",
                &format!("Authorization: {auth}"),
                &url_of(path),
            ],
        )
    };

    let (status, body) = signed_get("/auth/v2/check", &sign::rfc2822(now()), skey);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stat"], "OK");
    assert!(
        (body["response"]["time"].as_i64().unwrap() - now()).abs() < 60,
        "{body}"
    );

    // A POST: the form body is what is signed, whatever its order and escaping.
    let date = sign::rfc2822(now());
    let params = [
        ("username", "alice"),
        ("ipaddr", "192.0.2.10"),
        ("hostname", "gate & co = \u{e9}"),
    ];
    let canonical = sign::canonical(&date, "POST", "localhost", "/auth/v2/preauth", &params);
    let auth = sign::authorization(ikey, skey.as_bytes(), &canonical);
    let form = "hostname=gate+%26+co+%3D+%C3%A9&username=alice&ipaddr=192.0.2.10";
    let url = url_of("/auth/v2/preauth");
    let (date, auth) = (format!("X-Duo-Date: {date}"), format!("Authorization: {auth}"));
    let (status, body) = curl(d, &["-H", &date, "-H", &auth, "--data-raw", form, &url]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["result"], "auth");

    let (status, body) = signed_get("/auth/v2/check", &sign::rfc2822(now()), "not the secret key");
    assert_eq!((status, body["code"].as_i64()), (401, Some(40103)), "{body}");
    let (status, body) = signed_get("/auth/v2/check", &sign::rfc2822(now() - 600), skey);
    assert_eq!((status, body["code"].as_i64()), (401, Some(40103)), "{body}");

    let (status, stats) = curl(d, &[&url_of("/stand-in/stats")]);
    assert_eq!(status, 200);
    assert_eq!(stats["bad_signatures"], 2, "{stats}");
    assert_eq!(stats["requests"], 4, "{stats}");
    assert_eq!(stats["preauth"]["alice"], 1, "{stats}");
    drop(stand_in);
}

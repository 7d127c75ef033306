//! apache_2fa `tokens.json` reader: a JSON object mapping user names to base32 TOTP secrets.
//!
//! Source: itemir/apache_2fa `auth` (`json.load(tokens.json)`, then
//! `onetimepass.get_totp(secret.get(user))`: 30-second, 6-digit TOTP) and the shipped
//! `tokens.json` (`{"test_user": "R24UZEAO..."}`). The file has no other state, so
//! this module only imports; it never writes.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use zeroize::Zeroizing;

use crate::atomic;
use crate::b32;
use crate::error::Error;

/// One user's TOTP secret from tokens.json.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The user key (Apache's REMOTE_USER).
    pub user: String,
    /// The decoded secret.
    pub secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("user", &self.user)
            .field("secret", &format_args!("<redacted {} bytes>", self.secret.len()))
            .finish()
    }
}

struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object mapping user names to base32 secrets")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                // A Vec keeps file order and lets us report duplicates, which serde_json's Map would hide.
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, serde_json::Value>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses tokens.json text into tokens in file order; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Token>, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let json_err = |e: serde_json::Error| Error::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let ordered: Ordered = serde::Deserialize::deserialize(&mut de).map_err(json_err)?;
    de.end().map_err(json_err)?;
    let mut out: Vec<Token> = Vec::with_capacity(ordered.0.len());
    for (user, value) in ordered.0 {
        let entry_err = |problem: String, hint: &'static str| Error::JsonEntry {
            path: path.to_owned(),
            user: user.clone(),
            problem,
            hint,
        };
        if out.iter().any(|t| t.user == user) {
            return Err(entry_err(
                "appears more than once".to_owned(),
                "apache_2fa (Python json.load) silently uses the last one; delete the others",
            ));
        }
        let serde_json::Value::String(s) = value else {
            return Err(entry_err(
                "value is not a string".to_owned(),
                "write the secret as a base32 string, e.g. \"JBSWY3DPEHPK3PXP\"",
            ));
        };
        let s = Zeroizing::new(s);
        let secret = b32::decode(&s).map_err(|p| {
            entry_err(
                format!("secret {p}"),
                "write the secret in base32 (A-Z, 2-7; any case, padding and spaces allowed)",
            )
        })?;
        out.push(Token { user, secret });
    }
    Ok(out)
}

/// Reads and parses `path` (refusing a symlink).
pub fn read(path: &Path) -> Result<Vec<Token>, Error> {
    let mut f = atomic::open_read_nofollow(path, "tokens file")?;
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text)
        .map_err(|e| Error::io(path, "read (must be UTF-8 JSON)", e))?;
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("tokens.json")
    }

    #[test]
    fn read_returns_the_files_tokens_and_debug_hides_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{\"amy\": \"JBSWY3DPEHPK3PXP\"}").unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].user.as_str(), &t[0].secret[..]),
            ("amy", &b"Hello!\xde\xad\xbe\xef"[..])
        );
        assert_eq!(
            format!("{:?}", t[0]),
            "Token { user: \"amy\", secret: <redacted 10 bytes> }"
        );
    }

    #[test]
    fn a_file_that_is_not_an_object_says_what_was_expected() {
        let err = parse("[\"JBSWY3DPEHPK3PXP\"]", p()).unwrap_err().to_string();
        assert!(
            err.contains("a JSON object mapping user names to base32 secrets"),
            "{err}"
        );
    }

    #[test]
    fn parses_in_file_order() {
        let text = "{\"test_user\": \"R24UZEAOIUAZHY62IEB5XJOVKT6PYGOYNDKVVU3KS4DZCYOOSIF6M6TFYEWVZAOX\",\n \"zed\": \"jbsw y3dp ehpk 3pxp\",\n \"amy\": \"JBSWY3DPEHPK3PXP====\"}\n";
        let t = parse(text, p()).unwrap();
        assert_eq!(
            t.iter().map(|t| t.user.as_str()).collect::<Vec<_>>(),
            vec!["test_user", "zed", "amy"]
        );
        assert_eq!(t[0].secret.len(), 40);
        assert_eq!(&t[1].secret[..], b"Hello!\xde\xad\xbe\xef");
        assert_eq!(t[1].secret, t[2].secret);
        assert!(parse("{}", p()).unwrap().is_empty());
        assert!(!format!("{t:?}").contains("Hello"));
    }

    #[test]
    fn bad_secret_names_user() {
        let e = parse("{\"alice\": \"JBSWY3DPEHPK3PXP\", \"bob\": \"NOT-BASE32!\"}", p())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tokens.json: user \"bob\": secret character 11 of 11 is not base32"),
            "{e}"
        );
        assert!(!e.contains("NOT"), "{e}");
        let e = parse("{\"carol\": 12}", p()).unwrap_err().to_string();
        assert!(e.contains("user \"carol\": value is not a string"), "{e}");
        let e = parse("{\"d\": \"JBSWY3DPEHPK3PXP\", \"d\": \"JBSWY3DPEHPK3PXP\"}", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("user \"d\": appears more than once"), "{e}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = parse("{\n  \"alice\": \"JBSWY3DPEHPK3PXP\"\n  \"bob\": \"x\"\n}", p()).unwrap_err();
        assert!(matches!(e, Error::Json { line: 3, .. }), "{e:?}");
        assert!(e.to_string().starts_with("tokens.json:3:3: malformed JSON"), "{e}");
        let e = parse("[\"alice\"]", p()).unwrap_err();
        assert!(matches!(e, Error::Json { line: 1, .. }), "{e:?}");
        let e = parse("{} trailing", p()).unwrap_err();
        assert!(matches!(e, Error::Json { .. }), "{e:?}");
    }
}

//! `otpauth://` key URIs (the Google Authenticator "Key Uri Format"): parse and format.

use crate::{Algorithm, Secret, SecretError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// Characters escaped in labels and parameter values: everything but unreserved ones.
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Event or time based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpKind {
    /// Time-based (RFC 6238).
    Totp,
    /// Counter-based (RFC 4226).
    Hotp,
}

/// Why an otpauth:// URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Not `otpauth://`.
    #[error("the URI must start with otpauth://")]
    Scheme,
    /// The type is not totp or hotp.
    #[error("unknown OTP type {0:?}; use otpauth://totp/... or otpauth://hotp/...")]
    Type(String),
    /// Nothing after the type.
    #[error("the URI has no label (account name) after the type")]
    MissingLabel,
    /// Percent-escapes that do not decode to UTF-8.
    #[error("the {0} is not valid percent-encoded UTF-8")]
    Encoding(&'static str),
    /// No `secret=` parameter.
    #[error("the URI has no secret= parameter")]
    MissingSecret,
    /// The secret does not decode.
    #[error("secret= is not valid base32: {0}")]
    Secret(#[from] SecretError),
    /// A parameter value that cannot be used.
    #[error("parameter {name}={value:?} is invalid: {reason}")]
    Parameter {
        /// Parameter name.
        name: &'static str,
        /// The value as given.
        value: String,
        /// What is expected instead.
        reason: &'static str,
    },
    /// An HOTP URI without `counter=`.
    #[error("an hotp URI needs a counter= parameter")]
    MissingCounter,
    /// The label's issuer prefix and `issuer=` disagree.
    #[error("the label's issuer {label:?} differs from issuer={param:?}")]
    IssuerMismatch {
        /// Issuer in the label.
        label: String,
        /// Issuer parameter.
        param: String,
    },
}

/// Everything an authenticator app needs to set up one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUri {
    /// totp or hotp.
    pub kind: OtpKind,
    /// Account name shown in the app (usually the user name).
    pub account: String,
    /// Service name shown in the app.
    pub issuer: Option<String>,
    /// The shared key.
    pub secret: Secret,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: u32,
    /// Step length in seconds (TOTP).
    pub period: u32,
    /// Initial counter (HOTP).
    pub counter: u64,
}

fn decode(text: &str, what: &'static str) -> Result<String, UriError> {
    // `+` is a space in form encoding; some generators use it in labels.
    let text = text.replace('+', "%20");
    percent_decode_str(&text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UriError::Encoding(what))
}

fn number<T: std::str::FromStr + PartialOrd>(
    name: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<T>,
    reason: &'static str,
) -> Result<T, UriError> {
    value
        .parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| UriError::Parameter {
            name,
            value: value.to_string(),
            reason,
        })
}

impl KeyUri {
    /// Parses an otpauth:// URI, refusing anything malformed with the reason.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let uri = uri.trim();
        let rest = uri
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case("otpauth://"))
            .map(|_| &uri[10..])
            .ok_or(UriError::Scheme)?;
        if rest.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UriError::Encoding("URI (it has spaces or control characters)"));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (kind, label) = path.split_once('/').ok_or(UriError::MissingLabel)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "totp" => OtpKind::Totp,
            "hotp" => OtpKind::Hotp,
            other => return Err(UriError::Type(other.to_string())),
        };
        let label = decode(label, "label")?;
        if label.trim().is_empty() {
            return Err(UriError::MissingLabel);
        }
        let (label_issuer, account) = match label.split_once(':') {
            Some((i, a)) => (Some(i.trim().to_string()), a.trim().to_string()),
            None => (None, label.trim().to_string()),
        };
        if account.is_empty() {
            return Err(UriError::MissingLabel);
        }
        let mut key = KeyUri {
            kind,
            account,
            issuer: label_issuer.clone(),
            secret: Secret::from_bytes(Vec::new()),
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            counter: 0,
        };
        let mut have_secret = false;
        let mut have_counter = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = Zeroizing::new(decode(raw, "parameter value")?);
            match name.to_ascii_lowercase().as_str() {
                "secret" => {
                    key.secret = Secret::from_base32(&value)?;
                    have_secret = true;
                }
                "issuer" => {
                    if let Some(li) = &label_issuer
                        && li != value.as_str()
                    {
                        return Err(UriError::IssuerMismatch {
                            label: li.clone(),
                            param: value.to_string(),
                        });
                    }
                    key.issuer = Some(value.to_string());
                }
                "algorithm" => {
                    key.algorithm = Algorithm::parse(&value).ok_or_else(|| UriError::Parameter {
                        name: "algorithm",
                        value: value.to_string(),
                        reason: "use SHA1, SHA256 or SHA512",
                    })?;
                }
                "digits" => {
                    key.digits = number("digits", &value, 6..=10, "use 6 to 10 digits")?;
                }
                "period" => {
                    key.period = number("period", &value, 1..=3600, "use 1 to 3600 seconds")?;
                }
                "counter" => {
                    key.counter = number("counter", &value, 0..=u64::MAX, "use a whole number")?;
                    have_counter = true;
                }
                // Unknown parameters (image=, color=...) are app extensions: ignore them.
                _ => {}
            }
        }
        if !have_secret {
            return Err(UriError::MissingSecret);
        }
        if kind == OtpKind::Hotp && !have_counter {
            return Err(UriError::MissingCounter);
        }
        Ok(key)
    }

    /// Formats the URI with every parameter explicit, so any app reads it the same way.
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(128));
        let kind = match self.kind {
            OtpKind::Totp => "totp",
            OtpKind::Hotp => "hotp",
        };
        let _ = write!(out, "otpauth://{kind}/");
        if let Some(issuer) = &self.issuer {
            let _ = write!(out, "{}:", utf8_percent_encode(issuer, ESCAPE));
        }
        let _ = write!(
            out,
            "{}?secret={}",
            utf8_percent_encode(&self.account, ESCAPE),
            &*self.secret.to_base32()
        );
        if let Some(issuer) = &self.issuer {
            let _ = write!(out, "&issuer={}", utf8_percent_encode(issuer, ESCAPE));
        }
        let _ = write!(out, "&algorithm={}&digits={}", self.algorithm.name(), self.digits);
        match self.kind {
            OtpKind::Totp => {
                let _ = write!(out, "&period={}", self.period);
            }
            OtpKind::Hotp => {
                let _ = write!(out, "&counter={}", self.counter);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spaces_and_control_characters_are_refused() {
        for uri in [
            "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP&issuer=Ex ample",
            "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP\u{7f}",
            "otpauth://totp/Example:alice\n?secret=JBSWY3DPEHPK3PXP",
        ] {
            assert!(
                matches!(KeyUri::parse(uri), Err(UriError::Encoding(_))),
                "{uri:?} must be refused"
            );
        }
    }

    #[test]
    fn parses_the_google_example() {
        let k =
            KeyUri::parse("otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example").unwrap();
        assert_eq!(k.kind, OtpKind::Totp);
        assert_eq!(k.account, "alice@google.com");
        assert_eq!(k.issuer.as_deref(), Some("Example"));
        assert_eq!(k.secret.as_bytes(), b"Hello!\xde\xad\xbe\xef");
        assert_eq!((k.digits, k.period, k.algorithm), (6, 30, Algorithm::Sha1));
    }

    #[test]
    fn escapes_labels_and_issuers() {
        let k = KeyUri {
            kind: OtpKind::Hotp,
            account: "bob smith:ops".into(),
            issuer: Some("ACME Co & Sons".into()),
            secret: Secret::from_bytes(vec![1, 2, 3, 4, 5]),
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 30,
            counter: 7,
        };
        let uri = k.to_uri();
        assert!(uri.starts_with("otpauth://hotp/ACME%20Co%20%26%20Sons:bob%20smith%3Aops?"));
        assert_eq!(KeyUri::parse(&uri).unwrap(), k);
    }

    #[test]
    fn rejects_malformed_uris_with_a_reason() {
        let cases = [
            ("http://totp/a?secret=AAAA", UriError::Scheme),
            ("otpauth://motp/a?secret=AAAA", UriError::Type("motp".into())),
            ("otpauth://totp/?secret=AAAA", UriError::MissingLabel),
            ("otpauth://totp/a", UriError::MissingSecret),
            ("otpauth://hotp/a?secret=AAAAAAAA", UriError::MissingCounter),
        ];
        for (uri, want) in cases {
            assert_eq!(KeyUri::parse(uri).unwrap_err(), want, "{uri}");
        }
        assert!(matches!(
            KeyUri::parse("otpauth://totp/a?secret=AAAA1AAA").unwrap_err(),
            UriError::Secret(_)
        ));
        assert!(matches!(
            KeyUri::parse("otpauth://totp/a?secret=AAAAAAAA&digits=4").unwrap_err(),
            UriError::Parameter { name: "digits", .. }
        ));
        assert!(matches!(
            KeyUri::parse("otpauth://totp/A:a?secret=AAAAAAAA&issuer=B").unwrap_err(),
            UriError::IssuerMismatch { .. }
        ));
        assert!(KeyUri::parse("otpauth://totp/a?secret=AAAAAAAA\r\nX: y").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(
            account in "[^:\\x00-\\x1f]{1,20}",
            issuer in proptest::option::of("[^:\\x00-\\x1f]{1,20}"),
            secret in proptest::collection::vec(any::<u8>(), 10..40),
            hotp in any::<bool>(),
            digits in 6u32..=10,
            period in 1u32..=3600,
            counter in any::<u64>(),
            alg in 0usize..3,
        ) {
            prop_assume!(!account.trim().is_empty() && account.trim() == account);
            prop_assume!(issuer.as_ref().is_none_or(|i| i.trim() == i && !i.is_empty()));
            let k = KeyUri {
                kind: if hotp { OtpKind::Hotp } else { OtpKind::Totp },
                account,
                issuer,
                secret: Secret::from_bytes(secret),
                algorithm: [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][alg],
                digits,
                period: if hotp { 30 } else { period },
                counter: if hotp { counter } else { 0 },
            };
            prop_assert_eq!(KeyUri::parse(&k.to_uri()).unwrap(), k);
        }
    }
}

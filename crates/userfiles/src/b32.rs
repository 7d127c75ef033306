//! Lenient base32 decoding shared by the google_authenticator and apache_2fa readers.

use data_encoding::{DecodeKind, Encoding, Specification};
use zeroize::Zeroizing;

/// RFC 4648 base32 that accepts lower case, spaces, tabs, dashes and `=` padding anywhere.
///
/// Trailing bits are not checked: google-authenticator's own `base32_decode` and
/// Python's onetimepass accept secrets whose length leaves a few spare bits.
fn lenient() -> Result<Encoding, String> {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.ignore.push_str(" \t\r-=");
    spec.check_trailing_bits = false;
    spec.encoding()
        .map_err(|e| format!("internal base32 specification error: {e}"))
}

/// Decodes `s`; the error text never contains the input (it is a secret).
pub(crate) fn decode(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let enc = lenient()?;
    match enc.decode(s.as_bytes()) {
        Ok(v) if v.is_empty() => Err("is empty".to_owned()),
        Ok(v) => Ok(Zeroizing::new(v)),
        Err(e) => Err(match e.kind {
            DecodeKind::Symbol => format!(
                "character {} of {} is not base32 (A-Z, 2-7)",
                e.position + 1,
                s.chars().count()
            ),
            DecodeKind::Length | DecodeKind::Trailing => {
                format!(
                    "has {} base32 letters, which is not a valid base32 length",
                    s.chars().filter(|c| c.is_ascii_alphanumeric()).count()
                )
            }
            DecodeKind::Padding => "has misplaced '=' padding".to_owned(),
        }),
    }
}

/// Canonical upper-case, unpadded base32, as google-authenticator writes it.
pub(crate) fn encode(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(data_encoding::BASE32_NOPAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_forms_agree() {
        let want = decode("JBSWY3DPEHPK3PXP").unwrap();
        for s in [
            "jbswy3dpehpk3pxp",
            "JBSW Y3DP EHPK 3PXP",
            "JBSW-Y3DP-EHPK-3PXP",
            "JBSWY3DPEHPK3PXP======",
        ] {
            assert_eq!(decode(s).unwrap(), want, "{s}");
        }
        assert_eq!(&encode(&want)[..], "JBSWY3DPEHPK3PXP");
    }

    #[test]
    fn errors_do_not_echo() {
        let e = decode("JBSWY3DP1HPK3PXP").unwrap_err();
        assert!(e.contains("character 9 of 16"), "{e}");
        assert!(!e.contains("JBSW"));
        assert!(decode("A").is_err());
        assert!(decode("").is_err());
    }
}

//! Shared secrets: parsed from base32 or hex, zeroized on drop, never printed.

use data_encoding::{BASE32_NOPAD, Encoding, HEXLOWER_PERMISSIVE};
use std::fmt;
use std::sync::LazyLock;
use zeroize::Zeroizing;

/// Base32 that ignores the unused low bits of the last character, as oathtool and the
/// authenticator apps do; secrets typed by hand are not always canonical.
static BASE32_LENIENT: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = BASE32_NOPAD.specification();
    spec.check_trailing_bits = false;
    spec.encoding().unwrap_or_else(|_| BASE32_NOPAD.clone())
});

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The text is empty after removing spaces and padding.
    #[error("the secret is empty; give at least 10 bytes (16 base32 characters)")]
    Empty,
    /// A character outside the base32 alphabet.
    #[error("character {found:?} at position {position} is not base32 (A-Z, 2-7); check for 0/O or 1/I/L mix-ups")]
    NotBase32 {
        /// The offending character.
        found: char,
        /// Its 1-based position in the input.
        position: usize,
    },
    /// Base32 whose length leaves dangling bits.
    #[error("a base32 secret of {len} characters is truncated; copy the whole secret")]
    Base32Length {
        /// Number of base32 characters after cleanup.
        len: usize,
    },
    /// A character outside 0-9a-f.
    #[error("character {found:?} at position {position} is not a hex digit")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its 1-based position in the input.
        position: usize,
    },
    /// Hex with an odd number of digits.
    #[error("a hex secret needs an even number of digits, got {len}")]
    OddHex {
        /// Number of hex digits.
        len: usize,
    },
}

/// A token's shared key. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Parses base32 in any case, with or without `=` padding, spaces or dashes.
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let mut clean = Zeroizing::new(String::with_capacity(text.len()));
        for (i, c) in text.chars().enumerate() {
            match c {
                ' ' | '\t' | '-' | '=' => {}
                'a'..='z' | 'A'..='Z' | '2'..='7' => clean.push(c.to_ascii_uppercase()),
                _ => {
                    return Err(SecretError::NotBase32 {
                        found: c,
                        position: i + 1,
                    });
                }
            }
        }
        if clean.is_empty() {
            return Err(SecretError::Empty);
        }
        BASE32_LENIENT
            .decode(clean.as_bytes())
            .map(Self::from_bytes)
            .map_err(|_| SecretError::Base32Length { len: clean.len() })
    }

    /// Parses hex digits in either case; spaces are ignored.
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let mut clean = Zeroizing::new(String::with_capacity(text.len()));
        for (i, c) in text.chars().enumerate() {
            match c {
                ' ' | '\t' => {}
                c if c.is_ascii_hexdigit() => clean.push(c),
                _ => {
                    return Err(SecretError::NotHex {
                        found: c,
                        position: i + 1,
                    });
                }
            }
        }
        if clean.is_empty() {
            return Err(SecretError::Empty);
        }
        // An odd number of digits is the one way decoding clean hex fails.
        HEXLOWER_PERMISSIVE
            .decode(clean.as_bytes())
            .map(Self::from_bytes)
            .map_err(|_| SecretError::OddHex { len: clean.len() })
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Upper-case base32 without padding, as authenticator apps expect.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE32_NOPAD.encode(&self.0))
    }

    /// Lower-case hex, as the mod_authn_otp and pam_oath users files hold it.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::HEXLOWER.encode(&self.0))
    }

    /// Number of key bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a zero-length key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_errors_say_what_and_where() {
        assert_eq!(
            Secret::from_hex("ab c-d"),
            Err(SecretError::NotHex {
                found: '-',
                position: 5
            })
        );
        assert_eq!(Secret::from_hex("abc"), Err(SecretError::OddHex { len: 3 }));
        assert_eq!(Secret::from_hex(" \t"), Err(SecretError::Empty));
        assert_eq!(Secret::from_hex("aB cd").unwrap().as_bytes(), b"\xab\xcd");
    }

    #[test]
    fn length_and_debug_never_show_the_key() {
        let s = Secret::from_hex("00112233").unwrap();
        assert_eq!((s.len(), s.is_empty()), (4, false));
        let empty = Secret::from_bytes(Vec::new());
        assert_eq!((empty.len(), empty.is_empty()), (0, true));
        assert_eq!(format!("{s:?}"), "Secret(4 bytes, redacted)");
    }

    #[test]
    fn base32_is_lenient_about_case_padding_and_spaces() {
        let a = Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        let b = Secret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_bytes(), b"12345678901234567890");
        let padded = Secret::from_base32("MFRGG===").unwrap();
        assert_eq!(padded.as_bytes(), b"abc");
    }

    #[test]
    fn base32_errors_say_where() {
        assert_eq!(
            Secret::from_base32("ABC1").unwrap_err(),
            SecretError::NotBase32 {
                found: '1',
                position: 4
            }
        );
        assert_eq!(Secret::from_base32(" = ").unwrap_err(), SecretError::Empty);
        assert!(matches!(
            Secret::from_base32("A").unwrap_err(),
            SecretError::Base32Length { len: 1 }
        ));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let s = Secret::from_hex("3132 3334").unwrap();
        assert_eq!(s.as_bytes(), b"1234");
        assert_eq!(s.to_hex().as_str(), "31323334");
        assert_eq!(Secret::from_hex("ABC").unwrap_err(), SecretError::OddHex { len: 3 });
        assert!(matches!(
            Secret::from_hex("zz").unwrap_err(),
            SecretError::NotHex { found: 'z', .. }
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = Secret::from_bytes(b"supersecret".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("supersecret"));
        assert!(!shown.contains(&*s.to_hex()));
    }

    proptest! {
        #[test]
        fn base32_and_hex_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
            let s = Secret::from_bytes(bytes.clone());
            prop_assert_eq!(Secret::from_base32(&s.to_base32()).unwrap(), s.clone());
            prop_assert_eq!(Secret::from_base32(&s.to_base32().to_lowercase()).unwrap(), s.clone());
            prop_assert_eq!(Secret::from_hex(&s.to_hex()).unwrap(), s);
        }
    }
}

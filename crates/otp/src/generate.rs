//! Code generation: HOTP (RFC 4226), TOTP (RFC 6238) and mOTP (motp.sourceforge.net).

use crate::Secret;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// The HMAC hash of an HOTP/TOTP token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Algorithm {
    /// HMAC-SHA1, what nearly every token and app uses.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The name used in otpauth:// URIs and in config files (`SHA1`, `SHA256`, `SHA512`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Parses `sha1`/`SHA1`/`sha-256`… in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// A keyed HMAC whose key schedule (inner and outer pads) is computed once, so each
/// counter costs only the two compression rounds of the message.
#[derive(Clone)]
enum Keyed {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

fn keyed<M: Mac + KeyInit>(key: &[u8]) -> Option<M> {
    // HMAC accepts keys of any length, so this never fails.
    <M as KeyInit>::new_from_slice(key).ok()
}

fn dynamic_truncation(hash: &[u8]) -> u32 {
    let offset = (hash[hash.len() - 1] & 0x0f) as usize;
    u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ])
}

/// An HOTP generator for one key: `value(counter)` is the code as a number.
#[derive(Clone)]
pub struct Hotp {
    keyed: Option<Keyed>,
    digits: u32,
}

impl Hotp {
    /// Prepares the key once for many counters; `digits` is clamped to 1–10.
    pub fn new(secret: &Secret, algorithm: Algorithm, digits: u32) -> Self {
        let key = secret.as_bytes();
        let keyed = match algorithm {
            Algorithm::Sha1 => keyed(key).map(Keyed::Sha1),
            Algorithm::Sha256 => keyed(key).map(Keyed::Sha256),
            Algorithm::Sha512 => keyed(key).map(Keyed::Sha512),
        };
        Hotp {
            keyed,
            digits: digits.clamp(1, 10),
        }
    }

    /// Code length.
    pub fn digits(&self) -> u32 {
        self.digits
    }

    /// The code for `counter` as a number (below 10^digits; 10 digits give all 31 bits).
    pub fn value(&self, counter: u64) -> u32 {
        let msg = counter.to_be_bytes();
        let full = match &self.keyed {
            Some(Keyed::Sha1(m)) => dynamic_truncation(&m.clone().chain_update(msg).finalize().into_bytes()),
            Some(Keyed::Sha256(m)) => dynamic_truncation(&m.clone().chain_update(msg).finalize().into_bytes()),
            Some(Keyed::Sha512(m)) => dynamic_truncation(&m.clone().chain_update(msg).finalize().into_bytes()),
            None => 0,
        };
        if self.digits >= 10 {
            full
        } else {
            full % 10u32.pow(self.digits)
        }
    }

    /// The code for `counter` as text, zero-padded.
    pub fn code(&self, counter: u64) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(10));
        let _ = write!(out, "{:0width$}", self.value(counter), width = self.digits as usize);
        out
    }

    /// Parses a typed code into the number `value` would give, or None if it is not exactly
    /// `digits` ASCII digits.
    pub fn parse(&self, code: &str) -> Option<u32> {
        if !crate::is_well_formed(code, self.digits, crate::CodeFormat::Decimal) {
            return None;
        }
        code.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok())
    }
}

/// The HOTP code for `counter`, `digits` long (1–10; 10 digits show the whole 31-bit value).
pub fn hotp(secret: &Secret, counter: u64, digits: u32, algorithm: Algorithm) -> Zeroizing<String> {
    Hotp::new(secret, algorithm, digits).code(counter)
}

/// The TOTP time step that contains `unix_time` (seconds) for a `period`-second step.
pub fn totp_step(unix_time: i64, period: u32) -> u64 {
    let period = i64::from(period.max(1));
    u64::try_from(unix_time.div_euclid(period)).unwrap_or(0)
}

/// The TOTP code at `unix_time`.
pub fn totp(secret: &Secret, unix_time: i64, period: u32, digits: u32, algorithm: Algorithm) -> Zeroizing<String> {
    hotp(secret, totp_step(unix_time, period), digits, algorithm)
}

/// The mOTP code for `counter` (unix time / 10 for time tokens): the first `digits` hex digits
/// of MD5(counter ‖ hex(secret) ‖ pin), as mod_authn_otp computes it.
pub fn motp(secret: &Secret, pin: &str, counter: u64, digits: u32) -> Zeroizing<String> {
    let mut input = Zeroizing::new(String::with_capacity(64));
    let _ = write!(input, "{counter}{}{pin}", &*secret.to_hex());
    let hash = Md5::digest(input.as_bytes());
    let mut hex = Zeroizing::new(data_encoding::HEXLOWER.encode(&hash));
    hex.truncate(digits.clamp(1, 32) as usize);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii(s: &str) -> Secret {
        Secret::from_bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn digits_are_kept_within_one_to_ten() {
        let s = ascii("12345678901234567890");
        for (asked, kept) in [(0, 1), (1, 1), (6, 6), (8, 8), (10, 10), (11, 10)] {
            assert_eq!(Hotp::new(&s, Algorithm::Sha1, asked).digits(), kept);
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        let s = ascii("12345678901234567890");
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(&s, counter as u64, 6, Algorithm::Sha1).as_str(), *want);
        }
        // The truncated decimal values of the appendix, shown with 10 digits.
        assert_eq!(hotp(&s, 0, 10, Algorithm::Sha1).as_str(), "1284755224");
        assert_eq!(hotp(&s, 9, 10, Algorithm::Sha1).as_str(), "0645520489");
    }

    #[test]
    fn rfc6238_appendix_b() {
        let sha1 = ascii("12345678901234567890");
        let sha256 = ascii("12345678901234567890123456789012");
        let sha512 = ascii("1234567890123456789012345678901234567890123456789012345678901234");
        let table: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, a, b, c) in table {
            assert_eq!(totp(&sha1, t, 30, 8, Algorithm::Sha1).as_str(), a, "sha1 t={t}");
            assert_eq!(totp(&sha256, t, 30, 8, Algorithm::Sha256).as_str(), b, "sha256 t={t}");
            assert_eq!(totp(&sha512, t, 30, 8, Algorithm::Sha512).as_str(), c, "sha512 t={t}");
        }
    }

    #[test]
    fn negative_time_is_step_zero() {
        assert_eq!(totp_step(-5, 30), 0);
        assert_eq!(totp_step(59, 30), 1);
    }

    #[test]
    fn motp_matches_the_reference_construction() {
        // `echo -n 12345678900123456789abcdef1234 | md5sum` = 539c702615059c22f2bc6eaec2a36662
        let s = Secret::from_hex("0123456789ABCDEF").unwrap();
        assert_eq!(motp(&s, "1234", 1234567890, 6).as_str(), "539c70");
        assert_eq!(motp(&s, "1234", 1234567890, 8).as_str(), "539c7026");
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("SHA512"), Some(Algorithm::Sha512));
        assert_eq!(Algorithm::parse("md5"), None);
    }
}

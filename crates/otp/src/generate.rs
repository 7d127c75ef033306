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

fn hmac_into<M: Mac + KeyInit>(key: &[u8], msg: &[u8], out: &mut [u8; 64]) -> usize {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return 0;
    };
    mac.update(msg);
    let tag = mac.finalize().into_bytes();
    out[..tag.len()].copy_from_slice(&tag);
    tag.len()
}

/// The RFC 4226 dynamic-truncation value (31 bits) for `counter`.
fn truncated(secret: &Secret, counter: u64, algorithm: Algorithm) -> u32 {
    let mut buf = Zeroizing::new([0u8; 64]);
    let msg = counter.to_be_bytes();
    let len = match algorithm {
        Algorithm::Sha1 => hmac_into::<Hmac<sha1::Sha1>>(secret.as_bytes(), &msg, &mut buf),
        Algorithm::Sha256 => hmac_into::<Hmac<sha2::Sha256>>(secret.as_bytes(), &msg, &mut buf),
        Algorithm::Sha512 => hmac_into::<Hmac<sha2::Sha512>>(secret.as_bytes(), &msg, &mut buf),
    };
    let hash = &buf[..len];
    let offset = (hash[len - 1] & 0x0f) as usize;
    u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ])
}

/// The HOTP code for `counter`, `digits` long (1–10; 10 digits show the whole 31-bit value).
pub fn hotp(secret: &Secret, counter: u64, digits: u32, algorithm: Algorithm) -> Zeroizing<String> {
    let digits = digits.clamp(1, 10);
    let value = u64::from(truncated(secret, counter, algorithm));
    let value = if digits >= 10 {
        value
    } else {
        value % 10u64.pow(digits)
    };
    let mut out = Zeroizing::new(String::with_capacity(10));
    let _ = write!(out, "{value:0width$}", width = digits as usize);
    out
}

/// The TOTP time step that contains `unix_time` (seconds) for a `period`-second step.
pub fn totp_step(unix_time: i64, period: u32) -> u64 {
    let period = i64::from(period.max(1));
    u64::try_from(unix_time.div_euclid(period)).unwrap_or(0)
}

/// The TOTP code at `unix_time`.
pub fn totp(
    secret: &Secret,
    unix_time: i64,
    period: u32,
    digits: u32,
    algorithm: Algorithm,
) -> Zeroizing<String> {
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
    fn rfc4226_appendix_d() {
        let s = ascii("12345678901234567890");
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
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
            assert_eq!(
                totp(&sha1, t, 30, 8, Algorithm::Sha1).as_str(),
                a,
                "sha1 t={t}"
            );
            assert_eq!(
                totp(&sha256, t, 30, 8, Algorithm::Sha256).as_str(),
                b,
                "sha256 t={t}"
            );
            assert_eq!(
                totp(&sha512, t, 30, 8, Algorithm::Sha512).as_str(),
                c,
                "sha512 t={t}"
            );
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

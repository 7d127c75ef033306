//! One-time recovery (scratch) codes: 8 digits, shown once, stored as salted SHA-256.
//!
//! Codes are random (26.5 bits each) and single-use, and the lockout caps online guessing;
//! a slow hash would make a login with 10 codes cost 10 argon2 runs for little gain.

use crate::model::ScratchHash;
use crate::random;
use data_encoding::BASE64_NOPAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Number of codes `user scratch` makes.
pub const COUNT: usize = 10;
/// Digits in a scratch code (as google-authenticator uses).
pub const DIGITS: usize = 8;

fn digest(salt: &[u8], code: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(salt)
        .chain_update(code.as_bytes())
        .finalize()
        .to_vec()
}

/// Hashes one code with a fresh salt.
pub fn hash(code: &str) -> ScratchHash {
    let salt = random::bytes(16);
    ScratchHash(format!(
        "sha256${}${}",
        BASE64_NOPAD.encode(&salt),
        BASE64_NOPAD.encode(&digest(&salt, code))
    ))
}

/// True when `code` is the one hashed in `stored` (constant time).
pub fn matches(stored: &ScratchHash, code: &str) -> bool {
    let mut parts = stored.0.split('$');
    let (Some("sha256"), Some(salt), Some(want)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(want)) = (
        BASE64_NOPAD.decode(salt.as_bytes()),
        BASE64_NOPAD.decode(want.as_bytes()),
    ) else {
        return false;
    };
    digest(&salt, code).ct_eq(&want).into()
}

/// Makes `COUNT` new random codes; returns them (to show once) with their hashes.
pub fn generate() -> (Vec<Zeroizing<String>>, Vec<ScratchHash>) {
    (0..COUNT)
        .map(|_| {
            let code = Zeroizing::new(format!("{:08}", random::below(100_000_000)));
            let h = hash(&code);
            (code, h)
        })
        .unzip()
}

/// Finds and removes the scratch code `code` from `codes`; true if it was there.
/// Every stored hash is checked, so the position of a match does not show in the timing.
pub fn take(codes: &mut Vec<ScratchHash>, code: &str) -> bool {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut found = None;
    for (i, h) in codes.iter().enumerate() {
        if matches(h, code) && found.is_none() {
            found = Some(i);
        }
    }
    found.map(|i| codes.remove(i)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_works_once() {
        let (codes, mut hashes) = generate();
        assert_eq!(codes.len(), COUNT);
        assert!(codes.iter().all(|c| c.len() == DIGITS));
        assert!(take(&mut hashes, &codes[3]));
        assert!(!take(&mut hashes, &codes[3]));
        assert_eq!(hashes.len(), COUNT - 1);
        assert!(!take(&mut hashes, "12345678") || codes.iter().any(|c| c.as_str() == "12345678"));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash("12345678"), hash("12345678"));
        assert!(matches(&hash("12345678"), "12345678"));
        assert!(!matches(&ScratchHash("md5$x$y".into()), "12345678"));
    }
}

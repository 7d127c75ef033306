//! Users and their tokens, as every store holds them.

use portcullis_otp::{Algorithm, KeyUri, OtpKind, Secret};
use zeroize::Zeroizing;

/// The shortest shared key accepted without an explicit override: 128 bits (RFC 4226 §4, R6).
pub const MIN_SECRET_BYTES: usize = 16;

/// How the first factor (something the user knows) is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum FirstFactor {
    /// No first factor: the one-time code alone (mod_authn_otp's `-` PIN).
    None,
    /// An argon2id PHC string of our own.
    Hash(String),
    /// A literal PIN kept in a users file (mod_authn_otp/pam_oath field 3).
    Pin(Zeroizing<String>),
    /// Checked by the configured external source (htpasswd/htdigest/LDAP), the `+` PIN.
    External,
}

impl FirstFactor {
    /// Whether there is something to know at all. A user without one has proven nothing by
    /// passing the password step, so never gets a one-factor login.
    pub fn exists(&self) -> bool {
        !matches!(self, FirstFactor::None)
    }

    /// A short digest that changes whenever the first factor does (a new password hash, a
    /// new PIN), kept in each session so that a password change ends the sessions made with
    /// the old one. For a PIN it is as sensitive as the PIN: sessions are stored only beside
    /// the directory that holds the PIN itself.
    pub fn fingerprint(&self) -> [u8; 16] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"portcullis first factor\0");
        match self {
            FirstFactor::None => h.update(b"none"),
            FirstFactor::Hash(x) => {
                h.update(b"hash:");
                h.update(x.as_bytes());
            }
            FirstFactor::Pin(p) => {
                h.update(b"pin:");
                h.update(p.as_bytes());
            }
            FirstFactor::External => h.update(b"external"),
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize()[..16]);
        out
    }
}

impl std::fmt::Debug for FirstFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FirstFactor::None => "None",
            FirstFactor::Hash(_) => "Hash(redacted)",
            FirstFactor::Pin(_) => "Pin(redacted)",
            FirstFactor::External => "External",
        })
    }
}

/// The code algorithm of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// HOTP/TOTP (RFC 4226/6238), decimal codes.
    Oath,
    /// Mobile-OTP: MD5 of counter, key and PIN, hex codes.
    Motp,
}

/// Whether a token counts events (button presses) or time steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A counter that advances at each code (HOTP).
    Event,
    /// Steps of this many seconds (TOTP).
    Time(u32),
}

/// One OTP token of a user, with its replay state. `Debug` leaves out the mOTP PIN and
/// the last code.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Code algorithm.
    pub kind: TokenKind,
    /// Event or time based.
    pub step: Step,
    /// The shared key (zeroized on drop, never printed).
    pub secret: Secret,
    /// HMAC hash for OATH tokens.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: u32,
    /// The PIN mixed into mOTP codes (typed into the token, not the password).
    pub motp_pin: Option<Zeroizing<String>>,
    /// Event tokens: the next counter expected.
    pub counter: u64,
    /// Time tokens: known clock offset of the device, in steps.
    pub drift: i64,
    /// Time tokens: the last step accepted; it and earlier steps are never accepted again.
    pub last_step: Option<u64>,
    /// The last code accepted, kept only for linger (reuse by HTTP Basic clients).
    pub last_code: Option<Zeroizing<String>>,
    /// When `last_code` was accepted (unix seconds).
    pub last_used: Option<i64>,
    /// From which client address `last_code` was accepted.
    pub last_ip: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("step", &self.step)
            .field("secret", &self.secret)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("counter", &self.counter)
            .field("drift", &self.drift)
            .field("last_step", &self.last_step)
            .field("last_used", &self.last_used)
            .field("last_ip", &self.last_ip)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A fresh token with no use recorded.
    pub fn new(kind: TokenKind, step: Step, secret: Secret, algorithm: Algorithm, digits: u32) -> Self {
        Token {
            kind,
            step,
            secret,
            algorithm,
            digits,
            motp_pin: None,
            counter: 0,
            drift: 0,
            last_step: None,
            last_code: None,
            last_used: None,
            last_ip: None,
        }
    }

    /// A new token with a random 160-bit key (RFC 4226's recommendation, what authenticator
    /// apps expect), for enrollment and `user add`.
    pub fn generate(step: Step, algorithm: Algorithm, digits: u32) -> Self {
        let secret = Secret::from_bytes(crate::random::bytes(20).to_vec());
        Token::new(TokenKind::Oath, step, secret, algorithm, digits)
    }

    /// A short human description such as `TOTP/30s/6 SHA1`.
    pub fn describe(&self) -> String {
        match (self.kind, self.step) {
            (TokenKind::Oath, Step::Time(p)) => {
                format!("TOTP {}s {} digits {}", p, self.digits, self.algorithm.name())
            }
            (TokenKind::Oath, Step::Event) => format!(
                "HOTP counter {} {} digits {}",
                self.counter,
                self.digits,
                self.algorithm.name()
            ),
            (TokenKind::Motp, Step::Time(p)) => format!("mOTP {}s {} digits", p, self.digits),
            (TokenKind::Motp, Step::Event) => format!("mOTP event {} digits", self.digits),
        }
    }

    /// The otpauth:// description of this token for an authenticator app, if it has one
    /// (mOTP tokens are not set up by URI).
    pub fn key_uri(&self, account: &str, issuer: &str) -> Option<KeyUri> {
        if self.kind != TokenKind::Oath {
            return None;
        }
        let (kind, period) = match self.step {
            Step::Time(p) => (OtpKind::Totp, p),
            Step::Event => (OtpKind::Hotp, 30),
        };
        Some(KeyUri {
            kind,
            account: account.to_string(),
            issuer: (!issuer.is_empty()).then(|| issuer.to_string()),
            secret: self.secret.clone(),
            algorithm: self.algorithm,
            digits: self.digits,
            period,
            counter: self.counter,
        })
    }

    /// Builds a token from a key URI.
    pub fn from_key_uri(uri: &KeyUri) -> Self {
        let step = match uri.kind {
            OtpKind::Totp => Step::Time(uri.period),
            OtpKind::Hotp => Step::Event,
        };
        let mut t = Token::new(TokenKind::Oath, step, uri.secret.clone(), uri.algorithm, uri.digits);
        t.counter = uri.counter;
        t
    }
}

/// A salted hash of one unused recovery (scratch) code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchHash(pub String);

/// A per-device password for an HTTP Basic client that cannot send a one-time code
/// (mod_authn_otp's FallThrough use). Only its argon2id hash is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// What the device is, e.g. `phone-caldav`.
    pub label: String,
    /// argon2id PHC string.
    pub hash: String,
    /// When it was made (unix seconds).
    pub created: i64,
}

impl std::fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppPassword({:?}, created {})", self.label, self.created)
    }
}

/// A registered passkey or security key (WebAuthn credential), as the portal verifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passkey {
    /// The credential ID the authenticator chose (unique across all users).
    pub id: Vec<u8>,
    /// What the person calls it ("laptop", "YubiKey 5").
    pub label: String,
    /// The verifier's full record of the credential (public key, algorithm, flags), as
    /// the verifier encodes it; opaque to the core.
    pub data: String,
    /// The signature counter last accepted (0: the authenticator keeps none).
    pub counter: u32,
    /// The credential may be synced or backed up (a passkey in a password manager).
    pub backup_eligible: bool,
    /// It was backed up when last seen.
    pub backup_state: bool,
    /// It can sign in without a name (a discoverable credential, for passwordless login).
    pub discoverable: bool,
    /// When it was registered (unix seconds).
    pub created: i64,
    /// When it last signed in (unix seconds).
    pub last_used: Option<i64>,
}

impl std::fmt::Debug for Passkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passkey({:?}, counter {})", self.label, self.counter)
    }
}

impl Passkey {
    /// The credential ID as unpadded base64url (how WebAuthn writes it).
    pub fn id_text(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.id)
    }
}

/// A person who may authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name (unique).
    pub name: String,
    /// How the password/PIN is checked.
    pub first_factor: FirstFactor,
    /// Group names, for access rules.
    pub groups: Vec<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// OTP tokens; a code from any of them is accepted.
    pub tokens: Vec<Token>,
    /// Unused scratch codes, hashed.
    pub scratch: Vec<ScratchHash>,
    /// App passwords for Basic clients that cannot send a code.
    pub app_passwords: Vec<AppPassword>,
    /// Approves logins with a push ([duo]); the Duo name comes from `[duo] username`.
    pub duo: bool,
    /// Passkeys and security keys (portal logins only).
    pub passkeys: Vec<Passkey>,
    /// Consecutive wrong codes since the last success.
    pub failures: u32,
    /// Locked by an administrator (`user lock`).
    pub locked: bool,
}

impl User {
    /// A user with no token, no failures and the given first factor.
    pub fn new(name: &str, first_factor: FirstFactor) -> Self {
        User {
            name: name.to_string(),
            first_factor,
            groups: Vec::new(),
            display_name: None,
            email: None,
            tokens: Vec::new(),
            scratch: Vec::new(),
            app_passwords: Vec::new(),
            duo: false,
            passkeys: Vec::new(),
            failures: 0,
            locked: false,
        }
    }
}

/// Checks a user name: 1–64 printable characters without spaces, `:` or `#` (they would
/// break the users files, htpasswd and log lines).
pub fn valid_user_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a user name has 1 to 64 characters");
    }
    if name.starts_with('-') {
        return Err("a user name cannot start with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '#' | '"' | '\\' | '='))
    {
        return Err("a user name cannot contain spaces, control characters or : # \" \\ =");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_that_would_break_a_file_are_refused() {
        assert_eq!(valid_user_name("alice"), Ok(()));
        assert_eq!(valid_user_name(&"a".repeat(64)), Ok(()));
        for bad in [
            "",
            &"a".repeat(65),
            "-x",
            "a b",
            "a\u{7}b",
            "a:b",
            "a#b",
            "a\"b",
            "a\\b",
            "a=b",
        ] {
            assert!(valid_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_describe_themselves_and_hide_their_secret() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        let totp = Token::new(TokenKind::Oath, Step::Time(30), secret.clone(), Algorithm::Sha1, 6);
        assert_eq!(totp.describe(), "TOTP 30s 6 digits SHA1");
        let mut hotp = Token::new(TokenKind::Oath, Step::Event, secret.clone(), Algorithm::Sha256, 8);
        hotp.counter = 4;
        assert_eq!(hotp.describe(), "HOTP counter 4 8 digits SHA256");
        let motp = Token::new(TokenKind::Motp, Step::Time(10), secret.clone(), Algorithm::Sha1, 6);
        assert_eq!(motp.describe(), "mOTP 10s 6 digits");
        let d = format!("{totp:?}");
        assert!(
            d.starts_with("Token { kind: Oath") && d.contains("redacted") && !d.contains("3132"),
            "{d}"
        );
        for (ff, text) in [
            (FirstFactor::None, "None"),
            (FirstFactor::Hash("$argon2id$x".into()), "Hash(redacted)"),
            (FirstFactor::Pin(Zeroizing::new("1234".into())), "Pin(redacted)"),
            (FirstFactor::External, "External"),
        ] {
            assert_eq!(format!("{ff:?}"), text);
            assert_eq!(ff.exists(), text != "None");
        }
        let app = AppPassword {
            label: "phone".into(),
            hash: "$argon2id$secret".into(),
            created: 7,
        };
        assert_eq!(format!("{app:?}"), "AppPassword(\"phone\", created 7)");
    }

    #[test]
    fn only_oath_tokens_have_a_key_uri() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        let mut hotp = Token::new(TokenKind::Oath, Step::Event, secret.clone(), Algorithm::Sha1, 6);
        hotp.counter = 9;
        let uri = hotp.key_uri("alice", "").unwrap();
        assert_eq!((uri.kind, uri.counter, uri.issuer), (OtpKind::Hotp, 9, None));
        let totp = Token::new(TokenKind::Oath, Step::Time(60), secret.clone(), Algorithm::Sha1, 6);
        let uri = totp.key_uri("alice", "Example").unwrap();
        assert_eq!(
            (uri.kind, uri.period, uri.issuer.as_deref()),
            (OtpKind::Totp, 60, Some("Example"))
        );
        let motp = Token::new(TokenKind::Motp, Step::Time(10), secret, Algorithm::Sha1, 6);
        assert!(motp.key_uri("alice", "Example").is_none());
    }
}

//! One-time passwords for portcullis: HOTP (RFC 4226), TOTP (RFC 6238), mOTP, secrets and
//! `otpauth://` key URIs. Pure: no I/O and no clock; time is always a parameter.

mod code;
mod generate;
mod secret;
pub mod uri;
mod verify;

pub use code::{CodeFormat, is_well_formed};
pub use generate::{Algorithm, Hotp, hotp, motp, totp, totp_step};
pub use secret::{Secret, SecretError};
pub use uri::{KeyUri, OtpKind, UriError};
pub use verify::{Matched, Verdict, Window, oath_matcher, text_matcher, verify_counter, verify_time};

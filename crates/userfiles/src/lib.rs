//! Format-level readers and writers for the OTP users files other tools already keep.
//!
//! Modules:
//! * [`otp_users`] — mod_authn_otp's users file and pam_oath's `users.oath`.
//! * [`google_auth`] — `~/.google_authenticator` (google-authenticator-libpam).
//! * [`apache_2fa`] — apache_2fa's `tokens.json`.
//! * [`atomic`] — lock files and crash-safe replacement, reusable by other stores.
//!
//! This crate depends on no other portcullis crate: secrets are plain
//! `Zeroizing<Vec<u8>>` and every enum is its own.
#![forbid(unsafe_code)]

pub mod apache_2fa;
pub mod atomic;
mod b32;
mod civil;
pub mod error;
pub mod google_auth;
pub mod otp_users;

pub use error::{Error, UpdateError};

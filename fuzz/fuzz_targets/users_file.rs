//! mod_authn_otp and pam_oath users files: parsing never panics, and an unchanged file is
//! written back byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_userfiles::otp_users::{Dialect, parse};
use std::path::Path;

fuzz_target!(|data: &str| {
    for dialect in [Dialect::ModAuthnOtp, Dialect::PamOath] {
        if let Ok(file) = parse(data, dialect, Path::new("users")) {
            assert_eq!(file.render(), data);
        }
    }
});

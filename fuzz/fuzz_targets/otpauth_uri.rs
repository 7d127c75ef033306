//! otpauth:// URIs from QR codes and users: parse never panics, and what parses formats back
//! to a URI that parses to the same key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_otp::KeyUri;

fuzz_target!(|data: &str| {
    if let Ok(k) = KeyUri::parse(data) {
        let again = KeyUri::parse(&k.to_uri()).expect("our own URI parses");
        assert_eq!(again, k);
    }
});

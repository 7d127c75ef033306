//! apache_2fa tokens.json: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_userfiles::apache_2fa::parse;
use std::path::Path;

fuzz_target!(|data: &str| {
    let _ = parse(data, Path::new("tokens.json"));
});

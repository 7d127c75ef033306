//! portcullis.toml: loading never panics, whatever the file says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_core::Config;
use std::path::Path;

fuzz_target!(|data: &str| {
    let _ = Config::parse(data, Path::new("portcullis.toml"));
});

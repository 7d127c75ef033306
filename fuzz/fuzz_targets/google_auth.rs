//! ~/.google_authenticator files: parsing never panics; parse → render → parse is stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_userfiles::google_auth::parse;
use std::path::Path;

fuzz_target!(|data: &str| {
    if let Ok(file) = parse(data, Path::new(".google_authenticator")) {
        let text = file.render();
        let again = parse(&text, Path::new(".google_authenticator")).expect("rendered file parses");
        assert_eq!(again.render().as_str(), text.as_str());
    }
});

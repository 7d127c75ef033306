//! Return URLs from the login form: checking never panics, and anything accepted stays on
//! the configured domains.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_core::redirect::ReturnTargets;

fuzz_target!(|data: &str| {
    let targets = ReturnTargets::new(&["app.example.com".to_string(), "*.example.org".to_string()]).expect("patterns");
    if let Some(url) = targets.check(data) {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':', '?', '#']).next())
            .unwrap_or("");
        assert!(host == "app.example.com" || host.ends_with(".example.org"), "{url}");
    }
});

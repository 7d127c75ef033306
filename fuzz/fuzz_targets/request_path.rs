//! Request paths from the network: normalising never panics and is idempotent, and the
//! result has no segment that could climb out of a bypass rule.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_core::access::normalize_path;

fuzz_target!(|data: &str| {
    if let Ok(p) = normalize_path(data) {
        assert!(p.starts_with('/'));
        assert!(!p.contains("//") && !p.contains("/../") && !p.ends_with("/..") && !p.contains(';'));
        assert_eq!(normalize_path(&p).as_deref(), Ok(p.as_str()));
    }
});

//! Cookie headers from the network: parsing never panics, a value found holds no `;`, and
//! the header handed to an app keeps none of the gateway's cookies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_core::cookie::{find, without};

const OURS: [&str; 2] = ["portcullis_session", "portcullis_csrf"];

fuzz_target!(|data: &str| {
    let headers: Vec<&str> = data.split('\n').collect();
    if let Some(v) = find(headers.iter().copied(), "portcullis_session") {
        assert!(!v.contains(';'), "{v:?}");
    }
    let stripped = without(headers.iter().copied(), &OURS);
    if let Some(s) = &stripped {
        for name in OURS {
            assert_eq!(find([s.as_str()], name), None, "{name} survived in {s:?}");
        }
        // Stripping again changes nothing.
        assert_eq!(without([s.as_str()], &OURS).as_deref(), Some(s.as_str()));
    }
});

//! FastCGI records from mod_authnz_fcgi's connection: parsing never panics, and the input
//! fed in two pieces (as a socket may deliver it) gives exactly what the whole gives.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_fastcgi::{FcgiError, MAX_PARAMS, MAX_PARAMS_BYTES, Parser, parse_request};

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data);
    if let Ok(req) = &whole {
        assert!(req.id != 0);
        assert!(req.params.len() <= MAX_PARAMS);
        let bytes: usize = req.params.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= MAX_PARAMS_BYTES);
    }
    // The first byte picks where to cut.
    let cut = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut parser = Parser::new();
    let pieces = match parser.feed(&data[..cut]) {
        Ok(Some(req)) => Ok(req),
        Ok(None) => parser.feed(&data[cut..]).and_then(|r| r.ok_or(FcgiError::Truncated)),
        Err(e) => Err(e),
    };
    assert_eq!(whole, pieces);
});

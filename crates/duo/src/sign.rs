//! Duo's request signing (Auth API, signature version 2): the canonical request, its
//! HMAC-SHA512 under the secret key, and the `Authorization` header that carries it.

use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What Duo leaves unescaped: `A-Za-z0-9-._~` (RFC 3986 unreserved), as Python's
/// `quote(s, '~')` in Duo's own client does.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one key or value the way Duo signs it.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The parameters as Duo signs and sends them: each key and value encoded, sorted by key
/// then value, joined by `&` (the form body of a POST, the query of a GET).
pub fn canonical_params(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request of signature version 2: date, method (upper case), host (lower
/// case), path and parameters, one a line.
pub fn canonical(date: &str, method: &str, host: &str, path: &str, params: &[(&str, &str)]) -> String {
    [
        date.to_string(),
        method.to_ascii_uppercase(),
        host.to_ascii_lowercase(),
        path.to_string(),
        canonical_params(params),
    ]
    .join("\n")
}

/// The hex HMAC-SHA512 of `canonical` under `skey`.
pub fn signature(skey: &[u8], canonical: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC takes a key of any length
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(skey).expect("HMAC takes any key length");
    mac.update(canonical.as_bytes());
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// The `Authorization` header value: HTTP Basic of the integration key and the signature.
pub fn authorization(ikey: &str, skey: &[u8], canonical: &str) -> String {
    let pair = format!("{ikey}:{}", signature(skey, canonical));
    format!("Basic {}", data_encoding::BASE64.encode(pair.as_bytes()))
}

/// An RFC 2822 date as Duo's clients send it (`Tue, 21 Aug 2012 17:29:18 +0000`), for
/// `unix` seconds.
pub fn rfc2822(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_encoded_like_pythons_quote_and_sorted() {
        assert_eq!(encode("a b+c/~-._é"), "a%20b%2Bc%2F~-._%C3%A9");
        assert_eq!(
            canonical_params(&[("username", "b"), ("factor", "push"), ("a", "2"), ("a", "1")]),
            "a=1&a=2&factor=push&username=b"
        );
        assert_eq!(canonical_params(&[]), "");
    }

    #[test]
    fn the_canonical_request_has_five_lines_in_duos_case_rules() {
        let c = canonical(
            "Fri, 07 Dec 2012 17:18:00 -0000",
            "PoSt",
            "foO.BAr52.cOm",
            "/Foo/BaR2/qux",
            &[("x", "1")],
        );
        assert_eq!(
            c,
            "Fri, 07 Dec 2012 17:18:00 -0000\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\nx=1"
        );
    }

    #[test]
    fn dates_are_rfc_2822_in_utc() {
        assert_eq!(rfc2822(1_345_570_158), "Tue, 21 Aug 2012 17:29:18 +0000");
    }
}

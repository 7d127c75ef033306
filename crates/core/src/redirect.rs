//! Return-URL validation: after login the person lands on the page first asked for, but
//! only if it is on one of our domains, so the portal cannot be used as an open redirect.

use crate::access::{HostPattern, RuleError};
use url::Url;

/// Longer return URLs are refused: no page of ours needs one, and they bloat cookies and logs.
pub const MAX_RETURN_URL: usize = 4096;

/// The domains a return URL may point to: exact hosts or `*.example.com` patterns, matched
/// exactly as the access rules match them.
#[derive(Debug, Clone)]
pub struct ReturnTargets {
    patterns: Vec<HostPattern>,
}

impl ReturnTargets {
    /// Compiles the patterns; the error names the first bad one as `protected_domains[N]` (from 1).
    pub fn new(patterns: &[String]) -> Result<Self, RuleError> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                HostPattern::parse(p)
                    .map_err(|reason| RuleError::invalid(format!("protected_domains[{}]", i + 1), p, reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(ReturnTargets { patterns })
    }

    /// `Some(url)`, normalised, only if `raw` is an absolute http(s) URL whose host is allowed;
    /// otherwise `None` (the caller uses its configured default).
    pub fn check(&self, raw: &str) -> Option<String> {
        if raw.len() > MAX_RETURN_URL || raw.chars().any(|c| c.is_control() || c.is_whitespace()) || raw.contains('\\')
        {
            return None;
        }
        // Require the literal `scheme://`: the URL parser would also accept `https:evil.com` or
        // `https:///evil.com`, and browsers disagree on such forms.
        let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
        let rest = if lower.starts_with("https://") {
            &raw[8..]
        } else if lower.starts_with("http://") {
            &raw[7..]
        } else {
            return None;
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        // No `@` (userinfo hides the real host) and no `%` (hosts never need escapes; `%0a`,
        // `%5c` or `%2e` there only serve to confuse parsers).
        if authority.is_empty() || authority.contains(['@', '%']) {
            return None;
        }
        let url = Url::parse(raw).ok()?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?;
        if self.patterns.iter().any(|p| p.matches(host)) {
            Some(url.as_str().to_string())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn targets() -> ReturnTargets {
        ReturnTargets::new(&[
            "good.example.com".to_string(),
            "*.apps.example.com".to_string(),
            "192.0.2.10".to_string(),
            "[2001:db8::1]".to_string(),
        ])
        .unwrap()
    }

    #[test]
    fn accepts_our_urls_normalised() {
        let t = targets();
        for (raw, want) in [
            ("https://good.example.com", "https://good.example.com/"),
            ("https://GOOD.Example.com/", "https://good.example.com/"),
            ("HTTPS://good.example.com/a", "https://good.example.com/a"),
            (
                "http://good.example.com:8080/x/y?q=1&r=a%20b#frag",
                "http://good.example.com:8080/x/y?q=1&r=a%20b#frag",
            ),
            ("https://good.example.com:443/", "https://good.example.com/"),
            (
                "https://wiki.apps.example.com/page",
                "https://wiki.apps.example.com/page",
            ),
            ("https://a.b.apps.example.com/", "https://a.b.apps.example.com/"),
            (
                "https://good.example.com/p?next=https://evil.com",
                "https://good.example.com/p?next=https://evil.com",
            ),
            ("https://good.example.com/%0d%0a", "https://good.example.com/%0d%0a"),
            ("https://good.example.com/a/../b", "https://good.example.com/b"),
            ("https://192.0.2.10/", "https://192.0.2.10/"),
            ("https://[2001:db8:0::1]:8443/", "https://[2001:db8::1]:8443/"),
        ] {
            assert_eq!(t.check(raw).as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn a_return_url_may_be_as_long_as_the_limit_and_no_longer() {
        let base = "https://good.example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_RETURN_URL - base.len()));
        assert_eq!(targets().check(&at_limit), Some(at_limit.clone()));
        assert_eq!(targets().check(&format!("{at_limit}a")), None);
    }

    #[test]
    fn refuses_everything_else() {
        let t = targets();
        let long = format!("https://good.example.com/{}", "a".repeat(MAX_RETURN_URL));
        for raw in [
            "",
            "/",
            "/local/page",
            "page",
            "?next=x",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%09/evil.com",
            "/%5cevil.com",
            "javascript:alert(1)",
            "JavaScript://good.example.com/%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "ftp://good.example.com/",
            "https:good.example.com",
            "https:/good.example.com",
            "https:///good.example.com",
            "https:\\\\good.example.com",
            "https://good.example.com\\@evil.com",
            "https://good.example.com@evil.com",
            "https://user:pw@good.example.com/",
            "https://@good.example.com/",
            "https://good.example.com%40evil.com/",
            "https://good.example.com.evil/",
            "https://good.example.com.evil.com/",
            "https://evilgood.example.com/",
            "https://good.example.com%2eevil.com/",
            "https://good.example.com%0d%0aSet-Cookie:x/",
            "https://good.example.com%0a/",
            "https://good.example.com%09/",
            "https://good.example.com%5c.evil.com/",
            "https://good.example.com/a\r\nSet-Cookie: x",
            "https://good.example.com/a b",
            "https://good.example.com/\u{a0}",
            " https://good.example.com/",
            "https://good.example.com\t/",
            "https://good.example.com/\u{0}",
            "https://apps.example.com/",
            "https://xapps.example.com/",
            "https://wiki.apps.example.com.evil/",
            "https://example.com/",
            "https://good.example.com./",
            "https://192.0.2.11/",
            "https://[::1]/",
            "https://127.0.0.1/",
            &long,
        ] {
            assert_eq!(t.check(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn ip_hosts_only_when_listed_and_never_by_wildcard() {
        // `3221225994` is 192.0.2.10 written as one number: the URL parser normalises it.
        let t = targets();
        assert_eq!(t.check("https://3221225994/").as_deref(), Some("https://192.0.2.10/"));
        let w = ReturnTargets::new(&["*.example.com".to_string()]).unwrap();
        assert_eq!(w.check("https://192.0.2.10/"), None);
        assert_eq!(w.check("https://example.com/"), None);
        assert_eq!(
            w.check("https://a.example.com/").as_deref(),
            Some("https://a.example.com/")
        );
    }

    #[test]
    fn unicode_hosts_compare_after_idna() {
        let t = ReturnTargets::new(&["bücher.example".to_string()]).unwrap();
        assert_eq!(
            t.check("https://BÜCHER.example/x").as_deref(),
            Some("https://xn--bcher-kva.example/x")
        );
        assert_eq!(
            t.check("https://xn--bcher-kva.example/").as_deref(),
            Some("https://xn--bcher-kva.example/")
        );
        // A fullwidth dot becomes '.', so this is a different, unlisted host.
        assert_eq!(t.check("https://bücher.example\u{ff0e}evil.com/"), None);
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = ReturnTargets::new(&["ok.example.com".into(), "*.*.example.com".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("protected_domains[2]: \"*.*.example.com\":"), "{e}");
    }

    /// URLs built from good and bad pieces, so that many are accepted and many nearly so.
    fn url_like() -> impl Strategy<Value = String> {
        let scheme = prop_oneof![
            4 => prop::sample::select(vec!["https://", "http://", "HTTPS://"]),
            1 => prop::sample::select(vec!["https:", "https:/", "https:///", "//", "/\\", "javascript:", ""]),
        ];
        let host = prop_oneof![
            2 => prop::sample::select(vec![
                "good.example.com",
                "GOOD.example.com",
                "wiki.apps.example.com",
                "192.0.2.10",
                "[2001:db8::1]",
            ]),
            1 => prop::sample::select(vec![
                "apps.example.com",
                "good.example.com.evil",
                "evilgood.example.com",
                "good.example.com@evil",
                "evil@good.example.com",
                "good.example.com%2eevil",
                "good.example.com\\evil",
                "[::1]",
                "bücher.example",
            ]),
        ];
        let port = prop::option::of(prop::sample::select(vec![":443", ":8080", ":0", ":99999", ":x"]));
        (scheme, host, port, "(/|\\?|#|\\\\|%5c|%0a|[a-z]|@|\\.\\.| ){0,6}")
            .prop_map(|(s, h, p, rest)| format!("{s}{h}{}{rest}", p.unwrap_or("")))
    }

    proptest! {
        #[test]
        fn check_never_panics_and_returns_only_allowed_hosts(
            raw in prop_oneof![any::<String>(), "\\PC{0,60}", url_like()]
        ) {
            let t = targets();
            if let Some(out) = t.check(&raw) {
                let url = Url::parse(&out).unwrap();
                prop_assert!(matches!(url.scheme(), "http" | "https"));
                prop_assert!(url.username().is_empty() && url.password().is_none());
                let host = url.host_str().unwrap();
                prop_assert!(t.patterns.iter().any(|p| p.matches(host)), "{raw:?} -> {out:?}");
                prop_assert!(!out.contains(['\\', ' ', '\r', '\n']), "{raw:?} -> {out:?}");
                prop_assert_eq!(t.check(&out), Some(out.clone()));
            }
        }
    }
}

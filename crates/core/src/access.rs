//! Access rules: which policy (bypass, deny, one or two factors) a request needs, decided
//! by ordered `[[access.rules]]` where the first match wins, on a path normalised so that
//! encoding tricks cannot make `/admin` look like `/public/…`.

use ipnet::IpNet;
use regex::Regex;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;

/// What the gateway must require for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Let the request through without asking who it is.
    Bypass,
    /// Refuse the request whoever asks.
    Deny,
    /// A password (or an existing session) is enough.
    OneFactor,
    /// A password and a one-time code are required.
    TwoFactor,
}

impl Policy {
    /// The name used in `portcullis.toml`, logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::Deny => "deny",
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
        }
    }

    /// Whether this policy makes the person authenticate.
    pub fn requires_login(self) -> bool {
        matches!(self, Policy::OneFactor | Policy::TwoFactor)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The object of a request, as every adapter builds it.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// HTTP method as received (compared case-insensitively).
    pub method: &'a str,
    /// The `Host` the request was addressed to; a port and a trailing dot are ignored.
    pub host: &'a str,
    /// The raw request path; may contain `%xx` escapes and a `?query`.
    pub path: &'a str,
    /// The client's address (see [`crate::client::TrustedProxies::client_ip`]).
    pub client_ip: IpAddr,
}

/// Who is asking, once known.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user name as stored in the directory.
    pub user: &'a str,
    /// The groups the user belongs to.
    pub groups: &'a [String],
}

/// The answer to "what does this request need?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Apply this policy.
    Policy(Policy),
    /// An unknown subject hit a rule that depends on users or groups: log in first, then ask again.
    NeedsSubject,
}

/// One rule as written in `portcullis.toml` `[[access.rules]]`. Every list may be a single
/// string or an array; an empty (or absent) list matches anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Host names: `app.example.com`, or `*.example.com` for any subdomain (not the domain itself).
    #[serde(default, deserialize_with = "one_or_many")]
    pub domain: Vec<String>,
    /// Regular expressions matched against the normalised path, anchored as written
    /// (`^/static/`). Case-sensitive, as paths are: `/Admin/` is not `/admin/`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub path: Vec<String>,
    /// Match `path` ignoring case (for apps on case-insensitive file systems, or that route
    /// `/Admin` like `/admin`); the same as starting each expression with `(?i)`.
    #[serde(default)]
    pub path_ignore_case: bool,
    /// HTTP methods, case-insensitive.
    #[serde(default, deserialize_with = "one_or_many")]
    pub methods: Vec<String>,
    /// Client networks: CIDRs (`10.0.0.0/8`) or single addresses.
    #[serde(default, deserialize_with = "one_or_many")]
    pub networks: Vec<String>,
    /// User names; the rule then applies only to these users.
    #[serde(default, deserialize_with = "one_or_many")]
    pub users: Vec<String>,
    /// Group names; the rule then applies only to members of one of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub groups: Vec<String>,
    /// What a matching request needs.
    pub policy: Policy,
}

/// Accepts `key = "x"` as well as `key = ["x", "y"]`, because a rule usually names one thing.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visitor)
}

/// A rule, a return-URL domain or a trusted proxy that cannot be used, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// One value is malformed.
    #[error("{key}: {value:?}: {reason}")]
    Invalid {
        /// Where it was written, e.g. `access.rules[3].path` (rules counted from 1).
        key: String,
        /// The value found.
        value: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

impl RuleError {
    pub(crate) fn invalid(key: impl Into<String>, value: &str, reason: impl Into<String>) -> Self {
        RuleError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// An exact host or a `*.domain` pattern, lowercase ASCII (IDNA applied), shared with
/// [`crate::redirect`] so that rules and return URLs agree on what a host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// The whole host; IPv6 literals are kept in brackets, as `url::Url::host_str` gives them.
    Exact(String),
    /// `.example.com`: any host ending with it and having at least one label before it.
    Subdomains(String),
}

impl HostPattern {
    /// Parses `app.example.com`, `*.example.com`, `1.2.3.4`, `::1` or `[::1]`.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        const HELP: &str = "use a host name (app.example.com), *.example.com for its subdomains, or an IP address";
        let s = raw.strip_suffix('.').unwrap_or(raw);
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HELP.into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostPattern::Exact(host_of_ip(ip)));
        }
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.contains('*') {
            return Err(format!(
                "'*' is only allowed as the first label (*.example.com); {HELP}"
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(format!("write the host without a port; {HELP}"));
        }
        // The URL host parser applies IDNA and lowercasing, exactly as it will for return URLs.
        match url::Host::parse(name) {
            Ok(url::Host::Domain(d)) if !d.is_empty() && !d.contains("..") => Ok(if wildcard {
                HostPattern::Subdomains(format!(".{d}"))
            } else {
                HostPattern::Exact(d)
            }),
            Ok(url::Host::Ipv4(ip)) if !wildcard => Ok(HostPattern::Exact(ip.to_string())),
            Ok(url::Host::Ipv6(ip)) if !wildcard => Ok(HostPattern::Exact(format!("[{ip}]"))),
            Ok(_) if wildcard => Err(format!(
                "a wildcard needs a domain name after '*.', not an address; {HELP}"
            )),
            Ok(_) => Err(HELP.into()),
            Err(e) => Err(format!("{e}; {HELP}")),
        }
    }

    /// Whether a normalised host (lowercase, no port, no trailing dot) is covered.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(e) => host == e,
            HostPattern::Subdomains(suffix) => {
                // Addresses have no subdomains: `*.3.4` must never cover `1.2.3.4`.
                if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
                    return false;
                }
                host.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.ends_with('.'))
            }
        }
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A request's `Host` header as patterns see it: lowercase, without port or one trailing dot.
fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: canonicalise the address so `[::0001]` equals `[::1]`.
        let inside = rest.split_once(']').map_or(rest, |(a, _)| a);
        return match inside.parse::<IpAddr>() {
            Ok(ip) => host_of_ip(ip),
            Err(_) => raw.to_ascii_lowercase(),
        };
    }
    let without_port = match raw.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    if let Ok(ip) = without_port.parse::<IpAddr>() {
        return host_of_ip(ip);
    }
    without_port
        .strip_suffix('.')
        .unwrap_or(without_port)
        .to_ascii_lowercase()
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address; an IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`) becomes the IPv4 network, as client addresses are compared as IPv4.
pub(crate) fn parse_network(raw: &str) -> Result<IpNet, String> {
    let s = raw.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err("use a CIDR (10.0.0.0/8, 2001:db8::/32) or a single IP address".into()),
        },
    };
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(n.trunc()));
    }
    Ok(net.trunc())
}

/// A compiled rule.
#[derive(Debug)]
struct Rule {
    domains: Vec<HostPattern>,
    paths: Vec<Regex>,
    methods: Vec<String>,
    networks: Vec<IpNet>,
    users: Vec<String>,
    groups: Vec<String>,
    policy: Policy,
}

impl Rule {
    fn compile(n: usize, c: &RuleConfig) -> Result<Rule, RuleError> {
        let key = |field: &str| format!("access.rules[{n}].{field}");
        let domains = c
            .domain
            .iter()
            .map(|d| HostPattern::parse(d).map_err(|reason| RuleError::invalid(key("domain"), d, reason)))
            .collect::<Result<_, _>>()?;
        let paths = c
            .path
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .case_insensitive(c.path_ignore_case)
                    .build()
                    .map_err(|e| RuleError::invalid(key("path"), p, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let methods = c
            .methods
            .iter()
            .map(|m| {
                // RFC 9110 token characters, so a typo like "GET POST" is caught here.
                let ok = !m.is_empty()
                    && m.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if ok {
                    Ok(m.to_ascii_uppercase())
                } else {
                    Err(RuleError::invalid(
                        key("methods"),
                        m,
                        "use one HTTP method per entry (GET, POST, PROPFIND…)",
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        let networks = c
            .networks
            .iter()
            .map(|s| parse_network(s).map_err(|reason| RuleError::invalid(key("networks"), s, reason)))
            .collect::<Result<_, _>>()?;
        for (field, list) in [("users", &c.users), ("groups", &c.groups)] {
            if let Some(bad) = list.iter().find(|s| s.trim().is_empty() || s.trim() != s.as_str()) {
                return Err(RuleError::invalid(
                    key(field),
                    bad,
                    "names must be non-empty, without surrounding spaces",
                ));
            }
        }
        Ok(Rule {
            domains,
            paths,
            methods,
            networks,
            users: c.users.clone(),
            groups: c.groups.clone(),
            policy: c.policy,
        })
    }

    fn matches_host(&self, host: &str) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| d.matches(host))
    }

    /// Everything but users and groups.
    fn matches_object(&self, host: &str, path: &str, r: &Resource) -> bool {
        let ip = r.client_ip.to_canonical();
        self.matches_host(host)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(r.method)))
            && (self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&ip)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.is_match(path)))
    }

    fn has_subject_criteria(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty()
    }

    fn matches_subject(&self, s: &Subject) -> bool {
        self.users.iter().any(|u| u == s.user) || self.groups.iter().any(|g| s.groups.contains(g))
    }

    /// Whether the rule matches every request for the host, so later rules never see it.
    fn covers_whole_host(&self) -> bool {
        self.paths.is_empty() && self.methods.is_empty() && self.networks.is_empty() && !self.has_subject_criteria()
    }
}

/// The ordered rules and the default policy, compiled once at start-up.
#[derive(Debug)]
pub struct AccessControl {
    rules: Vec<Rule>,
    default_policy: Policy,
}

impl AccessControl {
    /// Compiles the rules; the error names the first bad value as `access.rules[N].field`.
    pub fn new(rules: &[RuleConfig], default_policy: Policy) -> Result<Self, RuleError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, c)| Rule::compile(i + 1, c))
            .collect::<Result<_, _>>()?;
        Ok(AccessControl { rules, default_policy })
    }

    /// The policy when no rule matches.
    pub fn default_policy(&self) -> Policy {
        self.default_policy
    }

    /// The policy for a request: `Ok(decision)`; or `Err(PathError)` when the path cannot be
    /// normalised safely (the caller answers 400).
    pub fn policy_for(&self, r: &Resource, subject: Option<&Subject>) -> Result<RuleOutcome, PathError> {
        // Normalise even when no rule looks at paths: a path we refuse must not reach the upstream.
        let path = normalized(r.path)?;
        if self.rules.is_empty() {
            return Ok(RuleOutcome::Policy(self.default_policy));
        }
        let host = normalize_host(r.host);
        for rule in &self.rules {
            if !rule.matches_object(&host, &path, r) {
                continue;
            }
            if rule.has_subject_criteria() {
                match subject {
                    None => return Ok(RuleOutcome::NeedsSubject),
                    Some(s) if !rule.matches_subject(s) => continue,
                    Some(_) => {}
                }
            }
            return Ok(RuleOutcome::Policy(rule.policy));
        }
        Ok(RuleOutcome::Policy(self.default_policy))
    }

    /// Whether any rule or the default can ever ask for a login on this host (it is protected).
    /// Errs on the side of `true`: only a rule that covers the whole host stops the search.
    pub fn protects(&self, host: &str) -> bool {
        let host = normalize_host(host);
        for rule in self.rules.iter().filter(|r| r.matches_host(&host)) {
            // A rule on users or groups makes an unknown person log in (`NeedsSubject`).
            if rule.policy.requires_login() || rule.has_subject_criteria() {
                return true;
            }
            if rule.covers_whole_host() {
                return false;
            }
        }
        self.default_policy.requires_login()
    }
}

/// Why a request path was refused; the caller answers 400 and logs this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty or does not begin with `/` (e.g. an absolute URL or `*`).
    #[error("the request path does not start with '/'; adapters must pass the path only")]
    NotAbsolute,
    /// A control character, raw or percent-encoded.
    #[error("the request path contains a control character")]
    Control,
    /// `%00`.
    #[error("the request path contains an encoded NUL (%00)")]
    Nul,
    /// `%2f`: an upstream may or may not treat it as a separator, so rules cannot be trusted.
    #[error("the request path contains an encoded slash (%2f)")]
    EncodedSlash,
    /// `%5c`: some upstreams treat a backslash as a separator.
    #[error("the request path contains an encoded backslash (%5c)")]
    EncodedBackslash,
    /// A raw `\`, a separator on Windows upstreams.
    #[error("the request path contains a backslash")]
    Backslash,
    /// `%` not followed by two hex digits.
    #[error("the request path has an invalid percent escape ('%' must be followed by two hex digits)")]
    BadEscape,
    /// `%25xx`: an escape that decodes to another escape, which a double-decoding upstream would resolve.
    #[error("the request path is percent-encoded twice (%25 followed by an escape)")]
    DoubleEncoded,
    /// The decoded bytes are not UTF-8.
    #[error("the request path does not decode to UTF-8")]
    NotUtf8,
    /// `..` would climb above `/`.
    #[error("the request path climbs above the root with '..'")]
    AboveRoot,
}

/// Normalises a raw request path for matching: drops `?query` and `#fragment`, decodes
/// `%xx`, drops `;params` from each segment, collapses `//`, resolves `.` and `..`.
///
/// Refuses what an upstream could read differently from us (encoded `/` or `\`, `%00`,
/// control characters, bad or double escapes, `..` above the root). In the result `%`, `?`
/// and `#` stay encoded (`%25`, `%3F`, `%23`), so normalising again gives the same path.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    normalized(raw).map(std::borrow::Cow::into_owned)
}

/// [`normalize_path`], borrowing the raw path when it is already normal: only unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) and `/`, no empty, `.` or `..` segment but a last
/// empty one. Most paths are, and the per-request check then copies nothing.
fn normalized(raw: &str) -> Result<std::borrow::Cow<'_, str>, PathError> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    let plain = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
        && !["//", "/./", "/../"].iter().any(|p| path.contains(p))
        && !path.ends_with("/.")
        && !path.ends_with("/..");
    if plain {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    normalize_in_full(raw).map(std::borrow::Cow::Owned)
}

/// [`normalize_path`] the long way: decoding, splitting and joining.
fn normalize_in_full(raw: &str) -> Result<String, PathError> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = &raw[..end];
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    if raw.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let decoded = String::from_utf8(percent_decode(raw.as_bytes())?).map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::Control);
    }

    let mut segments: Vec<&str> = Vec::new();
    // Whether the path names a directory (ends in `/`, `/.` or `/..`), kept for rules like `^/admin/`.
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        // Tomcat and Spring drop `;params` before routing, so `/admin;x/` is `/admin/` to them.
        let segment = segment.split_once(';').map_or(segment, |(s, _)| s);
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }

    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        for c in s.chars() {
            match c {
                '%' => out.push_str("%25"),
                '?' => out.push_str("%3F"),
                '#' => out.push_str("%23"),
                c => out.push(c),
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%xx`, refusing the escapes listed on [`PathError`].
fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let d = hi << 4 | lo;
        match d {
            0 => return Err(PathError::Nul),
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            _ => out.push(d),
        }
        i += 3;
    }
    // Checked on the decoded bytes so that `%25%32%66` (which spells `%2f`) is caught too.
    if out
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
    {
        return Err(PathError::DoubleEncoded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn rules(toml_text: &str) -> Vec<RuleConfig> {
        #[derive(Deserialize)]
        struct Access {
            rules: Vec<RuleConfig>,
        }
        toml::from_str::<Access>(toml_text).unwrap().rules
    }

    fn req<'a>(host: &'a str, path: &'a str) -> Resource<'a> {
        Resource {
            method: "GET",
            host,
            path,
            client_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        }
    }

    fn policy(ac: &AccessControl, r: &Resource) -> Policy {
        match ac.policy_for(r, None).unwrap() {
            RuleOutcome::Policy(p) => p,
            RuleOutcome::NeedsSubject => panic!("unexpected NeedsSubject for {r:?}"),
        }
    }

    /// `^/public/` and `^/static/` bypass, everything else needs two factors, `/admin` is denied.
    fn bypass_public() -> AccessControl {
        let r = rules(
            r#"
            [[rules]]
            path = ["^/public/", "^/static/"]
            policy = "bypass"
            [[rules]]
            path = "^/admin"
            policy = "deny"
            "#,
        );
        AccessControl::new(&r, Policy::TwoFactor).unwrap()
    }

    #[test]
    fn normalises_ordinary_paths() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a%20b/%C3%A9", "/a b/é"),
            ("/x?y=1#z", "/x"),
            ("/x#frag?no", "/x"),
            ("/a;jsessionid=1/b;v=2", "/a/b"),
            ("/100%25", "/100%25"),
            ("/what%3F", "/what%3F"),
            ("/%23tag", "/%23tag"),
            ("/a/%2e%2E/b", "/b"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refuses_what_upstreams_read_differently() {
        for (raw, want) in [
            ("", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
            ("http://h/admin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/a\nb", PathError::Control),
            ("/a%0d%0aSet-Cookie:x", PathError::Control),
            ("/a%7f", PathError::Control),
            ("/a%c2%85", PathError::Control),
            ("/a%00.html", PathError::Nul),
            ("/public%2f..%2fadmin", PathError::EncodedSlash),
            ("/public%2F..%2Fadmin", PathError::EncodedSlash),
            ("/public%5c..%5cadmin", PathError::EncodedBackslash),
            ("/public\\..\\admin", PathError::Backslash),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%%32f", PathError::BadEscape),
            ("/%252e%252e/admin", PathError::DoubleEncoded),
            ("/%25%32%65", PathError::DoubleEncoded),
            ("/%ff", PathError::NotUtf8),
            ("/%c3", PathError::NotUtf8),
            ("/..", PathError::AboveRoot),
            ("/../admin", PathError::AboveRoot),
            ("/a/../../admin", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/..;/admin", PathError::AboveRoot),
        ] {
            assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn bypass_rules_cannot_be_reached_while_addressing_admin() {
        let ac = bypass_public();
        assert_eq!(policy(&ac, &req("h", "/public/logo.png")), Policy::Bypass);
        assert_eq!(policy(&ac, &req("h", "/static/app.js?v=3")), Policy::Bypass);
        assert_eq!(policy(&ac, &req("h", "/admin")), Policy::Deny);
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
            "//admin",
            "/admin;/",
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/public;/../admin",
            "/public/%2e%2e%3b/admin",
            "/static/./../admin",
            "/./admin",
        ] {
            let got = ac.policy_for(&req("h", raw), None);
            assert!(
                matches!(
                    got,
                    Ok(RuleOutcome::Policy(Policy::Deny)) | Ok(RuleOutcome::Policy(Policy::TwoFactor)) | Err(_)
                ),
                "{raw} gave {got:?}"
            );
        }
        // The ones that name /admin after normalising are denied, not merely protected.
        for raw in [
            "/public/../admin",
            "//admin",
            "/admin;/",
            "/public/..;/admin",
            "/public/%2e%2e/admin",
        ] {
            assert_eq!(policy(&ac, &req("h", raw)), Policy::Deny, "{raw}");
        }
        // The query is not part of the path: `/static/x?../../admin` is the static file `x`.
        assert_eq!(policy(&ac, &req("h", "/static/x?../../admin")), Policy::Bypass);
        assert_eq!(normalize_path("/static/x?../../admin").as_deref(), Ok("/static/x"));
        assert_eq!(normalize_path("/public/x#/../../admin").as_deref(), Ok("/public/x"));
        // These cannot be normalised safely and are refused outright.
        for raw in [
            "/%2e%2e/admin",
            "/public%2f..%2fadmin",
            "/public%5c..%5cadmin",
            "/public\\..\\admin",
        ] {
            assert!(ac.policy_for(&req("h", raw), None).is_err(), "{raw}");
        }
    }

    /// Issue 9.11: paths are matched case-sensitively unless a rule says otherwise.
    #[test]
    fn path_case_is_significant_unless_the_rule_ignores_it() {
        let ac = AccessControl::new(
            &rules(
                r#"
                [[rules]]
                path = "^/admin/"
                policy = "deny"
                [[rules]]
                path = "^/wiki/"
                path_ignore_case = true
                policy = "deny"
                "#,
            ),
            Policy::Bypass,
        )
        .unwrap();
        assert_eq!(policy(&ac, &req("h", "/admin/x")), Policy::Deny);
        assert_eq!(policy(&ac, &req("h", "/Admin/x")), Policy::Bypass);
        for p in ["/wiki/x", "/WIKI/x", "/Wiki/x"] {
            assert_eq!(policy(&ac, &req("h", p)), Policy::Deny, "{p}");
        }
    }

    #[test]
    fn first_match_wins_and_default_applies() {
        let ac = AccessControl::new(
            &rules(
                r#"
                [[rules]]
                domain = "app.example.com"
                path = "^/health$"
                policy = "bypass"
                [[rules]]
                domain = ["app.example.com", "*.internal.example.com"]
                policy = "one_factor"
                [[rules]]
                domain = "*.example.com"
                policy = "two_factor"
                "#,
            ),
            Policy::Deny,
        )
        .unwrap();
        assert_eq!(policy(&ac, &req("app.example.com", "/health")), Policy::Bypass);
        assert_eq!(policy(&ac, &req("app.example.com", "/health/x")), Policy::OneFactor);
        assert_eq!(policy(&ac, &req("APP.Example.COM:8443", "/")), Policy::OneFactor);
        assert_eq!(policy(&ac, &req("app.example.com.", "/")), Policy::OneFactor);
        assert_eq!(policy(&ac, &req("a.b.internal.example.com", "/")), Policy::OneFactor);
        assert_eq!(policy(&ac, &req("wiki.example.com", "/")), Policy::TwoFactor);
        assert_eq!(policy(&ac, &req("deep.wiki.example.com", "/")), Policy::TwoFactor);
        // The wildcard covers subdomains only, and only whole labels.
        assert_eq!(policy(&ac, &req("example.com", "/")), Policy::Deny);
        assert_eq!(policy(&ac, &req("evilexample.com", "/")), Policy::Deny);
        assert_eq!(policy(&ac, &req("wiki.example.com.evil", "/")), Policy::Deny);
        assert_eq!(policy(&ac, &req("", "/")), Policy::Deny);
        assert!(ac.protects("wiki.example.com"));
        assert!(ac.protects("app.example.com"));
        assert!(!ac.protects("example.com"));
        let open = AccessControl::new(
            &rules(
                "[[rules]]\ndomain = \"pub.example.com\"\npolicy = \"bypass\"\n[[rules]]\npolicy = \"two_factor\"\n",
            ),
            Policy::Bypass,
        )
        .unwrap();
        assert!(!open.protects("pub.example.com"));
        assert!(open.protects("other.example.com"));
        let by_group = AccessControl::new(
            &rules("[[rules]]\ngroups = \"ops\"\npolicy = \"bypass\"\n"),
            Policy::Bypass,
        )
        .unwrap();
        assert!(by_group.protects("any.example.com"));
    }

    #[test]
    fn methods_and_networks() {
        let ac = AccessControl::new(
            &rules(
                r#"
                [[rules]]
                networks = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
                policy = "bypass"
                [[rules]]
                methods = ["options", "HEAD"]
                policy = "bypass"
                "#,
            ),
            Policy::TwoFactor,
        )
        .unwrap();
        let at = |ip: &str, method: &'static str| Resource {
            method,
            host: "h",
            path: "/",
            client_ip: ip.parse().unwrap(),
        };
        assert_eq!(policy(&ac, &at("10.1.2.3", "GET")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("::ffff:10.1.2.3", "GET")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("192.0.2.1", "GET")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("192.0.2.2", "GET")), Policy::TwoFactor);
        assert_eq!(policy(&ac, &at("2001:db8::5", "GET")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("11.0.0.1", "GET")), Policy::TwoFactor);
        assert_eq!(policy(&ac, &at("11.0.0.1", "Options")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("11.0.0.1", "head")), Policy::Bypass);
        assert_eq!(policy(&ac, &at("11.0.0.1", "POST")), Policy::TwoFactor);
    }

    #[test]
    fn mapped_ipv6_networks_match_ipv4_clients() {
        let ac = AccessControl::new(
            &rules("[[rules]]\nnetworks = \"::ffff:10.0.0.0/104\"\npolicy = \"deny\"\n"),
            Policy::Bypass,
        )
        .unwrap();
        let r = Resource {
            client_ip: "10.9.9.9".parse().unwrap(),
            ..req("h", "/")
        };
        assert_eq!(policy(&ac, &r), Policy::Deny);
        let outside = Resource {
            client_ip: "11.0.0.1".parse().unwrap(),
            ..req("h", "/")
        };
        assert_eq!(policy(&ac, &outside), Policy::Bypass, "/104 is 10.0.0.0/8, not wider");
        assert_eq!(parse_network("::ffff:10.0.0.0/104").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn policies_are_named_as_in_the_configuration() {
        for (p, name) in [
            (Policy::Bypass, "bypass"),
            (Policy::Deny, "deny"),
            (Policy::OneFactor, "one_factor"),
            (Policy::TwoFactor, "two_factor"),
        ] {
            assert_eq!((p.label(), p.to_string()), (name, name.to_string()));
        }
        let e = toml::from_str::<RuleConfig>("users = 5\npolicy = \"deny\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a string or an array of strings"), "{e}");
    }

    #[test]
    fn host_errors_say_which_rule_of_host_was_broken() {
        const HELP: &str = "use a host name (app.example.com), *.example.com for its subdomains, or an IP address";
        let err = |s: &str| HostPattern::parse(s).unwrap_err();
        for bad in ["", "a b.com", "a\u{1}b.com", "a..b"] {
            assert_eq!(err(bad), HELP, "{bad:?}");
        }
        assert!(
            err("*.[::1]").starts_with("a wildcard needs a domain name"),
            "{}",
            err("*.[::1]")
        );
        assert!(
            err("*.127.1").starts_with("a wildcard needs a domain name"),
            "{}",
            err("*.127.1")
        );
        // The URL parser's IPv4 shorthand is the address it stands for, as in return URLs.
        assert_eq!(HostPattern::parse("127.1"), Ok(HostPattern::Exact("127.0.0.1".into())));
    }

    #[test]
    fn subdomain_patterns_need_a_whole_label_before_the_suffix() {
        let p = HostPattern::Subdomains(".example.com".into());
        assert!(p.matches("a.example.com"));
        assert!(!p.matches(".example.com"));
        assert!(!p.matches("a..example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("[::1]"));
    }

    #[test]
    fn host_headers_lose_only_a_numeric_port() {
        assert_eq!(normalize_host("Example.com:8080"), "example.com");
        assert_eq!(normalize_host("example.com:abc"), "example.com:abc");
        assert_eq!(normalize_host("::1"), "[::1]");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }

    #[test]
    fn subject_rules_ask_for_a_login_unless_an_earlier_rule_matched() {
        let ac = AccessControl::new(
            &rules(
                r#"
                [[rules]]
                path = "^/public/"
                policy = "bypass"
                [[rules]]
                path = "^/admin/"
                groups = "admins"
                policy = "two_factor"
                [[rules]]
                path = "^/admin/"
                users = ["root"]
                policy = "one_factor"
                [[rules]]
                path = "^/admin/"
                policy = "deny"
                "#,
            ),
            Policy::OneFactor,
        )
        .unwrap();
        let admins = vec!["staff".to_string(), "admins".to_string()];
        let alice = Subject {
            user: "alice",
            groups: &admins,
        };
        let root = Subject {
            user: "root",
            groups: &[],
        };
        let bob = Subject {
            user: "bob",
            groups: &[],
        };
        let r = req("h", "/admin/x");
        assert_eq!(ac.policy_for(&r, None), Ok(RuleOutcome::NeedsSubject));
        assert_eq!(
            ac.policy_for(&r, Some(&alice)),
            Ok(RuleOutcome::Policy(Policy::TwoFactor))
        );
        assert_eq!(
            ac.policy_for(&r, Some(&root)),
            Ok(RuleOutcome::Policy(Policy::OneFactor))
        );
        assert_eq!(ac.policy_for(&r, Some(&bob)), Ok(RuleOutcome::Policy(Policy::Deny)));
        // An earlier object-only rule wins before any subject rule is looked at.
        assert_eq!(
            ac.policy_for(&req("h", "/public/a"), None),
            Ok(RuleOutcome::Policy(Policy::Bypass))
        );
        // A subject rule whose object criteria do not match is skipped.
        assert_eq!(
            ac.policy_for(&req("h", "/else"), None),
            Ok(RuleOutcome::Policy(Policy::OneFactor))
        );
    }

    #[test]
    fn errors_name_the_rule_and_field() {
        let bad = |text: &str| AccessControl::new(&rules(text), Policy::Deny).unwrap_err().to_string();
        let e = bad(
            "[[rules]]\npolicy = \"bypass\"\n[[rules]]\npolicy = \"bypass\"\n[[rules]]\npath = \"([\"\npolicy = \"deny\"\n",
        );
        assert!(e.starts_with("access.rules[3].path: \"([\": regex parse error"), "{e}");
        let e = bad("[[rules]]\nnetworks = \"10.0.0.0/33\"\npolicy = \"deny\"\n");
        assert!(
            e.starts_with("access.rules[1].networks: \"10.0.0.0/33\": use a CIDR"),
            "{e}"
        );
        let e = bad("[[rules]]\ndomain = \"a.*.example.com\"\npolicy = \"deny\"\n");
        assert!(e.starts_with("access.rules[1].domain:"), "{e}");
        let e = bad("[[rules]]\ndomain = \"*.1.2.3\"\npolicy = \"deny\"\n");
        assert!(e.contains("wildcard needs a domain"), "{e}");
        let e = bad("[[rules]]\ndomain = \"app.example.com:443\"\npolicy = \"deny\"\n");
        assert!(e.contains("without a port"), "{e}");
        let e = bad("[[rules]]\nmethods = \"GET POST\"\npolicy = \"deny\"\n");
        assert!(e.starts_with("access.rules[1].methods:"), "{e}");
        let e = bad("[[rules]]\nusers = \"\"\npolicy = \"deny\"\n");
        assert!(e.starts_with("access.rules[1].users:"), "{e}");
        // Unknown keys and policies are refused by the TOML layer.
        assert!(toml::from_str::<RuleConfig>("paths = \"^/\"\npolicy = \"deny\"\n").is_err());
        assert!(toml::from_str::<RuleConfig>("policy = \"allow\"\n").is_err());
        assert!(toml::from_str::<RuleConfig>("domain = 3\npolicy = \"deny\"\n").is_err());
    }

    #[test]
    fn host_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert_eq!(p("App.Example.COM."), HostPattern::Exact("app.example.com".into()));
        assert_eq!(p("*.Example.com"), HostPattern::Subdomains(".example.com".into()));
        assert_eq!(p("bücher.example"), HostPattern::Exact("xn--bcher-kva.example".into()));
        assert_eq!(p("::1"), HostPattern::Exact("[::1]".into()));
        assert_eq!(p("[::1]"), HostPattern::Exact("[::1]".into()));
        assert_eq!(p("::ffff:1.2.3.4"), HostPattern::Exact("1.2.3.4".into()));
        for bad in ["", "*", "*.", "a b", "a..b", "x.*", "a/b", "u@h"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(p("[::1]").matches(&normalize_host("[0:0::1]:8080")));
        assert!(p("1.2.3.4").matches(&normalize_host("1.2.3.4:80")));
        assert!(!HostPattern::Subdomains(".3.4".into()).matches("1.2.3.4"));
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_is_idempotent(
            raw in prop_oneof![
                any::<String>(),
                "\\PC{0,40}",
                "/(/|%2[eEfF]|%25|%3[bBfF]|%23|\\.|\\.\\.|;|\\?|#|a|%|\\\\|%00|%c3%a9|%0a| )*",
            ]
        ) {
            if let Ok(out) = normalize_path(&raw) {
                prop_assert!(out.starts_with('/'));
                for bad in ["//", "/./", "/../", ";", "?", "\\", "#"] {
                    prop_assert!(!out.contains(bad), "{raw:?} -> {out:?} contains {bad:?}");
                }
                prop_assert!(!out.ends_with("/.") && !out.ends_with("/.."), "{raw:?} -> {out:?}");
                prop_assert_eq!(normalize_path(&out), Ok(out.clone()));
            }
        }

        #[test]
        fn a_path_taken_as_it_is_normalises_to_itself_the_long_way(
            raw in "/([a-zA-Z0-9._~-]{0,4}/?){0,6}(\\?[a-z/.]{0,5})?",
        ) {
            prop_assert_eq!(normalized(&raw).map(|c| c.into_owned()), normalize_in_full(&raw));
        }
    }
}

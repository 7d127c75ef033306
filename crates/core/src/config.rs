//! `portcullis.toml`: every key, its default, and validation that names the line at fault.

use portcullis_otp::Algorithm;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// A configuration problem, with the file and line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Could not read the file.
    #[error("{path}: cannot read the configuration: {source}; give the path with --config or PORTCULLIS_CONFIG")]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown/mistyped key.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A value outside its allowed range.
    #[error("{path}:{line}: {key} = {value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key (0 if it was not written, i.e. a default).
        line: usize,
        /// `section.key`.
        key: String,
        /// The value found.
        value: String,
        /// What is allowed.
        reason: String,
    },
}

/// Which backend keeps users and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded SQLite database (default).
    Sqlite,
    /// A live mod_authn_otp users file.
    ModAuthnOtp,
    /// A live pam_oath `users.oath` file.
    PamOath,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend kind.
    pub backend: Backend,
    /// Database or users file, relative to the config file's directory.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            path: PathBuf::from("portcullis.db"),
        }
    }
}

/// Default token type for `user add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultKind {
    /// Time-based.
    Totp,
    /// Counter-based.
    Hotp,
}

fn algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
    let s = String::deserialize(d)?;
    Algorithm::parse(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown algorithm {s:?}; use sha1, sha256 or sha512")))
}

/// `[otp]`: token defaults and verification windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpConfig {
    /// Issuer shown in authenticator apps.
    pub issuer: String,
    /// Token type for new users.
    pub kind: DefaultKind,
    /// Code length for new tokens.
    pub digits: u32,
    /// TOTP step in seconds for new tokens.
    pub period: u32,
    /// HMAC hash for new tokens.
    #[serde(deserialize_with = "algorithm")]
    pub algorithm: Algorithm,
    /// TOTP: steps accepted on each side of the current one (clock skew).
    pub window: u64,
    /// HOTP: how many counters ahead a code may be (presses not sent).
    pub hotp_look_ahead: u64,
    /// mOTP: 10-second steps accepted on each side.
    pub motp_window: u64,
    /// Seconds an accepted code may be sent again from the same address by HTTP Basic
    /// clients, which resend it on every request (mod_authn_otp's OTPAuthMaxLinger); 0 disables.
    pub linger: u64,
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            issuer: "portcullis".into(),
            kind: DefaultKind::Totp,
            digits: 6,
            period: 30,
            algorithm: Algorithm::Sha1,
            window: 1,
            hotp_look_ahead: 10,
            motp_window: 18,
            linger: 300,
        }
    }
}

/// `[lockout]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Consecutive wrong codes that lock an account until `user unlock` (0 = never).
    pub max_failures: u32,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig { max_failures: 5 }
    }
}

/// `[first_factor]`: where passwords are checked when a user's record says `External`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirstFactorConfig {
    /// An Apache htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// An Apache htdigest file.
    pub htdigest: Option<PathBuf>,
    /// The realm of `htdigest` lines to use.
    pub htdigest_realm: Option<String>,
}

/// How auth events are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One `key=value` line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`: the HTTP gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// The portal's external URL, where people are sent to log in.
    pub portal_url: String,
    /// Where people land after login when the requested page is missing or not allowed.
    pub default_redirect: String,
    /// Proxies (CIDRs) whose X-Forwarded-*/X-Real-IP headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Ask for the password and the code on two pages (true) or one.
    pub two_step: bool,
    /// Log format of auth events.
    pub log_format: LogFormat,
    /// Serve a protected demo page at `/` (for `portcullis demo`).
    pub demo_page: bool,
    /// PEM certificate chain: `serve` speaks HTTPS itself (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where Prometheus metrics are served (`127.0.0.1:9093`), apart from the portal so
    /// that strangers never read live sessions, bans and failure counts; `""` = off.
    pub metrics_listen: String,
    /// Client connections served at once; more are closed at accept (a slowloris flood
    /// must not use up the process's descriptors).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and to start its next request on
    /// a kept-alive connection.
    pub header_timeout: u64,
}

impl ServerConfig {
    /// The path the portal is served under: `portal_url`'s path without the trailing `/`
    /// (`""` for `https://auth.example.com`, `"/.portcullis"` for `https://app/.portcullis/`).
    pub fn base_path(&self) -> &str {
        let rest = self.portal_url.split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("", |i| rest[i..].trim_end_matches('/'))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:9091".into(),
            portal_url: "http://127.0.0.1:9091".into(),
            default_redirect: "http://127.0.0.1:9091/".into(),
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            two_step: true,
            log_format: LogFormat::Text,
            demo_page: false,
            tls_cert: None,
            tls_key: None,
            metrics_listen: String::new(),
            max_connections: 1000,
            header_timeout: 10,
        }
    }
}

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStoreKind {
    /// In the embedded store: sessions survive a restart.
    Sqlite,
    /// In memory only.
    Memory,
}

/// `[session]`: the login cookie.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Cookie name.
    pub cookie_name: String,
    /// Cookie domain for single sign-on across subdomains (e.g. `example.com`); empty = host only.
    pub domain: String,
    /// Send the cookie over HTTPS only. Turn off only for a plain-HTTP loopback demo.
    pub secure: bool,
    /// Absolute lifetime in seconds.
    pub absolute: u64,
    /// Idle timeout in seconds (refreshed by use).
    pub idle: u64,
    /// End the session when the client address changes (mod_authn_otp's OTPAuthLogoutOnIPChange).
    pub bind_ip: bool,
    /// Seconds between re-reading a signed-in user from the store (lock, removal, groups).
    pub refresh: u64,
    /// `sqlite` or `memory`.
    pub store: SessionStoreKind,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "portcullis_session".into(),
            domain: String::new(),
            secure: true,
            absolute: 12 * 3600,
            idle: 30 * 60,
            bind_ip: false,
            refresh: 60,
            store: SessionStoreKind::Sqlite,
        }
    }
}

/// `[regulation]`: failures per user and per client address before a ban.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegulationConfig {
    /// Failures within `find_time` that ban (0 disables).
    pub max_retries: u32,
    /// Window in seconds in which failures count.
    pub find_time: u64,
    /// Ban length in seconds.
    pub ban_time: u64,
}

impl Default for RegulationConfig {
    fn default() -> Self {
        RegulationConfig {
            max_retries: 5,
            find_time: 600,
            ban_time: 900,
        }
    }
}

/// `[basic]`: HTTP Basic with password+code for clients that cannot show a form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicConfig {
    /// Accept `Authorization: Basic` on the forward-auth endpoints.
    pub enabled: bool,
    /// Realm in the `WWW-Authenticate` challenge.
    pub realm: String,
}

impl Default for BasicConfig {
    fn default() -> Self {
        BasicConfig {
            enabled: true,
            realm: "portcullis".into(),
        }
    }
}

/// `[apache]`: the Apache integrations (mod_authnz_fcgi and mod_authnz_external).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApacheConfig {
    /// Loopback address of the FastCGI authorizer for mod_authnz_fcgi; empty = off.
    pub fastcgi_listen: String,
    /// Unix socket `portcullis check` asks the running gateway through; empty = off.
    pub check_socket: String,
    /// Group given the check socket at bind (a name or a number, e.g. `www-data`); empty =
    /// the gateway's own group.
    pub check_socket_group: String,
    /// Mode of the check socket (e.g. `0o660`: owner and group; others get nothing).
    pub check_socket_mode: u32,
    /// What `portcullis check` does when `check_socket` is set but the gateway does not
    /// answer: `refuse` (default: no login without the gateway's regulation and linger) or
    /// `local` (decide from the store, logged as a warning).
    pub check_fallback: CheckFallback,
}

impl Default for ApacheConfig {
    fn default() -> Self {
        ApacheConfig {
            fastcgi_listen: String::new(),
            check_socket: String::new(),
            check_socket_group: String::new(),
            check_socket_mode: 0o660,
            check_fallback: CheckFallback::Refuse,
        }
    }
}

/// `[apache] check_fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckFallback {
    /// Refuse the login (exit 2): the gateway's shared regulation is not there.
    Refuse,
    /// Decide from the store, with a warning in the log.
    Local,
}

/// `[proxy]`: reverse-proxy mode, where `serve` itself forwards allowed requests to an app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The protected app, `http://host:port`; empty = off (forward-auth only).
    pub upstream: String,
}

impl ProxyConfig {
    /// The upstream's `host:port`, when `upstream` is a plain `http://host:port[/]` URL.
    pub fn authority(&self) -> Option<&str> {
        let rest = self.upstream.strip_prefix("http://")?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let valid = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
        valid.then_some(authority)
    }
}

/// `[access]`: which requests need which factors, and where people may return to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Policy when no rule matches.
    pub default_policy: crate::access::Policy,
    /// Hosts (`app.example.com`, `*.example.com`) a login may send people back to.
    pub protected_domains: Vec<String>,
    /// Ordered rules, first match wins (`[[access.rules]]`).
    pub rules: Vec<crate::access::RuleConfig>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            default_policy: crate::access::Policy::TwoFactor,
            protected_domains: vec!["127.0.0.1".into(), "localhost".into()],
            rules: Vec::new(),
        }
    }
}

/// `[invite]`: self-service enrollment links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InviteConfig {
    /// Seconds an invitation link stays valid.
    pub ttl: u64,
}

impl Default for InviteConfig {
    fn default() -> Self {
        InviteConfig { ttl: 24 * 3600 }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[store]`.
    pub store: StoreConfig,
    /// `[otp]`.
    pub otp: OtpConfig,
    /// `[lockout]`.
    pub lockout: LockoutConfig,
    /// `[first_factor]`.
    pub first_factor: FirstFactorConfig,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[regulation]`.
    pub regulation: RegulationConfig,
    /// `[access]`.
    pub access: AccessConfig,
    /// `[basic]`.
    pub basic: BasicConfig,
    /// `[invite]`.
    pub invite: InviteConfig,
    /// `[apache]`.
    pub apache: ApacheConfig,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// Where the file was read from (relative paths are resolved against its directory).
    #[serde(skip)]
    pub path: PathBuf,
}

/// 1-based line where `key` is set inside `[section]`, or 0.
fn line_of(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section
            && line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return i + 1;
        }
    }
    0
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, column)
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config.path = path.to_path_buf();
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let invalid = |section: &str, key: &str, value: String, reason: &str| ConfigError::Invalid {
            path: self.path.clone(),
            line: line_of(text, section, key),
            key: format!("{section}.{key}"),
            value,
            reason: reason.to_string(),
        };
        let o = &self.otp;
        if !(6..=10).contains(&o.digits) {
            return Err(invalid("otp", "digits", o.digits.to_string(), "use 6 to 10"));
        }
        if !(1..=3600).contains(&o.period) {
            return Err(invalid(
                "otp",
                "period",
                o.period.to_string(),
                "use 1 to 3600 seconds (30 is standard)",
            ));
        }
        if o.window > 10 {
            return Err(invalid(
                "otp",
                "window",
                o.window.to_string(),
                "use 0 to 10 steps; wider windows make guessing easier",
            ));
        }
        if o.hotp_look_ahead > 1000 {
            return Err(invalid(
                "otp",
                "hotp_look_ahead",
                o.hotp_look_ahead.to_string(),
                "use 0 to 1000",
            ));
        }
        if o.motp_window > 60 {
            return Err(invalid(
                "otp",
                "motp_window",
                o.motp_window.to_string(),
                "use 0 to 60 ten-second steps",
            ));
        }
        if o.linger > 86_400 {
            return Err(invalid(
                "otp",
                "linger",
                o.linger.to_string(),
                "use at most 86400 seconds",
            ));
        }
        if self.session.absolute == 0 || self.session.idle == 0 {
            let key = if self.session.absolute == 0 { "absolute" } else { "idle" };
            return Err(invalid("session", key, "0".into(), "use a positive number of seconds"));
        }
        if self.session.cookie_name.is_empty()
            || !self
                .session
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "session",
                "cookie_name",
                format!("{:?}", self.session.cookie_name),
                "use letters, digits, _ and -",
            ));
        }
        for (key, value) in [
            ("portal_url", &self.server.portal_url),
            ("default_redirect", &self.server.default_redirect),
        ] {
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                return Err(invalid(
                    "server",
                    key,
                    format!("{value:?}"),
                    "give an absolute http:// or https:// URL",
                ));
            }
        }
        let base = self.server.base_path();
        if !base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'))
            || base.contains("//")
        {
            return Err(invalid(
                "server",
                "portal_url",
                format!("{:?}", self.server.portal_url),
                "the path may hold only letters, digits and / . - _ (no query or fragment)",
            ));
        }
        if !self.proxy.upstream.is_empty() {
            if self.proxy.authority().is_none() {
                return Err(invalid(
                    "proxy",
                    "upstream",
                    format!("{:?}", self.proxy.upstream),
                    "give the app's plain-HTTP address such as http://127.0.0.1:8080 (no path; TLS to the app is not supported), or \"\" for off",
                ));
            }
            if base.is_empty() {
                return Err(invalid(
                    "proxy",
                    "upstream",
                    format!("{:?}", self.proxy.upstream),
                    "reverse-proxy mode needs [server] portal_url with a path of its own on the app's host, such as https://app.example.com/.portcullis, so its pages do not hide the app's",
                ));
            }
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server",
                "listen",
                format!("{:?}", self.server.listen),
                "give an address and port such as 127.0.0.1:9091",
            ));
        }
        if let Err(e) = crate::access::AccessControl::new(&self.access.rules, self.access.default_policy) {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                line: line_of(text, "access.rules", "policy").max(line_of(text, "access", "rules")),
                key: "access.rules".into(),
                value: String::new(),
                reason: e.to_string(),
            });
        }
        for (section, key, list) in [
            ("access", "protected_domains", &self.access.protected_domains),
            ("server", "trusted_proxies", &self.server.trusted_proxies),
        ] {
            let check = if key == "protected_domains" {
                crate::redirect::ReturnTargets::new(list).err().map(|e| e.to_string())
            } else {
                crate::client::TrustedProxies::new(list).err().map(|e| e.to_string())
            };
            if let Some(reason) = check {
                return Err(invalid(section, key, format!("{list:?}"), &reason));
            }
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server", "max_connections", "0".into(), "use at least 1"));
        }
        if !(1..=300).contains(&self.server.header_timeout) {
            return Err(invalid(
                "server",
                "header_timeout",
                self.server.header_timeout.to_string(),
                "use 1 to 300 seconds",
            ));
        }
        let mode = self.apache.check_socket_mode;
        if mode & !0o777 != 0 || mode & 0o600 != 0o600 || mode & 0o002 != 0 {
            return Err(invalid(
                "apache",
                "check_socket_mode",
                format!("0o{mode:o}"),
                "give the permission bits in octal such as 0o660 (owner read/write, no write for others)",
            ));
        }
        let metrics = &self.server.metrics_listen;
        if !metrics.is_empty() && metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server",
                "metrics_listen",
                format!("{metrics:?}"),
                "give an address and port such as 127.0.0.1:9093 (keep it off the public network), or \"\" for off",
            ));
        }
        let fcgi = &self.apache.fastcgi_listen;
        if !fcgi.is_empty() && !fcgi.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) {
            return Err(invalid(
                "apache",
                "fastcgi_listen",
                format!("{fcgi:?}"),
                "give a loopback address and port such as 127.0.0.1:9092 (FastCGI has no authentication of its own), or \"\" for off",
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            let (key, other) = if self.server.tls_cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            return Err(invalid(
                "server",
                key,
                "(set)".into(),
                &format!("also set {other}: HTTPS needs the certificate chain and its private key"),
            ));
        }
        if self.store.backend == Backend::PamOath && self.lockout.max_failures > 0 {
            // pam_oath's format has no failure count: a lockout there would be promised
            // and never happen.
            let line = line_of(text, "lockout", "max_failures").max(line_of(text, "store", "backend"));
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                line,
                key: "lockout.max_failures".into(),
                value: self.lockout.max_failures.to_string(),
                reason: "a pam_oath users file has no field for failures or locks, so no one can be locked out in it: \
set [lockout] max_failures = 0 (wrong codes are still banned per client by [regulation], and fail2ban reads the log), \
or keep users in backend = \"sqlite\" or \"mod_authn_otp\", which count failures"
                    .into(),
            });
        }
        if self.first_factor.htpasswd.is_some() && self.first_factor.htdigest.is_some() {
            // Only one file is asked: a user only in the other one could never sign in.
            return Err(invalid(
                "first_factor",
                "htdigest",
                "(set)".into(),
                "set htpasswd or htdigest, not both: passwords are checked against one file; \
move the users into one of them (or into portcullis with `portcullis user passwd`)",
            ));
        }
        if self.first_factor.htdigest.is_some() && self.first_factor.htdigest_realm.is_none() {
            return Err(invalid(
                "first_factor",
                "htdigest",
                "(set)".into(),
                "also set htdigest_realm, the realm of the lines to use",
            ));
        }
        Ok(())
    }

    /// Resolves a configured path against the configuration file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The external first-factor source, if one is configured.
    pub fn external_source(&self) -> Option<crate::password::ExternalSource> {
        use crate::password::ExternalSource;
        let f = &self.first_factor;
        if let Some(p) = &f.htpasswd {
            return Some(ExternalSource::Htpasswd(self.resolve(p)));
        }
        match (&f.htdigest, &f.htdigest_realm) {
            (Some(p), Some(realm)) => Some(ExternalSource::Htdigest {
                path: self.resolve(p),
                realm: realm.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_admits_its_limit_and_refuses_one_past_it() {
        let parse = |text: &str| Config::parse(text, Path::new("/etc/p.toml"));
        let cases = [
            ("otp", "window", "10", "11"),
            ("otp", "hotp_look_ahead", "1000", "1001"),
            ("otp", "motp_window", "60", "61"),
            ("otp", "linger", "86400", "86401"),
            ("otp", "digits", "10", "11"),
            ("otp", "period", "3600", "3601"),
            ("session", "absolute", "1", "0"),
            ("session", "idle", "1", "0"),
            ("session", "cookie_name", "\"a_b-1\"", "\"a;b\""),
            ("server", "header_timeout", "300", "301"),
            ("apache", "check_socket_mode", "0o660", "0o662"),
            ("apache", "check_socket_mode", "0o600", "0o460"),
            ("apache", "check_socket_mode", "0o600", "0o1600"),
        ];
        for (section, key, ok, bad) in cases {
            let good = format!("[{section}]\n{key} = {ok}\n");
            assert!(parse(&good).is_ok(), "{good}: {:?}", parse(&good).err());
            let e = parse(&format!("[{section}]\n{key} = {bad}\n")).unwrap_err().to_string();
            assert!(
                e.contains(&format!("p.toml:2: {section}.{key}")),
                "{section}.{key} = {bad}: {e}"
            );
        }
        let e = parse("[session]\ncookie_name = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("session.cookie_name"), "{e}");
    }

    #[test]
    fn syntax_errors_name_line_and_column_and_load_reads_the_file() {
        let e = Config::parse("[otp]\n  window = = 3\n", Path::new("/etc/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/p.toml:2:"), "{e}");
        let col: usize = e["/etc/p.toml:2:".len()..].split(':').next().unwrap().parse().unwrap();
        assert!((10..=12).contains(&col), "the column points into line 2: {e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[otp]\nwindow = 2\n[first_factor]\nhtdigest = \"d\"\nhtdigest_realm = \"web\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.otp.window, 2);
        match c.external_source() {
            Some(crate::password::ExternalSource::Htdigest { path, realm }) => {
                assert_eq!((path, realm.as_str()), (dir.path().join("d"), "web"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Config::load(&dir.path().join("missing.toml")).is_err());
    }

    #[test]
    fn a_live_pam_oath_file_needs_lockout_off() {
        let text =
            |n: u32| format!("[store]\nbackend = \"pam_oath\"\npath = \"users.oath\"\n[lockout]\nmax_failures = {n}\n");
        assert!(Config::parse(&text(0), Path::new("/etc/p.toml")).is_ok());
        let e = Config::parse(&text(1), Path::new("/etc/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml:5: lockout.max_failures = 1"), "{e}");
    }

    #[test]
    fn htpasswd_and_htdigest_together_are_refused_at_the_htdigest_line() {
        let text =
            "[first_factor]\nhtpasswd = \"/etc/htpasswd\"\nhtdigest = \"/etc/htdigest\"\nhtdigest_realm = \"r\"\n";
        let e = Config::parse(text, Path::new("/etc/p.toml")).unwrap_err().to_string();
        assert!(e.contains("p.toml:3") && e.contains("first_factor.htdigest"), "{e}");
        assert!(e.contains("not both"), "{e}");
        assert!(
            Config::parse(
                &text.replace("htpasswd = \"/etc/htpasswd\"\n", ""),
                Path::new("/etc/p.toml")
            )
            .is_ok()
        );
    }

    #[test]
    fn empty_file_gives_safe_defaults() {
        let c = Config::parse("", Path::new("/etc/p.toml")).unwrap();
        assert_eq!(c.otp.window, 1);
        assert_eq!(c.lockout.max_failures, 5);
        assert_eq!(c.store.backend, Backend::Sqlite);
        assert_eq!(c.resolve(&c.store.path), PathBuf::from("/etc/portcullis.db"));
    }

    #[test]
    fn fastcgi_listener_must_be_on_loopback() {
        let ok = Config::parse("[apache]\nfastcgi_listen = \"127.0.0.1:9092\"\n", Path::new("p.toml")).unwrap();
        assert_eq!(ok.apache.fastcgi_listen, "127.0.0.1:9092");
        assert!(
            Config::parse("", Path::new("p.toml"))
                .unwrap()
                .apache
                .fastcgi_listen
                .is_empty()
        );
        for bad in ["0.0.0.0:9092", "192.168.1.5:9092", "localhost"] {
            let err = Config::parse(
                &format!("[apache]\n\nfastcgi_listen = \"{bad}\"\n"),
                Path::new("p.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("p.toml:3: apache.fastcgi_listen"), "{err}");
        }
    }

    #[test]
    fn proxy_upstream_needs_plain_http_and_a_portal_path() {
        let p = Path::new("p.toml");
        let ok = Config::parse(
            "[server]\nportal_url = \"https://app.example.com/.portcullis/\"\n[proxy]\nupstream = \"http://127.0.0.1:8080/\"\n",
            p,
        )
        .unwrap();
        assert_eq!(ok.proxy.authority(), Some("127.0.0.1:8080"));
        assert_eq!(ok.server.base_path(), "/.portcullis");
        assert_eq!(Config::parse("", p).unwrap().server.base_path(), "");
        for (text, want) in [
            (
                "[proxy]\nupstream = \"http://127.0.0.1:8080\"\n",
                "p.toml:2: proxy.upstream",
            ),
            (
                "[server]\nportal_url = \"https://a/p\"\n[proxy]\nupstream = \"https://127.0.0.1:8443\"\n",
                "p.toml:4: proxy.upstream",
            ),
            (
                "[server]\nportal_url = \"https://a/p\"\n[proxy]\nupstream = \"http://127.0.0.1:8080/app\"\n",
                "p.toml:4: proxy.upstream",
            ),
            (
                "[server]\nportal_url = \"https://a/p?x=1\"\n",
                "p.toml:2: server.portal_url",
            ),
        ] {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let p = Path::new("p.toml");
        let both = Config::parse("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n", p).unwrap();
        assert_eq!(both.server.tls_key.as_deref(), Some(Path::new("k.pem")));
        let err = Config::parse("[server]\n\ntls_key = \"k.pem\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:3: server.tls_key") && err.contains("tls_cert"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Config::parse("[otp]\ndigits = 6\nwindw = 2\n", Path::new("p.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("p.toml:3:1:"), "{msg}");
        assert!(msg.contains("windw"), "{msg}");
    }

    #[test]
    fn out_of_range_value_names_the_line() {
        let err = Config::parse("[store]\n\n[otp]\nissuer = \"x\"\ndigits = 4\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:5: otp.digits = 4"), "{err}");
        let err = Config::parse("[otp]\nalgorithm = \"md5\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.toml:2:") && err.contains("sha256"), "{err}");
    }
}

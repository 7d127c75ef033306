//! The core's sections of `portcullis.toml`: every key, its default, and validation that
//! names the line at fault. The gateway's sections (`[server]`, `[apache]`, `[proxy]`) are
//! read and validated by the `portcullis` crate from the same [`Document`].

mod document;
mod duo;
mod ldap;
mod unreadable;
mod webauthn;

pub use document::Document;
pub use duo::{DuoConfig, FailMode};
pub use ldap::{Implementation as LdapImplementation, LdapConfig};
use portcullis_otp::Algorithm;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
pub use unreadable::explain as explain_unreadable;
pub use webauthn::{Attestation, UserVerification, WebauthnConfig};

/// A configuration problem, with the file and line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Could not read the file.
    #[error("{path}: cannot read the configuration: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, and what to do (see [`explain_unreadable`]).
        reason: String,
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
pub enum StoreKind {
    /// Embedded SQLite database (default).
    Sqlite,
    /// A live mod_authn_otp users file.
    ModAuthnOtp,
    /// A live pam_oath `users.oath` file.
    PamOath,
    /// A PostgreSQL database shared by many gateways.
    Postgres,
}

/// How the PostgreSQL connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// TLS with the server's certificate checked against `ca_file` and its name (the default).
    VerifyFull,
    /// No TLS: only for a Unix socket or loopback.
    Disable,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which engine keeps users and tokens.
    pub backend: StoreKind,
    /// Database or users file, relative to the config file's directory.
    pub path: PathBuf,
    /// PostgreSQL: `postgres://user@host:port/database` (no password in it).
    pub url: String,
    /// PostgreSQL: a file holding the password (first line); else a .pgpass-less login.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: `verify-full` (TLS, checked) or `disable`.
    pub sslmode: SslMode,
    /// PostgreSQL: PEM file of the CA(s) that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: connections each process keeps at most.
    pub pool_size: usize,
    /// PostgreSQL: seconds a query (with waiting for a connection) may take before the
    /// request that needs it is refused (503).
    pub timeout: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreKind::Sqlite,
            path: PathBuf::from("portcullis.db"),
            url: String::new(),
            password_file: None,
            sslmode: SslMode::VerifyFull,
            ca_file: None,
            pool_size: 8,
            timeout: 5,
        }
    }
}

impl StoreConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.backend != StoreKind::Postgres {
            return errors;
        }
        let url = &self.url;
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"));
        // user:password@ in the authority: the URL is printed in messages.
        let password_in_url = rest.and_then(userinfo).is_some_and(|user| user.contains(':'));
        if rest.is_none() {
            errors.push(doc.invalid(
                "store",
                "url",
                format!("{url:?}"),
                "give the database as postgres://USER@HOST:PORT/DATABASE",
            ));
        } else if password_in_url {
            errors.push(doc.invalid(
                "store",
                "url",
                "(a URL with a password)".into(),
                "keep the password out of the URL (messages show the URL): put it in a file named by password_file",
            ));
        }
        if self.sslmode == SslMode::VerifyFull && self.ca_file.is_none() {
            errors.push(doc.invalid(
                "store",
                "ca_file",
                "(unset)".into(),
                "sslmode = \"verify-full\" checks the server's certificate against ca_file: give the CA's PEM file \
                 (Debian's bundle: /etc/ssl/certs/ca-certificates.crt), or sslmode = \"disable\" for a Unix socket or loopback",
            ));
        }
        if !(1..=256).contains(&self.pool_size) {
            errors.push(doc.invalid(
                "store",
                "pool_size",
                self.pool_size.to_string(),
                "use 1 to 256 connections",
            ));
        }
        if !(1..=60).contains(&self.timeout) {
            errors.push(doc.invalid("store", "timeout", self.timeout.to_string(), "use 1 to 60 seconds"));
        }
        errors
    }
}

/// Whether a `scheme://user:password@host/…` URL carries a password (which messages and
/// `ps` would show).
pub fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| userinfo(rest))
        .is_some_and(|user| user.contains(':'))
}

/// The `user[:password]` before `@` in a URL's authority (`rest` follows `scheme://`).
fn userinfo(rest: &str) -> Option<&str> {
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// Where sessions, regulation and invitations are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// With the store: SQLite tables, or this process's memory beside another store.
    Local,
    /// A Redis (or Valkey) server shared by every gateway.
    Redis,
}

/// `[state]`: sessions, regulation counts and bans, and enrollment links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `local` (default) or `redis`.
    pub backend: StateKind,
    /// Redis: `redis://HOST:PORT/DB`, `rediss://…` (TLS) or `unix:///path` (no password in it).
    pub url: String,
    /// Redis 6+ ACL user; empty = the default user.
    pub username: String,
    /// Redis: a file holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Redis over TLS: PEM file of the CA(s) that signed the server's certificate (default:
    /// the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Redis: the start of every key, so several sites can share a server.
    pub key_prefix: String,
    /// Redis: seconds a command may take before the request that needs it is refused (503).
    pub timeout: u64,
    /// Redis Sentinel: the monitored primary's name (with `sentinels`, in place of `url`).
    pub master_name: String,
    /// Redis Sentinel: `HOST:PORT` of each sentinel, asked in turn where the primary is.
    pub sentinels: Vec<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateKind::Local,
            url: String::new(),
            username: String::new(),
            password_file: None,
            ca_file: None,
            key_prefix: "portcullis:".into(),
            timeout: 5,
            master_name: String::new(),
            sentinels: Vec::new(),
        }
    }
}

impl StateConfig {
    /// `master_name` and `sentinels` go together, and replace `url`.
    fn sentinel_problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.master_name.is_empty() || self.sentinels.is_empty() {
            errors.push(doc.invalid(
                "state",
                if self.master_name.is_empty() { "master_name" } else { "sentinels" },
                "(not set)".into(),
                "set master_name (the primary's name in the sentinels' configuration) and sentinels = [\"HOST:PORT\", …] together",
            ));
        }
        if !self.url.is_empty() {
            errors.push(doc.invalid(
                "state",
                "url",
                format!("{:?}", self.url),
                "with sentinels, the primary is asked of them: remove url",
            ));
        }
        for s in &self.sentinels {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                errors.push(doc.invalid(
                    "state",
                    "sentinels",
                    format!("{s:?}"),
                    "give each sentinel as HOST:PORT, such as \"10.0.0.1:26379\"",
                ));
            }
        }
        errors
    }

    /// Whether the primary is found through Redis Sentinel.
    pub fn uses_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.backend != StateKind::Redis {
            return errors;
        }
        let url = &self.url;
        let rest = ["redis://", "rediss://", "unix://"]
            .iter()
            .find_map(|s| url.strip_prefix(s));
        let credentials_in_url = rest.and_then(userinfo).is_some();
        if !self.sentinels.is_empty() || !self.master_name.is_empty() {
            errors.extend(self.sentinel_problems(doc));
        } else if rest.is_none() {
            errors.push(doc.invalid(
                "state",
                "url",
                format!("{url:?}"),
                "give the server as redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or unix:///PATH",
            ));
        } else if credentials_in_url {
            errors.push(doc.invalid(
                "state",
                "url",
                "(a URL with credentials)".into(),
                "keep the user and password out of the URL (messages show it): use username and password_file",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(doc.invalid(
                "state",
                "key_prefix",
                format!("{:?}", self.key_prefix),
                "give a prefix without spaces, such as \"portcullis:\"",
            ));
        }
        if !(1..=60).contains(&self.timeout) {
            errors.push(doc.invalid("state", "timeout", self.timeout.to_string(), "use 1 to 60 seconds"));
        }
        errors
    }
}

/// `[pam]`: how `pam_portcullis.so` reaches the users when it reads this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PamConfig {
    /// A Unix socket the gateway answers the PAM module on (empty: the module opens the
    /// store itself, which it can only do for SQLite and users files).
    pub socket: String,
}

impl PamConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        if self.socket.is_empty() || Path::new(&self.socket).is_absolute() {
            return Vec::new();
        }
        vec![doc.invalid(
            "pam",
            "socket",
            format!("{:?}", self.socket),
            "give an absolute path, such as \"/run/portcullis/pam.sock\"",
        )]
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

/// The sections the core reads and validates.
pub const CORE_SECTIONS: &[&str] = &[
    "store",
    "otp",
    "lockout",
    "first_factor",
    "session",
    "regulation",
    "access",
    "basic",
    "invite",
    "state",
    "pam",
    "ldap",
    "duo",
    "webauthn",
];

/// Sections the `portcullis` gateway owns and validates; the core accepts them unread, so
/// that every reader of the file (the PAM module too) refuses only misspelled sections.
pub const GATEWAY_SECTIONS: &[&str] = &["server", "apache", "proxy"];

/// Every problem found in a configuration file, one per line, in the order of the file.
#[derive(Debug, thiserror::Error)]
#[error("{}", one_per_line(.0))]
pub struct ConfigErrors(Vec<ConfigError>);

fn one_per_line(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigErrors {
    /// `Ok` when `errors` is empty, else all of them sorted by line (stable).
    pub fn check(mut errors: Vec<ConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(ConfigError::line);
        Err(ConfigErrors(errors))
    }

    /// The problems, in the order of their lines.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(ConfigError::line);
        ConfigErrors(errors)
    }
}

impl ConfigError {
    /// The 1-based line at fault (0 when there is none: an unreadable file, a default).
    pub fn line(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// The core's part of the configuration file (the gateway's sections are read by it).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[store]`.
    pub store: StoreConfig,
    /// `[otp]`.
    pub otp: OtpConfig,
    /// `[lockout]`.
    pub lockout: LockoutConfig,
    /// `[first_factor]`.
    pub first_factor: FirstFactorConfig,
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
    /// `[state]`.
    pub state: StateConfig,
    /// `[pam]`.
    pub pam: PamConfig,
    /// `[ldap]`.
    pub ldap: LdapConfig,
    /// `[duo]`.
    pub duo: DuoConfig,
    /// `[webauthn]`.
    pub webauthn: WebauthnConfig,
    /// Where the file was read from (relative paths are resolved against its directory).
    pub path: PathBuf,
}

/// Reads a configuration file's text, or says how to point at it.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: explain_unreadable(path, &e),
    })
}

impl OtpConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let o = self;
        let checks = [
            (
                !(6..=10).contains(&o.digits),
                "digits",
                o.digits.to_string(),
                "use 6 to 10",
            ),
            (
                !(1..=3600).contains(&o.period),
                "period",
                o.period.to_string(),
                "use 1 to 3600 seconds (30 is standard)",
            ),
            (
                o.window > 10,
                "window",
                o.window.to_string(),
                "use 0 to 10 steps; wider windows make guessing easier",
            ),
            (
                o.hotp_look_ahead > 1000,
                "hotp_look_ahead",
                o.hotp_look_ahead.to_string(),
                "use 0 to 1000",
            ),
            (
                o.motp_window > 60,
                "motp_window",
                o.motp_window.to_string(),
                "use 0 to 60 ten-second steps",
            ),
            (
                o.linger > 86_400,
                "linger",
                o.linger.to_string(),
                "use at most 86400 seconds",
            ),
        ];
        checks
            .into_iter()
            .filter(|(bad, ..)| *bad)
            .map(|(_, key, value, reason)| doc.invalid("otp", key, value, reason))
            .collect()
    }
}

impl SessionConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (key, value) in [("absolute", self.absolute), ("idle", self.idle)] {
            if value == 0 {
                errors.push(doc.invalid("session", key, "0".into(), "use a positive number of seconds"));
            }
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            errors.push(doc.invalid(
                "session",
                "cookie_name",
                format!("{:?}", self.cookie_name),
                "use letters, digits, _ and -",
            ));
        }
        errors
    }
}

impl RegulationConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        if self.max_retries == 0 {
            return Vec::new();
        }
        [("find_time", self.find_time), ("ban_time", self.ban_time)]
            .into_iter()
            .filter(|(_, v)| *v == 0)
            .map(|(key, _)| {
                doc.invalid(
                    "regulation",
                    key,
                    "0".into(),
                    "use a positive number of seconds, or max_retries = 0 to turn bans off",
                )
            })
            .collect()
    }
}

impl InviteConfig {
    /// Longest lifetime of an enrollment link: a month.
    const MAX_TTL: u64 = 30 * 24 * 3600;

    fn problems(&self, doc: &Document<'_>) -> Option<ConfigError> {
        (!(60..=Self::MAX_TTL).contains(&self.ttl)).then(|| {
            doc.invalid(
                "invite",
                "ttl",
                self.ttl.to_string(),
                "use 60 seconds to 2592000 (30 days): a link is a credential until it is used",
            )
        })
    }
}

/// `[session] store = "sqlite"` over a users-file store, which has no table for sessions.
fn session_store_problem(doc: &Document<'_>, store: &StoreConfig, session: &SessionConfig) -> Option<ConfigError> {
    (session.store == SessionStoreKind::Sqlite && store.backend != StoreKind::Sqlite).then(|| {
        doc.invalid(
            "session",
            "store",
            "\"sqlite\"".into(),
            &format!(
                "the {} store ([store] backend) keeps no sessions: set [session] store = \"memory\", or keep users in backend = \"sqlite\"",
                match store.backend {
                    StoreKind::Postgres => "PostgreSQL",
                    _ => "users-file",
                }
            ),
        )
    })
}

impl AccessConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Err(e) = crate::access::AccessControl::new(&self.rules, self.default_policy) {
            errors.push(ConfigError::Invalid {
                path: doc.path().to_path_buf(),
                line: doc
                    .line_of("access.rules", "policy")
                    .max(doc.line_of("access", "rules")),
                key: "access.rules".into(),
                value: String::new(),
                reason: e.to_string(),
            });
        }
        if let Err(e) = crate::redirect::ReturnTargets::new(&self.protected_domains) {
            errors.push(doc.invalid(
                "access",
                "protected_domains",
                format!("{:?}", self.protected_domains),
                &e.to_string(),
            ));
        }
        errors
    }
}

impl FirstFactorConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        if self.htpasswd.is_some() && self.htdigest.is_some() {
            // Only one file is asked: a user only in the other one could never sign in.
            return vec![doc.invalid(
                "first_factor",
                "htdigest",
                "(set)".into(),
                "set htpasswd or htdigest, not both: passwords are checked against one file; \
move the users into one of them (or into portcullis with `portcullis user passwd`)",
            )];
        }
        if self.htdigest.is_some() && self.htdigest_realm.is_none() {
            return vec![doc.invalid(
                "first_factor",
                "htdigest",
                "(set)".into(),
                "also set htdigest_realm, the realm of the lines to use",
            )];
        }
        Vec::new()
    }
}

/// A live pam_oath file with a lockout promised: its format has no failure count, so the
/// lockout would never happen.
fn lockout_problem(doc: &Document<'_>, store: &StoreConfig, lockout: &LockoutConfig) -> Option<ConfigError> {
    (store.backend == StoreKind::PamOath && lockout.max_failures > 0).then(|| ConfigError::Invalid {
        path: doc.path().to_path_buf(),
        line: doc
            .line_of("lockout", "max_failures")
            .max(doc.line_of("store", "backend")),
        key: "lockout.max_failures".into(),
        value: lockout.max_failures.to_string(),
        reason: "a pam_oath users file has no field for failures or locks, so no one can be locked out in it: \
set [lockout] max_failures = 0 (wrong codes are still banned per client by [regulation], and fail2ban reads the log), \
or keep users in backend = \"sqlite\" or \"mod_authn_otp\", which count failures"
            .into(),
    })
}

impl Config {
    /// Reads and validates a configuration file; every problem found is returned.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses and validates configuration text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        let doc = Document::parse(text, path)?;
        let mut errors = Vec::new();
        let config = Self::read(&doc, &mut errors);
        ConfigErrors::check(errors)?;
        Ok(config)
    }

    /// Reads and validates the core's sections of `doc` and refuses unknown sections, adding
    /// every problem to `errors`; a section that could not be read is left at its defaults.
    pub fn read(doc: &Document<'_>, errors: &mut Vec<ConfigError>) -> Self {
        errors.extend(doc.unknown_sections(&[CORE_SECTIONS, GATEWAY_SECTIONS].concat()));
        let store = doc.section::<StoreConfig>("store", errors);
        let otp = doc.section::<OtpConfig>("otp", errors);
        let lockout = doc.section::<LockoutConfig>("lockout", errors);
        let first_factor = doc.section::<FirstFactorConfig>("first_factor", errors);
        let session = doc.section::<SessionConfig>("session", errors);
        let regulation = doc.section::<RegulationConfig>("regulation", errors);
        let access = doc.section::<AccessConfig>("access", errors);
        let basic = doc.section::<BasicConfig>("basic", errors);
        let invite = doc.section::<InviteConfig>("invite", errors);
        let state = doc.section::<StateConfig>("state", errors);
        let pam = doc.section::<PamConfig>("pam", errors);
        let ldap = doc.section::<LdapConfig>("ldap", errors);
        let duo = doc.section::<DuoConfig>("duo", errors);
        errors.extend(duo.iter().flat_map(|d| d.problems(doc)));
        let webauthn = doc.section::<WebauthnConfig>("webauthn", errors);
        errors.extend(webauthn.iter().flat_map(|w| w.problems(doc)));
        errors.extend(ldap.iter().flat_map(|l| l.problems(doc)));
        if let (Some(l), Some(f)) = (&ldap, &first_factor)
            && l.is_set()
            && (f.htpasswd.is_some() || f.htdigest.is_some())
        {
            errors.push(doc.invalid(
                "first_factor",
                if f.htpasswd.is_some() { "htpasswd" } else { "htdigest" },
                "(set)".into(),
                "[ldap] is set too: passwords are checked against one source; remove one of them",
            ));
        }
        errors.extend(pam.iter().flat_map(|p| p.problems(doc)));
        errors.extend(state.iter().flat_map(|s| s.problems(doc)));
        errors.extend(store.iter().flat_map(|s| s.problems(doc)));
        errors.extend(otp.iter().flat_map(|o| o.problems(doc)));
        errors.extend(session.iter().flat_map(|s| s.problems(doc)));
        errors.extend(access.iter().flat_map(|a| a.problems(doc)));
        errors.extend(regulation.iter().flat_map(|r| r.problems(doc)));
        errors.extend(invite.iter().flat_map(|i| i.problems(doc)));
        if let (Some(s), Some(l)) = (&store, &lockout) {
            errors.extend(lockout_problem(doc, s, l));
        }

        errors.extend(first_factor.iter().flat_map(|f| f.problems(doc)));
        Config {
            store: store.unwrap_or_default(),
            otp: otp.unwrap_or_default(),
            lockout: lockout.unwrap_or_default(),
            first_factor: first_factor.unwrap_or_default(),
            session: session.unwrap_or_default(),
            regulation: regulation.unwrap_or_default(),
            access: access.unwrap_or_default(),
            basic: basic.unwrap_or_default(),
            invite: invite.unwrap_or_default(),
            state: state.unwrap_or_default(),
            pam: pam.unwrap_or_default(),
            ldap: ldap.unwrap_or_default(),
            duo: duo.unwrap_or_default(),
            webauthn: webauthn.unwrap_or_default(),
            path: doc.path().to_path_buf(),
        }
    }

    /// What only a running gateway cannot do with this configuration (commands and PAM
    /// can): `serve` refuses it and `config check` reports it.
    pub fn serve_problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        if self.state.backend == StateKind::Redis {
            return Vec::new(); // sessions live in Redis
        }
        session_store_problem(doc, &self.store, &self.session)
            .into_iter()
            .collect()
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
    fn sentinels_replace_the_url_and_need_the_primarys_name() {
        let p = Path::new("/x.toml");
        let ok = Config::parse(
            "[state]\nbackend = \"redis\"\nmaster_name = \"mymaster\"\nsentinels = [\"10.0.0.1:26379\"]\n",
            p,
        )
        .unwrap();
        assert!(ok.state.uses_sentinel());
        for (text, key) in [
            ("sentinels = [\"10.0.0.1:26379\"]\n", "state.master_name"),
            ("master_name = \"m\"\n", "state.sentinels"),
            ("master_name = \"m\"\nsentinels = [\"10.0.0.1\"]\n", "state.sentinels"),
            (
                "master_name = \"m\"\nsentinels = [\"h:1\"]\nurl = \"redis://h:6379/0\"\n",
                "state.url",
            ),
        ] {
            let e = Config::parse(&format!("[state]\nbackend = \"redis\"\n{text}"), p)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

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
        assert_eq!(c.store.backend, StoreKind::Sqlite);
        assert_eq!(c.resolve(&c.store.path), PathBuf::from("/etc/portcullis.db"));
    }

    #[test]
    fn a_password_is_found_only_in_the_authority_of_a_url() {
        assert!(url_has_password("postgres://u:p@db/portcullis"));
        assert!(url_has_password("rediss://:p@cache:6380/0"));
        assert!(!url_has_password("postgres://u@db/portcullis"));
        assert!(!url_has_password("postgres://db/p?options=a:b@c"));
        assert!(!url_has_password("not a url"));
    }

    #[test]
    fn a_postgres_store_needs_a_url_without_a_password_and_a_ca_to_verify() {
        let parse = |text: &str| Config::parse(text, Path::new("/etc/p.toml"));
        let ok = "[store]\nbackend = \"postgres\"\nurl = \"postgres://portcullis@db.example.com/portcullis\"\nca_file = \"/etc/ssl/certs/ca-certificates.crt\"\n";
        assert!(parse(ok).is_ok(), "{:?}", parse(ok).err());
        let e = parse("[store]\nbackend = \"postgres\"\nca_file = \"ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url = \"\": give the database as postgres://"), "{e}");
        let e = parse("[store]\nbackend = \"postgres\"\nurl = \"postgres://u:hunter2@db/p\"\nca_file = \"ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("keep the password out of the URL") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse("[store]\nbackend = \"postgres\"\nurl = \"postgres://u@db/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.ca_file") && e.contains("verify-full"), "{e}");
        let plain = "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/p\"\nsslmode = \"disable\"\n";
        assert!(parse(plain).is_ok());
        let e = parse(&format!("{plain}timeout = 0\npool_size = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store.timeout = 0") && e.contains("store.pool_size = 0"),
            "{e}"
        );
        let e = parse("[store]\nsslmode = \"require\"\n").unwrap_err().to_string();
        assert!(e.contains("store.sslmode") && e.contains("verify-full"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_line_in_file_order() {
        let text = "[session]\nidle = 0\n[otp]\ndigits = 4\nwindow = 11\n[lockout]\nmax_failures = \"x\"\n";
        let e = Config::parse(text, Path::new("p.toml")).unwrap_err();
        let lines: Vec<String> = e.errors().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(lines[0].starts_with("p.toml:2: session.idle = 0"), "{e}");
        assert!(lines[1].starts_with("p.toml:4: otp.digits = 4"), "{e}");
        assert!(lines[2].starts_with("p.toml:5: otp.window = 11"), "{e}");
        assert!(
            lines[3].starts_with("p.toml:7:16: lockout.max_failures: invalid type")
                && lines[3].contains("expected a whole number, 0 or more (no quotes)"),
            "{e}"
        );
        assert_eq!(e.to_string(), lines.join("\n"));
    }

    #[test]
    fn gateway_sections_are_accepted_unread_and_misspelled_ones_refused() {
        let text = "[server]\nlisten = 5\nanything = true\n[apache]\n[proxy]\nupstream = \"x\"\n";
        assert!(Config::parse(text, Path::new("p.toml")).is_ok());
        let e = Config::parse("[otp]\n\n[sever]\nlisten = \"x\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:3:2:") && e.contains("`sever`") && e.contains("`server`"),
            "{e}"
        );
        let e = Config::parse("window = 1\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:1:1:") && e.contains("`window`"), "{e}");
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

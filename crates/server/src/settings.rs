//! The gateway's sections of `portcullis.toml` (`[server]`, `[apache]`, `[proxy]`, TLS),
//! read with the core's sections from one parse so that every problem is reported at once.

use portcullis_core::Config;
use portcullis_core::config::{ConfigError, ConfigErrors, Document};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file: the core's part and the gateway's sections.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The core's sections (store, otp, session, access...).
    pub core: Config,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[apache]`.
    pub apache: ApacheConfig,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// What `serve` cannot run with (every other command can): `config check` reports
    /// these as errors, `serve` refuses to start.
    pub serve_problems: Vec<String>,
    /// What is allowed but probably not meant: `config check` and `serve` print these.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Reads and validates a configuration file; every problem found is returned.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::parse(&portcullis_core::config::read_text(path)?, path)
    }

    /// Parses and validates configuration text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        let doc = Document::parse(text, path)?;
        let mut errors = Vec::new();
        let core = Config::read(&doc, &mut errors);
        let server = doc.section::<ServerConfig>("server", &mut errors);
        let apache = doc.section::<ApacheConfig>("apache", &mut errors);
        let proxy = doc.section::<ProxyConfig>("proxy", &mut errors);
        errors.extend(server.iter().flat_map(|s| s.problems(&doc)));
        errors.extend(apache.iter().flat_map(|a| a.problems(&doc)));
        if let (Some(p), Some(s)) = (&proxy, &server) {
            errors.extend(p.problems(&doc, s));
        }
        ConfigErrors::check(errors)?;
        let mut settings = Settings {
            core,
            server: server.unwrap_or_default(),
            apache: apache.unwrap_or_default(),
            proxy: proxy.unwrap_or_default(),
            serve_problems: Vec::new(),
            warnings: Vec::new(),
        };
        settings.serve_problems = settings.find_serve_problems(&doc);
        settings.warnings = settings.find_warnings(&doc);
        Ok(settings)
    }

    /// See [`Settings::serve_problems`]: files and directories `serve` needs, and what it
    /// refuses on a listener that is not loopback.
    fn find_serve_problems(&self, doc: &Document<'_>) -> Vec<String> {
        let mut out: Vec<String> = self.core.serve_problems(doc).iter().map(ToString::to_string).collect();
        let loopback = self
            .server
            .listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !self.core.session.secure && !loopback {
            out.push(
                doc.invalid(
                    "session",
                    "secure",
                    "false".into(),
                    &format!(
                        "plain-HTTP cookies are allowed only on a loopback listener, and [server] listen is {}: \
                         keep secure = true and put HTTPS in front (or set tls_cert/tls_key)",
                        self.server.listen
                    ),
                )
                .to_string(),
            );
        }
        for (key, file) in [("tls_cert", &self.server.tls_cert), ("tls_key", &self.server.tls_key)] {
            if let Some(file) = file
                && !self.core.resolve(file).exists()
            {
                out.push(
                    doc.invalid(
                        "server",
                        key,
                        format!("{:?}", file.display().to_string()),
                        "there is no such file: give the PEM file's path",
                    )
                    .to_string(),
                );
            }
        }
        let w = &self.core.webauthn;
        if w.enabled
            && let Err(e) = portcullis_webauthn::rp_id_for(w, &self.server.portal_url, &self.core.session.domain)
        {
            let key = if w.rp_id.is_empty() { "enabled" } else { "rp_id" };
            out.push(format!(
                "{}:{}: {e}",
                doc.path().display(),
                doc.line_of("webauthn", key)
            ));
        }
        if let Some(file) = w.attestation_ca_file.as_ref().filter(|_| w.enabled)
            && !self.core.resolve(file).is_file()
        {
            out.push(
                doc.invalid(
                    "webauthn",
                    "attestation_ca_file",
                    format!("{:?}", file.display().to_string()),
                    "there is no such file: give the PEM file of the authenticator makers' attestation roots",
                )
                .to_string(),
            );
        }
        let socket = Path::new(&self.apache.check_socket);
        if let Some(dir) = socket.parent().filter(|_| !self.apache.check_socket.is_empty())
            && !self.core.resolve(dir).is_dir()
        {
            out.push(
                doc.invalid(
                    "apache",
                    "check_socket",
                    format!("{:?}", self.apache.check_socket),
                    &format!(
                        "its directory {} does not exist: create it for the gateway's user \
                         (`install -d -o portcullis -m 0755 {}`; under systemd, RuntimeDirectory=portcullis)",
                        dir.display(),
                        dir.display()
                    ),
                )
                .to_string(),
            );
        }
        out
    }

    /// See [`Settings::warnings`].
    fn find_warnings(&self, doc: &Document<'_>) -> Vec<String> {
        let mut out = Vec::new();
        let server = &self.server;
        let portal_host = host_of(&server.portal_url);
        let allowed = portcullis_core::redirect::ReturnTargets::new(&self.core.access.protected_domains)
            .is_ok_and(|t| t.check(&server.default_redirect).is_some());
        if !allowed && host_of(&server.default_redirect) != portal_host {
            out.push(format!(
                "{}:{}: server.default_redirect = {:?} is outside portal_url's host and [access] protected_domains: \
                 people land there after a login without a return address; use {:?} (the portal's front page)",
                doc.path().display(),
                doc.line_of("server", "default_redirect"),
                server.default_redirect,
                format!("{}/", server.portal_url.trim_end_matches('/'))
            ));
        }
        let local = matches!(portal_host, "127.0.0.1" | "localhost" | "[::1]");
        if self.core.session.secure && server.portal_url.starts_with("http://") && !local && server.tls_cert.is_none() {
            out.push(format!(
                "{}:{}: server.portal_url = {:?} is plain HTTP but [session] secure = true: browsers keep HTTPS-only \
                 cookies from HTTPS pages only, so no login would stick; give the portal's https:// address",
                doc.path().display(),
                doc.line_of("server", "portal_url"),
                server.portal_url
            ));
        }
        let session = &self.core.session;
        if session.idle > session.absolute {
            out.push(format!(
                "{}:{}: session.idle = {} is longer than absolute ({}): every session ends at absolute first, so idle does nothing; make idle at most absolute",
                doc.path().display(),
                doc.line_of("session", "idle").max(doc.line_of("session", "absolute")),
                session.idle,
                session.absolute
            ));
        }
        let f = &self.core.first_factor;
        for (key, file) in [("htpasswd", &f.htpasswd), ("htdigest", &f.htdigest)] {
            if let Some(file) = file
                && !self.core.resolve(file).exists()
            {
                out.push(format!(
                    "{}:{}: first_factor.{key} = {:?}: there is no such file, so every user whose password is checked there is refused",
                    doc.path().display(),
                    doc.line_of("first_factor", key),
                    file.display().to_string()
                ));
            }
        }
        let l = &self.core.ldap;
        for (key, file) in [("ca_file", &l.ca_file), ("bind_password_file", &l.bind_password_file)] {
            if let Some(file) = file
                && l.is_set()
                && !self.core.resolve(file).exists()
            {
                out.push(format!(
                    "{}:{}: ldap.{key} = {:?}: there is no such file, so `serve` cannot reach the LDAP server",
                    doc.path().display(),
                    doc.line_of("ldap", key),
                    file.display().to_string()
                ));
            }
        }
        let d = &self.core.duo;
        for (key, file) in [("secret_key_file", &d.secret_key_file), ("ca_file", &d.ca_file)] {
            if let Some(file) = file
                && d.is_set()
                && !self.core.resolve(file).exists()
            {
                out.push(format!(
                    "{}:{}: duo.{key} = {:?}: there is no such file, so `serve` cannot start with [duo]",
                    doc.path().display(),
                    doc.line_of("duo", key),
                    file.display().to_string()
                ));
            }
        }
        if d.is_set() && d.failmode == portcullis_core::config::FailMode::Open {
            out.push(format!(
                "{}:{}: duo.failmode = \"open\": while Duo cannot be reached, logins go on with the password alone (each logged at WARN)",
                doc.path().display(),
                doc.line_of("duo", "failmode"),
            ));
        }
        out
    }
}

/// The host of an `http(s)://host[:port]/...` URL ("" if there is none).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
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

impl ServerConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut invalid =
            |key: &str, value: String, reason: &str| errors.push(doc.invalid("server", key, value, reason));
        for (key, value) in [
            ("portal_url", &self.portal_url),
            ("default_redirect", &self.default_redirect),
        ] {
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                invalid(key, format!("{value:?}"), "give an absolute http:// or https:// URL");
            }
        }
        let base = self.base_path();
        if !base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'))
            || base.contains("//")
        {
            invalid(
                "portal_url",
                format!("{:?}", self.portal_url),
                "the path may hold only letters, digits and / . - _ (no query or fragment)",
            );
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            invalid(
                "listen",
                format!("{:?}", self.listen),
                "give an address and port such as 127.0.0.1:9091",
            );
        }
        if let Err(e) = portcullis_core::client::TrustedProxies::new(&self.trusted_proxies) {
            invalid("trusted_proxies", format!("{:?}", self.trusted_proxies), &e.to_string());
        }
        if self.max_connections == 0 {
            invalid("max_connections", "0".into(), "use at least 1");
        }
        if !(1..=300).contains(&self.header_timeout) {
            invalid(
                "header_timeout",
                self.header_timeout.to_string(),
                "use 1 to 300 seconds",
            );
        }
        let metrics = &self.metrics_listen;
        if !metrics.is_empty() && metrics.parse::<SocketAddr>().is_err() {
            invalid(
                "metrics_listen",
                format!("{metrics:?}"),
                "give an address and port such as 127.0.0.1:9093 (keep it off the public network), or \"\" for off",
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let (key, other) = if self.tls_cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            invalid(
                key,
                "(set)".into(),
                &format!("also set {other}: HTTPS needs the certificate chain and its private key"),
            );
        }
        errors
    }
}

impl ApacheConfig {
    fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mode = self.check_socket_mode;
        if mode & !0o777 != 0 || mode & 0o600 != 0o600 || mode & 0o002 != 0 {
            errors.push(doc.invalid(
                "apache",
                "check_socket_mode",
                format!("0o{mode:o}"),
                "give the permission bits in octal such as 0o660 (owner read/write, no write for others)",
            ));
        }
        let fcgi = &self.fastcgi_listen;
        if !fcgi.is_empty() && !fcgi.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) {
            errors.push(doc.invalid(
                "apache",
                "fastcgi_listen",
                format!("{fcgi:?}"),
                "give a loopback address and port such as 127.0.0.1:9092 (FastCGI has no authentication of its own), or \"\" for off",
            ));
        }
        errors
    }
}

impl ProxyConfig {
    fn problems(&self, doc: &Document<'_>, server: &ServerConfig) -> Option<ConfigError> {
        if self.upstream.is_empty() {
            return None;
        }
        let invalid = |reason: &str| doc.invalid("proxy", "upstream", format!("{:?}", self.upstream), reason);
        if self.authority().is_none() {
            return Some(invalid(
                "give the app's plain-HTTP address such as http://127.0.0.1:8080 (no path; TLS to the app is not supported), or \"\" for off",
            ));
        }
        server.base_path().is_empty().then(|| {
            invalid(
                "reverse-proxy mode needs [server] portal_url with a path of its own on the app's host, such as https://app.example.com/.portcullis, so its pages do not hide the app's",
            )
        })
    }
}

#[cfg(test)]
mod tests;

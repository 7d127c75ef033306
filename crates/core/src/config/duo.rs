//! `[duo]`: Duo push (and Duo passcodes) as a second factor through Duo's Auth API v2.

use super::{ConfigError, Document};
use serde::Deserialize;
use std::path::PathBuf;

/// What happens when Duo cannot be reached (or answers with a server error) before a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// No login while Duo is out of reach (the default).
    #[default]
    Closed,
    /// The push is skipped and the login goes on (logged at WARN every time).
    Open,
}

/// `[duo]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuoConfig {
    /// The Auth API host, `api-XXXXXXXX.duosecurity.com` (`HOST:PORT` for a stand-in).
    pub api_host: String,
    /// The integration key (`DI…`).
    pub integration_key: String,
    /// A file holding the secret key (first line).
    pub secret_key_file: Option<PathBuf>,
    /// Duo out of reach: `closed` refuses the login, `open` skips the push.
    pub failmode: FailMode,
    /// The Duo user name for a portcullis user: `{user}` is replaced by the name.
    pub username: String,
    /// Show the service's host and the client's address in the push.
    pub push_info: bool,
    /// Seconds a person has to approve a push.
    pub timeout: u64,
    /// Extra CA to trust for the Auth API (tests, TLS-inspecting proxies).
    pub ca_file: Option<PathBuf>,
}

impl Default for DuoConfig {
    fn default() -> Self {
        DuoConfig {
            api_host: String::new(),
            integration_key: String::new(),
            secret_key_file: None,
            failmode: FailMode::Closed,
            username: "{user}".into(),
            push_info: true,
            timeout: 60,
            ca_file: None,
        }
    }
}

impl DuoConfig {
    /// Whether `[duo]` is configured at all.
    pub fn is_set(&self) -> bool {
        !self.api_host.is_empty()
    }

    /// The Duo user name of portcullis user `user`.
    pub fn duo_username(&self, user: &str) -> String {
        self.username.replace("{user}", user)
    }

    pub(super) fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, value: String, reason: &str| errors.push(doc.invalid("duo", key, value, reason));
        if self.api_host.is_empty() {
            if doc.line_of("duo", "integration_key") > 0 || doc.line_of("duo", "secret_key_file") > 0 {
                bad(
                    "api_host",
                    "(not set)".into(),
                    "name the Auth API host from the Duo Admin Panel, such as \"api-XXXXXXXX.duosecurity.com\"",
                );
            }
            return errors;
        }
        if self.api_host.contains('/') || self.api_host.contains(char::is_whitespace) {
            bad(
                "api_host",
                format!("{:?}", self.api_host),
                "give the host name alone, such as \"api-XXXXXXXX.duosecurity.com\" (no https://, no path)",
            );
        }
        if self.integration_key.is_empty() {
            bad(
                "integration_key",
                "(not set)".into(),
                "copy the integration key (DI…) of the Auth API application from the Duo Admin Panel",
            );
        }
        if self.secret_key_file.is_none() {
            bad(
                "secret_key_file",
                "(not set)".into(),
                "name a file (mode 0600) holding the secret key of the Auth API application",
            );
        }
        if !self.username.contains("{user}") {
            bad(
                "username",
                format!("{:?}", self.username),
                "it must contain {user}, which is replaced by the portcullis user name",
            );
        }
        if !(10..=600).contains(&self.timeout) {
            bad(
                "timeout",
                self.timeout.to_string(),
                "give the seconds a person has to approve, 10 to 600",
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, FailMode};
    use std::path::Path;

    fn errors(section: &str) -> String {
        match Config::parse(section, Path::new("/etc/portcullis/portcullis.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_section_reads_with_safe_defaults() {
        let c = Config::parse(
            "[duo]\napi_host = \"api-1.duosecurity.com\"\nintegration_key = \"DIX\"\nsecret_key_file = \"duo.skey\"\nusername = \"{user}@example.com\"\n",
            Path::new("/x.toml"),
        )
        .unwrap();
        assert!(c.duo.is_set());
        assert_eq!(c.duo.failmode, FailMode::Closed, "closed unless asked");
        assert_eq!((c.duo.timeout, c.duo.push_info), (60, true));
        assert_eq!(c.duo.duo_username("alice"), "alice@example.com");
        assert!(!Config::default().duo.is_set());
    }

    #[test]
    fn mistakes_name_the_key_and_what_to_write() {
        let e = errors("[duo]\nintegration_key = \"DIX\"\n");
        assert!(e.contains("duo.api_host") && e.contains("api-XXXXXXXX"), "{e}");
        let e = errors(
            "[duo]\napi_host = \"https://api-1.duosecurity.com/\"\nintegration_key = \"DIX\"\nsecret_key_file = \"k\"\n",
        );
        assert!(e.contains("no https://"), "{e}");
        let e = errors("[duo]\napi_host = \"api-1.duosecurity.com\"\n");
        assert!(
            e.contains("duo.integration_key") && e.contains("duo.secret_key_file"),
            "{e}"
        );
        let e = errors(
            "[duo]\napi_host = \"a\"\nintegration_key = \"DIX\"\nsecret_key_file = \"k\"\nusername = \"x\"\ntimeout = 5\n",
        );
        assert!(
            e.contains("duo.username") && e.contains("{user}") && e.contains("duo.timeout"),
            "{e}"
        );
        let e = errors("[duo]\nfailmode = \"safe\"\n");
        assert!(e.contains("failmode"), "{e}");
    }
}

//! `[ldap]`: passwords, groups, names and mail checked against an LDAP server (OpenLDAP,
//! Active Directory, FreeIPA, lldap), with presets for each, validated here.

use super::{ConfigError, Document};
use serde::Deserialize;
use std::path::PathBuf;

/// Which server the filters and attributes default for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// OpenLDAP with inetOrgPerson people and groupOfNames groups (the default).
    #[default]
    OpenLdap,
    /// Microsoft Active Directory: sAMAccountName, disabled accounts excluded.
    ActiveDirectory,
    /// FreeIPA: uid, locked accounts (nsAccountLock) excluded.
    FreeIpa,
    /// lldap: uid, groupOfUniqueNames groups.
    Lldap,
}

/// One URL, or several tried in turn (failover).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Default for Urls {
    fn default() -> Self {
        Urls::Many(Vec::new())
    }
}

/// `[ldap]`, as written; the accessors fill in the preset of `implementation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldaps://HOST[:PORT]` or `ldap://HOST[:PORT]` (with `start_tls`); several = failover.
    url: Urls,
    /// Upgrade `ldap://` connections with StartTLS before anything is sent.
    pub start_tls: bool,
    /// PEM file of the CA(s) that signed the server's certificate (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// The service account that searches for people (empty: search anonymously).
    pub bind_dn: String,
    /// A file holding the service account's password (first line), re-read when it changes.
    pub bind_password_file: Option<PathBuf>,
    /// Where people (and groups) are searched.
    pub base_dn: String,
    /// Where groups are searched, if not under `base_dn`.
    group_base_dn: Option<String>,
    /// Presets for the filters and attributes below.
    pub implementation: Implementation,
    /// Finds the one entry for what a person typed; `{input}` is the typed name, escaped.
    user_filter: Option<String>,
    /// The attribute whose value is the user's name in portcullis, whatever was typed.
    username_attribute: Option<String>,
    /// Finds a user's groups; `{dn}` is the user's entry, `{username}` its name (escaped).
    group_filter: Option<String>,
    /// Or: the attribute of the user's entry listing its groups' DNs (`memberOf`).
    member_of_attribute: Option<String>,
    /// The attribute of a group entry that names it.
    group_name_attribute: Option<String>,
    /// The attribute with the name to show.
    display_name_attribute: Option<String>,
    /// The attribute with the e-mail address.
    mail_attribute: Option<String>,
    /// An attribute of the user's entry holding their token (an otpauth:// URI, or a base32
    /// TOTP key); read only, the replay state stays in the portcullis store.
    pub token_attribute: Option<String>,
    /// A person found here who is not in portcullis yet, or has no token, enrolls one at
    /// their first login (password, the QR code once, a confirming code).
    pub auto_enroll: bool,
    /// The groups whose members may do so (required with `auto_enroll`).
    pub auto_enroll_groups: Vec<String>,
    /// Seconds any one operation may take (connect, bind, search) before it is refused.
    pub timeout: u64,
    /// Connections kept open to the server.
    pub pool_size: usize,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: Urls::default(),
            start_tls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password_file: None,
            base_dn: String::new(),
            group_base_dn: None,
            implementation: Implementation::default(),
            user_filter: None,
            username_attribute: None,
            group_filter: None,
            member_of_attribute: None,
            group_name_attribute: None,
            display_name_attribute: None,
            mail_attribute: None,
            token_attribute: None,
            auto_enroll: false,
            auto_enroll_groups: Vec::new(),
            timeout: 5,
            pool_size: 4,
        }
    }
}

/// The values `implementation` gives: user filter, username, group filter, member-of.
fn preset(i: Implementation) -> (&'static str, &'static str, &'static str, &'static str) {
    match i {
        Implementation::OpenLdap => (
            "(&(objectClass=person)(|(uid={input})(mail={input})))",
            "uid",
            "(&(objectClass=groupOfNames)(member={dn}))",
            "",
        ),
        Implementation::ActiveDirectory => (
            "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))(|(sAMAccountName={input})(userPrincipalName={input})(mail={input})))",
            "sAMAccountName",
            "(&(objectClass=group)(member={dn}))",
            "",
        ),
        Implementation::FreeIpa => (
            "(&(objectClass=person)(!(nsAccountLock=TRUE))(|(uid={input})(mail={input})))",
            "uid",
            "(&(objectClass=groupOfNames)(member={dn}))",
            "",
        ),
        Implementation::Lldap => (
            "(&(objectClass=person)(|(uid={input})(mail={input})))",
            "uid",
            "(&(objectClass=groupOfUniqueNames)(member={dn}))",
            "",
        ),
    }
}

impl LdapConfig {
    /// Whether `[ldap]` is in use (a URL is set).
    pub fn is_set(&self) -> bool {
        !self.urls().is_empty()
    }

    /// The servers, in the order they are tried.
    pub fn urls(&self) -> Vec<&str> {
        match &self.url {
            Urls::One(s) => s.split_whitespace().collect(),
            Urls::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// The filter that finds a person by what they typed.
    pub fn user_filter(&self) -> &str {
        self.user_filter.as_deref().unwrap_or(preset(self.implementation).0)
    }

    /// The attribute that names the user in portcullis.
    pub fn username_attribute(&self) -> &str {
        self.username_attribute
            .as_deref()
            .unwrap_or(preset(self.implementation).1)
    }

    /// The filter that finds a user's groups (empty: `member_of_attribute` is used instead).
    pub fn group_filter(&self) -> &str {
        match (&self.group_filter, &self.member_of_attribute) {
            (Some(f), _) => f,
            (None, Some(_)) => "",
            (None, None) => preset(self.implementation).2,
        }
    }

    /// The attribute of the user's entry that lists its groups (empty: `group_filter`).
    pub fn member_of_attribute(&self) -> &str {
        self.member_of_attribute
            .as_deref()
            .unwrap_or(preset(self.implementation).3)
    }

    /// Where groups are searched.
    pub fn group_base_dn(&self) -> &str {
        self.group_base_dn.as_deref().unwrap_or(&self.base_dn)
    }

    /// The attribute that names a group.
    pub fn group_name_attribute(&self) -> &str {
        self.group_name_attribute.as_deref().unwrap_or("cn")
    }

    /// The attribute holding the name to show.
    pub fn display_name_attribute(&self) -> &str {
        self.display_name_attribute.as_deref().unwrap_or("displayName")
    }

    /// The attribute holding the e-mail address.
    pub fn mail_attribute(&self) -> &str {
        self.mail_attribute.as_deref().unwrap_or("mail")
    }

    pub(super) fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let urls = self.urls();
        if urls.is_empty() {
            if doc.line_of("ldap", "base_dn") > 0 || doc.line_of("ldap", "bind_dn") > 0 {
                errors.push(doc.invalid(
                    "ldap",
                    "url",
                    "(not set)".into(),
                    "name the server, such as \"ldaps://ldap.example.com\"",
                ));
            }
            return errors;
        }
        let mut bad = |key: &str, value: String, reason: &str| errors.push(doc.invalid("ldap", key, value, reason));
        for url in &urls {
            let plain = url.strip_prefix("ldap://");
            if plain.is_none() && !url.starts_with("ldaps://") && !url.starts_with("ldapi://") {
                bad(
                    "url",
                    format!("{url:?}"),
                    "give the server as ldaps://HOST[:PORT], or ldap://HOST[:PORT] with start_tls = true",
                );
            } else if url.contains('@') {
                bad(
                    "url",
                    "(a URL with credentials)".into(),
                    "keep credentials out of the URL: use bind_dn and bind_password_file",
                );
            } else if let Some(host) = plain
                && !self.start_tls
                && !is_loopback(host)
            {
                bad(
                    "url",
                    format!("{url:?}"),
                    "plain ldap:// would send passwords in the clear: set start_tls = true or use ldaps://",
                );
            } else if self.start_tls && url.starts_with("ldaps://") {
                bad(
                    "start_tls",
                    "true".into(),
                    "ldaps:// is TLS already: set start_tls = false, or use ldap:// with StartTLS",
                );
            }
        }
        if self.base_dn.trim().is_empty() {
            bad(
                "base_dn",
                "(not set)".into(),
                "name where people are searched, such as \"dc=example,dc=com\"",
            );
        }
        if self.bind_dn.is_empty() != self.bind_password_file.is_none() {
            bad(
                "bind_password_file",
                format!("{:?}", self.bind_password_file),
                "set bind_dn and bind_password_file together (or neither, to search anonymously)",
            );
        }
        if !self.user_filter().contains("{input}") {
            bad(
                "user_filter",
                format!("{:?}", self.user_filter()),
                "the filter must use {input} (what the person typed), such as \"(uid={input})\"",
            );
        }
        for (key, filter) in [
            ("user_filter", self.user_filter()),
            ("group_filter", self.group_filter()),
        ] {
            if !filter.is_empty() && !balanced(filter) {
                bad(key, format!("{filter:?}"), "the parentheses of the filter do not match");
            }
        }
        let groups = self.group_filter();
        if !groups.is_empty() && !groups.contains("{dn}") && !groups.contains("{username}") {
            bad(
                "group_filter",
                format!("{groups:?}"),
                "the filter must use {dn} (the user's entry) or {username}, such as \"(member={dn})\"",
            );
        }
        if self.group_filter.is_some() && self.member_of_attribute.is_some() {
            bad(
                "member_of_attribute",
                format!("{:?}", self.member_of_attribute()),
                "set group_filter or member_of_attribute, not both",
            );
        }
        if self.auto_enroll && self.auto_enroll_groups.is_empty() {
            bad(
                "auto_enroll_groups",
                "[]".into(),
                "name the LDAP groups whose members may enroll themselves, such as [\"staff\"]",
            );
        }
        if !(1..=60).contains(&self.timeout) {
            bad("timeout", self.timeout.to_string(), "use 1 to 60 seconds");
        }
        if !(1..=64).contains(&self.pool_size) {
            bad("pool_size", self.pool_size.to_string(), "use 1 to 64 connections");
        }
        errors
    }
}

/// Whether an `ldap://` URL's rest names this machine (plain LDAP stays on it).
fn is_loopback(rest: &str) -> bool {
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn balanced(filter: &str) -> bool {
    let mut depth = 0i32;
    for c in filter.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && filter.starts_with('(')
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn errors(section: &str) -> String {
        match Config::parse(section, Path::new("/etc/portcullis/portcullis.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn presets_fill_the_filters_and_a_setting_wins() {
        let c = Config::parse(
            "[ldap]\nurl = \"ldaps://a.example ldaps://b.example\"\nbase_dn = \"dc=example,dc=com\"\n",
            Path::new("/x.toml"),
        )
        .unwrap();
        assert!(c.ldap.is_set());
        assert_eq!(c.ldap.urls(), ["ldaps://a.example", "ldaps://b.example"]);
        assert_eq!(c.ldap.username_attribute(), "uid");
        assert!(c.ldap.user_filter().contains("(mail={input})"));
        let c = Config::parse(
            "[ldap]\nurl = [\"ldaps://dc1\"]\nbase_dn = \"dc=ad\"\nimplementation = \"activedirectory\"\nmember_of_attribute = \"memberOf\"\n",
            Path::new("/x.toml"),
        )
        .unwrap();
        assert_eq!(c.ldap.username_attribute(), "sAMAccountName");
        assert_eq!(c.ldap.group_filter(), "");
        assert_eq!(c.ldap.member_of_attribute(), "memberOf");
        assert!(!Config::default().ldap.is_set());
    }

    #[test]
    fn unsafe_or_unusable_settings_are_refused_by_line_and_key() {
        let base = "[ldap]\nbase_dn = \"dc=x\"\n";
        let e = errors(&format!("{base}url = \"ldap://ldap.example.com\"\n"));
        assert!(e.contains(":3: ldap.url") && e.contains("in the clear"), "{e}");
        assert_eq!(errors(&format!("{base}url = \"ldap://127.0.0.1:3389\"\n")), "");
        assert_eq!(
            errors(&format!("{base}url = \"ldap://ldap.example.com\"\nstart_tls = true\n")),
            ""
        );
        let e = errors(&format!("{base}url = \"ldaps://x\"\nstart_tls = true\n"));
        assert!(e.contains("ldap.start_tls"), "{e}");
        let e = errors(&format!("{base}url = \"http://x\"\n"));
        assert!(e.contains("ldap.url"), "{e}");
        let e = errors("[ldap]\nurl = \"ldaps://x\"\n");
        assert!(e.contains("ldap.base_dn"), "{e}");
        let e = errors(&format!("{base}url = \"ldaps://x\"\nbind_dn = \"cn=svc\"\n"));
        assert!(e.contains("ldap.bind_password_file"), "{e}");
        let e = errors(&format!("{base}url = \"ldaps://x\"\nuser_filter = \"(uid=alice)\"\n"));
        assert!(e.contains("{input}"), "{e}");
        let e = errors(&format!(
            "{base}url = \"ldaps://x\"\nuser_filter = \"(uid={{input}}\"\n"
        ));
        assert!(e.contains("parentheses"), "{e}");
        let e = errors(&format!("{base}url = \"ldaps://x\"\nauto_enroll = true\n"));
        assert!(e.contains("ldap.auto_enroll_groups"), "{e}");
        let e = errors(&format!("{base}url = \"ldaps://x\"\ntimeout = 0\n"));
        assert!(e.contains("ldap.timeout"), "{e}");
        let e = errors(&format!("{base}url = \"ldaps://x\"\nimplementation = \"novell\"\n"));
        assert!(e.contains("ldap"), "{e}");
        let e = errors("[ldap]\nbase_dn = \"dc=x\"\n");
        assert!(e.contains("ldap.url"), "{e}");
        let e = errors(&format!(
            "{base}url = \"ldaps://x\"\n[first_factor]\nhtpasswd = \"/etc/htpasswd\"\n"
        ));
        assert!(e.contains("one source") && e.contains("first_factor.htpasswd"), "{e}");
    }
}

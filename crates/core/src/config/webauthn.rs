//! `[webauthn]`: passkeys and security keys on the portal (a second factor, and with
//! `passwordless` a whole login).

use super::{ConfigError, Document};
use serde::Deserialize;
use std::path::PathBuf;

/// Whether the authenticator must verify the person (PIN, biometrics) for a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserVerification {
    /// Asked for; a security key without a PIN still counts (the password came first).
    #[default]
    Preferred,
    /// Every assertion and registration must carry user verification.
    Required,
}

/// `attestation`: `"none"`, or the AAGUIDs of the only authenticator models allowed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Attestation {
    /// `"none"`: any authenticator; no attestation is asked for.
    Word(String),
    /// Only these models, proven by an attestation chained to `attestation_ca_file`.
    Aaguids(Vec<String>),
}

impl Default for Attestation {
    fn default() -> Self {
        Attestation::Word("none".into())
    }
}

/// `[webauthn]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// Passkeys on the portal at all.
    pub enabled: bool,
    /// The relying party ID: a registrable domain the portal's host is in. Empty: `[session]
    /// domain` when set (one key for every subdomain), else the host of `portal_url`.
    pub rp_id: String,
    /// The name authenticators show.
    pub rp_name: String,
    /// `preferred` or `required`.
    pub user_verification: UserVerification,
    /// `"none"` or a list of allowed AAGUIDs.
    pub attestation: Attestation,
    /// PEM file of the manufacturers' attestation roots, for an AAGUID list.
    pub attestation_ca_file: Option<PathBuf>,
    /// "Sign in with a passkey" on the first page: a discoverable passkey with user
    /// verification is a whole two-factor login.
    pub passwordless: bool,
    /// Seconds a ceremony stays open (the browser's prompt, and the state kept for it).
    pub timeout: u64,
}

impl Default for WebauthnConfig {
    fn default() -> Self {
        WebauthnConfig {
            enabled: true,
            rp_id: String::new(),
            rp_name: "portcullis".into(),
            user_verification: UserVerification::Preferred,
            attestation: Attestation::default(),
            attestation_ca_file: None,
            passwordless: false,
            timeout: 120,
        }
    }
}

impl WebauthnConfig {
    /// The AAGUIDs allowed (empty: any authenticator).
    pub fn aaguids(&self) -> &[String] {
        match &self.attestation {
            Attestation::Aaguids(list) => list,
            Attestation::Word(_) => &[],
        }
    }

    pub(super) fn problems(&self, doc: &Document<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, value: String, reason: &str| errors.push(doc.invalid("webauthn", key, value, reason));
        if !self.rp_id.is_empty()
            && (self.rp_id.contains(['/', ':', ' ']) || self.rp_id.starts_with('.') || self.rp_id.ends_with('.'))
        {
            bad(
                "rp_id",
                format!("{:?}", self.rp_id),
                "give a domain name alone, such as \"example.com\" (no scheme, port or path)",
            );
        }
        if self.rp_name.trim().is_empty() {
            bad(
                "rp_name",
                "\"\"".into(),
                "give the name authenticators show, such as \"Example Corp\"",
            );
        }
        match &self.attestation {
            Attestation::Word(w) if w != "none" => bad(
                "attestation",
                format!("{w:?}"),
                "write \"none\", or a list of the AAGUIDs of the authenticator models allowed",
            ),
            Attestation::Aaguids(list) => {
                if list.is_empty() {
                    bad("attestation", "[]".into(), "write \"none\" or list at least one AAGUID");
                }
                for a in list {
                    if !valid_aaguid(a) {
                        bad(
                            "attestation",
                            format!("{a:?}"),
                            "an AAGUID is a UUID such as \"cb69481e-8ff7-4039-93ec-0a2729a154a8\"",
                        );
                    }
                }
                if self.attestation_ca_file.is_none() {
                    bad(
                        "attestation_ca_file",
                        "(not set)".into(),
                        "an AAGUID list needs the manufacturers' attestation root certificates (PEM) to prove it",
                    );
                }
            }
            Attestation::Word(_) => {}
        }
        if !(30..=600).contains(&self.timeout) {
            bad("timeout", self.timeout.to_string(), "give 30 to 600 seconds");
        }
        errors
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
fn valid_aaguid(a: &str) -> bool {
    let groups: Vec<&str> = a.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
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
    fn the_defaults_offer_passkeys_as_a_second_factor_only() {
        let c = Config::default().webauthn;
        assert!(c.enabled && !c.passwordless);
        assert!(c.aaguids().is_empty());
        let c = Config::parse(
            "[webauthn]\npasswordless = true\nattestation = [\"cb69481e-8ff7-4039-93ec-0a2729a154a8\"]\nattestation_ca_file = \"/etc/ca.pem\"\n",
            Path::new("x.toml"),
        )
        .unwrap()
        .webauthn;
        assert!(c.passwordless);
        assert_eq!(c.aaguids(), ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]);
    }

    #[test]
    fn bad_settings_are_named_with_their_line() {
        let e = errors("[webauthn]\nrp_id = \"https://example.com\"\n");
        assert!(e.contains(":2:") && e.contains("webauthn.rp_id"), "{e}");
        let e = errors("[webauthn]\nattestation = \"direct\"\n");
        assert!(e.contains("webauthn.attestation") && e.contains("\"none\""), "{e}");
        let e = errors("[webauthn]\nattestation = [\"not-a-uuid\"]\n");
        assert!(e.contains("AAGUID") && e.contains("attestation_ca_file"), "{e}");
        let e = errors("[webauthn]\nuser_verification = \"always\"\n");
        assert!(e.contains("webauthn"), "{e}");
        assert!(errors("[webauthn]\ntimeout = 5\n").contains("30 to 600"));
    }
}

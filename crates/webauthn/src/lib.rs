//! Passkeys and security keys for portcullis: the core's [`PasskeyVerifier`] on
//! webauthn-rs-core (the ceremony, CBOR and COSE are the library's; the policy around them
//! is the core's). The relying party is the portal: its origin, and an RP ID it lies in.

use portcullis_core::config::{UserVerification, WebauthnConfig};
use portcullis_core::model::Passkey;
use portcullis_core::passkey::{Asserted, Ceremony, PasskeyError, PasskeyVerifier, Registered, Registrant};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationCaList, AttestationCaListBuilder, AttestationConveyancePreference, AuthenticationState, COSEAlgorithm,
    Credential, CredentialProtectionPolicy, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
    RequestRegistrationExtensions, UserVerificationPolicy,
};

/// Why the verifier could not be set up; each names the setting to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// `portal_url` is not an absolute http(s) URL with a host.
    #[error("[server] portal_url = {0:?}: passkeys need the portal's absolute https:// address")]
    PortalUrl(String),
    /// The RP ID is not the portal's host or a parent domain of it.
    #[error(
        "[webauthn] rp_id = {rp_id:?} does not contain the portal's host {host:?}: give the host itself or a domain it is in (such as \"example.com\" for \"auth.example.com\")"
    )]
    RpId {
        /// The RP ID asked for.
        rp_id: String,
        /// The portal's host.
        host: String,
    },
    /// The attestation roots could not be read.
    #[error("[webauthn] attestation_ca_file = {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The verifier: one relying party, its user-verification rule and allowed models.
pub struct WebauthnVerifier {
    core: WebauthnCore,
    rp_id: String,
    verification: UserVerificationPolicy,
    /// With an AAGUID list: the roots attestations must chain to, per allowed model.
    attestation: Option<AttestationCaList>,
}

impl std::fmt::Debug for WebauthnVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnVerifier")
            .field("rp_id", &self.rp_id)
            .field("origins", &self.core.get_allowed_origins())
            .finish_non_exhaustive()
    }
}

/// The RP ID `config` asks for, for a portal at `portal_url` with sessions for
/// `session_domain` (empty: the portal's host only).
pub fn rp_id_for(config: &WebauthnConfig, portal_url: &str, session_domain: &str) -> Result<String, SetupError> {
    let url = Url::parse(portal_url).map_err(|_| SetupError::PortalUrl(portal_url.into()))?;
    let host = url
        .host_str()
        .filter(|_| matches!(url.scheme(), "https" | "http"))
        .ok_or_else(|| SetupError::PortalUrl(portal_url.into()))?
        .to_ascii_lowercase();
    let wanted = if !config.rp_id.is_empty() {
        config.rp_id.to_ascii_lowercase()
    } else if !session_domain.is_empty() {
        session_domain.trim_start_matches('.').to_ascii_lowercase()
    } else {
        host.clone()
    };
    if host != wanted && !host.ends_with(&format!(".{wanted}")) {
        return Err(SetupError::RpId { rp_id: wanted, host });
    }
    Ok(wanted)
}

/// Whether the host of `portal_url` is an IP address (browsers refuse one as an RP ID).
pub fn host_is_ip(portal_url: &str) -> bool {
    Url::parse(portal_url).is_ok_and(|u| matches!(u.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))))
}

impl WebauthnVerifier {
    /// The verifier for the portal at `portal_url` (its origin is the only one allowed).
    pub fn new(config: &WebauthnConfig, portal_url: &str, session_domain: &str) -> Result<Self, SetupError> {
        let rp_id = rp_id_for(config, portal_url, session_domain)?;
        let url = Url::parse(portal_url).map_err(|_| SetupError::PortalUrl(portal_url.into()))?;
        let origin =
            Url::parse(&url.origin().ascii_serialization()).map_err(|_| SetupError::PortalUrl(portal_url.into()))?;
        let core = WebauthnCore::new_unsafe_experts_only(
            &config.rp_name,
            &rp_id,
            vec![origin],
            Duration::from_secs(config.timeout),
            Some(false),
            Some(false),
        );
        let attestation = match config.aaguids() {
            [] => None,
            aaguids => Some(ca_list(config, aaguids)?),
        };
        Ok(WebauthnVerifier {
            core,
            rp_id,
            verification: match config.user_verification {
                UserVerification::Required => UserVerificationPolicy::Required,
                UserVerification::Preferred => UserVerificationPolicy::Preferred,
            },
            attestation,
        })
    }
}

/// The roots in `attestation_ca_file`, each trusted for the listed AAGUIDs only.
fn ca_list(config: &WebauthnConfig, aaguids: &[String]) -> Result<AttestationCaList, SetupError> {
    let path = config.attestation_ca_file.clone().unwrap_or_default();
    let fail = |message: String| SetupError::CaFile {
        path: path.clone(),
        message,
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| fail(format!("{e}; name a PEM file of attestation roots")))?;
    let pems: Vec<String> = text
        .split("-----END CERTIFICATE-----")
        .filter(|p| p.contains("-----BEGIN CERTIFICATE-----"))
        .map(|p| format!("{}-----END CERTIFICATE-----\n", p.trim_start()))
        .collect();
    if pems.is_empty() {
        return Err(fail(
            "no certificate in the file; give the manufacturers' root certificates as PEM".into(),
        ));
    }
    let mut builder = AttestationCaListBuilder::new();
    for pem in &pems {
        for a in aaguids {
            let aaguid = uuid::Uuid::parse_str(a).map_err(|e| fail(format!("AAGUID {a:?}: {e}")))?;
            builder
                .insert_device_pem(pem.as_bytes(), aaguid, a.clone(), Default::default())
                .map_err(|e| fail(format!("{e:?}; the file must hold PEM certificates")))?;
        }
    }
    Ok(builder.build())
}

/// A library error as the core's: a counter that did not grow is a clone, the rest refusals.
fn refused(e: WebauthnError) -> PasskeyError {
    match e {
        WebauthnError::CredentialPossibleCompromise => PasskeyError::Cloned,
        other => PasskeyError::Refused(other.to_string()),
    }
}

fn state<T: 'static>(c: &Ceremony) -> Result<&T, PasskeyError> {
    c.0.downcast_ref::<T>()
        .ok_or_else(|| PasskeyError::Refused("a ceremony of another kind".into()))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(|e| PasskeyError::Setup(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(response: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(response).map_err(|e| PasskeyError::Malformed(e.to_string()))
}

impl PasskeyVerifier for WebauthnVerifier {
    fn start_registration(&self, who: &Registrant<'_>) -> Result<(String, Ceremony), PasskeyError> {
        let extensions = RequestRegistrationExtensions {
            cred_protect: Some(webauthn_rs_core::proto::CredProtect {
                credential_protection_policy: CredentialProtectionPolicy::UserVerificationOptionalWithCredentialIDList,
                enforce_credential_protection_policy: Some(false),
            }),
            uvm: Some(true),
            cred_props: Some(true),
            min_pin_length: None,
            hmac_create_secret: None,
        };
        let conveyance = if self.attestation.is_some() {
            AttestationConveyancePreference::Direct
        } else {
            AttestationConveyancePreference::None
        };
        let builder = self
            .core
            .new_challenge_register_builder(&who.handle, who.name, who.display_name)
            .map_err(|e| PasskeyError::Setup(e.to_string()))?
            .attestation(conveyance)
            .credential_algorithms(COSEAlgorithm::secure_algs())
            .user_verification_policy(if who.discoverable {
                UserVerificationPolicy::Required
            } else {
                self.verification
            })
            .require_resident_key(who.discoverable)
            .exclude_credentials(Some(who.exclude.clone()))
            .extensions(Some(extensions));
        let (options, rs) = self
            .core
            .generate_challenge_register(builder)
            .map_err(|e| PasskeyError::Setup(e.to_string()))?;
        Ok((json(&options)?, Ceremony(Box::new((rs, who.discoverable)))))
    }

    fn finish_registration(&self, response: &str, ceremony: &Ceremony) -> Result<Registered, PasskeyError> {
        let reg: RegisterPublicKeyCredential = parse(response)?;
        let (rs, discoverable) = state::<(RegistrationState, bool)>(ceremony)?;
        let cred = self
            .core
            .register_credential(&reg, rs, self.attestation.as_ref())
            .map_err(refused)?;
        // A required resident key is one; else the browser's (unsigned) word is a hint only.
        let discoverable = *discoverable || reg.extensions.cred_props.and_then(|p| p.rk).unwrap_or(false);
        Ok(Registered {
            user_verified: cred.user_verified,
            passkey: Passkey {
                id: cred.cred_id.to_vec(),
                label: String::new(),
                data: json(&cred)?,
                counter: cred.counter,
                backup_eligible: cred.backup_eligible,
                backup_state: cred.backup_state,
                discoverable,
                created: 0,
                last_used: None,
            },
        })
    }

    fn start_authentication(&self, allowed: &[Passkey], verify_user: bool) -> Result<(String, Ceremony), PasskeyError> {
        let creds = allowed
            .iter()
            .map(|p| serde_json::from_str::<Credential>(&p.data))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PasskeyError::Setup(format!("a stored passkey does not read back: {e}")))?;
        let policy = if verify_user || allowed.is_empty() {
            UserVerificationPolicy::Required
        } else {
            self.verification
        };
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(policy))
            .map_err(|e| PasskeyError::Setup(e.to_string()))?
            .allow_backup_eligible_upgrade(true);
        let (options, ast) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| PasskeyError::Setup(e.to_string()))?;
        Ok((json(&options)?, Ceremony(Box::new(ast))))
    }

    fn claimed(&self, response: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), PasskeyError> {
        let pkc: PublicKeyCredential = parse(response)?;
        Ok((
            pkc.get_credential_id().to_vec(),
            pkc.get_user_unique_id().map(<[u8]>::to_vec),
        ))
    }

    fn finish_authentication(
        &self,
        response: &str,
        ceremony: &Ceremony,
        credential: &Passkey,
    ) -> Result<Asserted, PasskeyError> {
        let pkc: PublicKeyCredential = parse(response)?;
        let ast = state::<AuthenticationState>(ceremony)?;
        let mut stored: Credential = serde_json::from_str(&credential.data)
            .map_err(|e| PasskeyError::Setup(format!("the stored passkey does not read back: {e}")))?;
        // The counter the store holds now, not the one at registration.
        stored.counter = credential.counter;
        let result = self
            .core
            .authenticate_single_credential(&pkc, ast, &stored)
            .map_err(refused)?;
        stored.counter = result.counter().max(stored.counter);
        stored.backup_eligible = result.backup_eligible();
        stored.backup_state = result.backup_state();
        Ok(Asserted {
            id: result.cred_id().to_vec(),
            counter: result.counter(),
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
            backup_state: result.backup_state(),
            data: json(&stored)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rp_id_is_the_portals_host_or_a_domain_it_is_in() {
        let c = WebauthnConfig::default();
        assert_eq!(
            rp_id_for(&c, "https://auth.example.com/", "").unwrap(),
            "auth.example.com"
        );
        assert_eq!(
            rp_id_for(&c, "https://auth.example.com/", ".example.com").unwrap(),
            "example.com"
        );
        let other = WebauthnConfig {
            rp_id: "example.org".into(),
            ..WebauthnConfig::default()
        };
        let e = rp_id_for(&other, "https://auth.example.com/", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rp_id") && e.contains("auth.example.com"), "{e}");
        let e = rp_id_for(&c, "auth.example.com", "").unwrap_err().to_string();
        assert!(e.contains("portal_url"), "{e}");
        assert!(host_is_ip("http://127.0.0.1:9091/") && host_is_ip("http://[::1]:80/"));
        assert!(!host_is_ip("http://localhost:9091/"));
        // A look-alike suffix is not a parent domain.
        let evil = WebauthnConfig {
            rp_id: "ample.com".into(),
            ..WebauthnConfig::default()
        };
        assert!(rp_id_for(&evil, "https://auth.example.com/", "").is_err());
    }
}

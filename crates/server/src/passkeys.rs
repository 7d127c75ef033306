//! The gateway's passkey verifier, built from `[webauthn]` and the portal's address (none
//! when `[webauthn] enabled = false`).

use crate::settings::Settings;
use anyhow::Context;
use portcullis_core::passkey::Passkeys;

/// The passkeys `[webauthn]` configures for this portal, if any.
pub fn service(settings: &Settings) -> anyhow::Result<Option<Passkeys>> {
    let mut w = settings.core.webauthn.clone();
    if !w.enabled {
        return Ok(None);
    }
    // Relative to the configuration file, as every path in it.
    w.attestation_ca_file = w.attestation_ca_file.map(|f| settings.core.resolve(&f));
    let verifier =
        portcullis_webauthn::WebauthnVerifier::new(&w, &settings.server.portal_url, &settings.core.session.domain)
            .with_context(|| settings.core.path.display().to_string())?;
    Ok(Some(Passkeys::new(
        Box::new(verifier),
        w.passwordless,
        w.user_verification == portcullis_core::config::UserVerification::Required,
        w.timeout.saturating_add(30),
    )))
}

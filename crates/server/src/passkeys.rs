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
    // Browsers refuse an IP address as a relying party: no passkey could ever be made there.
    if w.rp_id.is_empty()
        && settings.core.session.domain.is_empty()
        && portcullis_webauthn::host_is_ip(&settings.server.portal_url)
    {
        tracing::info!(
            portal_url = %settings.server.portal_url,
            "passkeys are off: the portal's host is an IP address (browsers allow passkeys on a domain name only, such as localhost)"
        );
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

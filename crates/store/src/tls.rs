//! TLS for the network stores and the LDAP source: a rustls client that trusts exactly
//! the CAs of a configured PEM file.

use portcullis_core::StoreError;
use std::path::Path;
use std::sync::Arc;

/// A rustls client that trusts only the CAs in `ca` (and checks the server's name); `key`
/// names the setting in messages (`[store] ca_file`).
pub(crate) fn trusting(ca: &Path, key: &str) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |message: String| StoreError::File {
        path: ca.to_path_buf(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(format!("{key}: cannot read it as PEM: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("{key}: a certificate in it is broken: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("{key}: a certificate in it is not a usable CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{key}: it holds no certificate")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

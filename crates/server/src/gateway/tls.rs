//! HTTPS for `serve` (`[server] tls_cert` and `tls_key`, PEM files), so the gateway, and
//! an app behind it in reverse-proxy mode, can face browsers with nothing in front. The
//! files are read again when they change (a renewed certificate needs no restart).

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// The certificate and key in force, and where they come from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<ServerConfig>, Stamp)>,
}

/// Modification times of the two files, to notice a renewal.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (mtime(cert), mtime(key))
}

/// Reads a PEM certificate chain and private key into a server configuration (HTTP/1.1).
fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "[server] tls_cert {}: cannot read a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "[server] tls_cert {}: no certificate in it; give the PEM chain (fullchain.pem)",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("[server] tls_key {}: cannot read a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "[server] tls_cert {} and tls_key {} do not make a usable pair",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Tls {
    /// Loads the certificate and key; an error names the file and what is wrong with it.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self> {
        let config = load(&cert, &key)?;
        if let Ok(meta) = std::fs::metadata(&key)
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
        {
            tracing::warn!(
                key = %key.display(),
                "the TLS private key can be read by group or others; chmod 600 it"
            );
        }
        let seen = stamp(&cert, &key);
        Ok(Tls {
            cert,
            key,
            current: RwLock::new((config, seen)),
        })
    }

    /// The rustls configuration in use now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Loads the files again if they changed; a broken renewal is logged and the old pair kept.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.cert, &self.key);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == now {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (config, now);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "TLS certificate changed but cannot be used; keeping the previous one"
            ),
        }
    }
}

/// Checks the certificate files for renewal every few seconds, for as long as the runtime runs.
pub fn watch(tls: Arc<Tls>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        loop {
            tick.tick().await;
            tls.reload_if_changed();
        }
    })
}

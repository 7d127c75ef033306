//! Duo as a second factor: a client of Duo's Auth API v2 (signed requests, `preauth`,
//! push and passcode `auth`, `auth_status`) implementing the core's push-service seam.

pub mod client;
pub mod sign;

pub use client::{DuoClient, Settings, SetupError, read_secret_key};

use portcullis_core::clock::Clock;
use portcullis_core::config::Config;
use std::sync::Arc;
use std::time::Duration;

/// The client `[duo]` describes, or `None` when it is not set.
pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> Result<Option<DuoClient>, SetupError> {
    let d = &config.duo;
    if !d.is_set() {
        return Ok(None);
    }
    let Some(key_file) = &d.secret_key_file else {
        return Err(SetupError::SecretKey {
            path: "(not set)".into(),
            reason: "name the file holding the secret key".into(),
        });
    };
    let skey = read_secret_key(&config.resolve(key_file))?;
    let service_name = hostname();
    let settings = Settings {
        api_host: d.api_host.clone(),
        ikey: d.integration_key.clone(),
        username: d.username.clone(),
        push_info: d.push_info,
        service_name,
        call_timeout: Duration::from_secs(10),
        retries: 4,
    };
    let ca = d.ca_file.as_ref().map(|p| config.resolve(p));
    Ok(Some(DuoClient::new(settings, skey, ca.as_deref(), clock)?))
}

/// This machine's name, shown in the push as the service asking.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}

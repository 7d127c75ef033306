//! The gateway's Duo push service, built from `[duo]` (none when it is not set).

use anyhow::Context;
use portcullis_core::clock::Clock;
use portcullis_core::config::Config;
use portcullis_core::push::PushService;
use std::sync::Arc;

/// The push service `[duo]` configures, if any.
pub fn service(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Option<Box<dyn PushService>>> {
    let client = portcullis_duo::from_config(config, clock).with_context(|| config.path.display().to_string())?;
    Ok(client.map(|c| Box::new(c) as Box<dyn PushService>))
}

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

/// `portcullis duo check`: the keys against `/auth/v2/check`, and the clock offset.
pub fn check(config_path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let settings = crate::settings::Settings::load(config_path)?;
    let config = &settings.core;
    let clock: Arc<dyn Clock> = Arc::new(portcullis_core::SystemClock);
    let Some(client) =
        portcullis_duo::from_config(config, clock.clone()).with_context(|| config.path.display().to_string())?
    else {
        eprintln!(
            "{}: [duo] is not set: give api_host, integration_key and secret_key_file",
            config.path.display()
        );
        return Ok(std::process::ExitCode::from(2));
    };
    let host = &config.duo.api_host;
    let fail = |what: &str, e: portcullis_core::push::PushError| {
        eprintln!("{host}: {what} failed: {e}");
        std::process::ExitCode::from(1)
    };
    if let Err(e) = client.ping() {
        return Ok(fail("ping (is the host right and reachable?)", e));
    }
    let offset = client.offset();
    if let Err(e) = client.check() {
        return Ok(fail("check (are integration_key and the secret key right?)", e));
    }
    println!("OK: {host} accepts the keys of {}", config.duo.integration_key);
    println!(
        "clock offset: {offset:+} s (Duo minus this machine){}",
        if offset.abs() > 60 {
            "; fix this machine's clock (NTP)"
        } else {
            ""
        }
    );
    Ok(std::process::ExitCode::SUCCESS)
}

//! One log line per authentication event, text or JSON, never a secret. The client
//! address comes before any field a user can type, so a user name such as
//! `x client=1.2.3.4` cannot make fail2ban ban someone else.

use portcullis_core::authz::AuthEvent;

/// Logs an authentication event (target `portcullis::audit`).
pub fn log(e: &AuthEvent) {
    let client = e.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
    // `?` (Debug) quotes and escapes the user name, so spaces, quotes and newlines in it
    // stay inside one quoted field.
    match e.failure {
        None if e.warning.is_some() => tracing::warn!(
            target: "portcullis::audit",
            client = %client,
            result = "success",
            method = e.method,
            warning = e.warning.unwrap_or(""),
            user = ?e.user,
            "auth"
        ),
        None => tracing::info!(
            target: "portcullis::audit",
            client = %client,
            result = "success",
            method = e.method,
            user = ?e.user,
            "auth"
        ),
        Some(reason) => tracing::warn!(
            target: "portcullis::audit",
            client = %client,
            result = "failure",
            method = e.method,
            reason,
            banned = e.banned,
            user = ?e.user,
            "auth"
        ),
    }
}

/// Sets up logging to stderr in the configured format.
pub fn init(json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

//! The gateway's one error type: why no answer could be decided. The client sees only a
//! status (a bare one for the proxies and Apache, a generic page on the portal); the detail
//! is logged once, where the error is met.

use axum::http::StatusCode;
use portcullis_core::gate::GateError;

/// Why the gateway could not decide or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// Every login slot is taken: password hashing is bounded, and this one waited out.
    #[error("every login slot is busy")]
    Busy,
    /// A store or a password file failed while `what` was being done.
    #[error("{what}: {source}")]
    Failed {
        /// What the gateway was doing ("authorization", "sign out", …).
        what: &'static str,
        /// The failure.
        #[source]
        source: GateError,
    },
    /// A blocking worker ended without an answer (it panicked).
    #[error("{0}: the worker ended before answering")]
    Worker(&'static str),
}

impl GatewayError {
    /// `source` met while doing `what`.
    pub fn failed(what: &'static str, source: impl Into<GateError>) -> Self {
        GatewayError::Failed {
            what,
            source: source.into(),
        }
    }

    /// The status the client gets: an outage of a dependency (busy slots, a store or file
    /// that fails) is a refusal to try again later (503), a bug of ours a 500.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Busy | GatewayError::Failed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs the detail (never shown to the client) and hands the error back.
    pub fn logged(self) -> Self {
        match &self {
            GatewayError::Busy => tracing::warn!(error = %self, "refusing"),
            _ => tracing::error!(error = %self, "refusing"),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_503_and_bugs_500_and_the_detail_stays_in_the_message() {
        let store = GatewayError::failed(
            "sign out",
            portcullis_core::StoreError::Format("database is locked".into()),
        );
        assert_eq!(store.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(store.to_string(), "sign out: database is locked");
        assert_eq!(GatewayError::Busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            GatewayError::Worker("login").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

//! Prometheus metrics in the text exposition format, kept in atomics so recording costs a
//! few nanoseconds on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// How a request was decided, as `/metrics` counts it (`portcullis_decisions_total{decision=…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Let through.
    Allow,
    /// Sent to the portal (or told no request was described).
    Login,
    /// Asked for Basic credentials.
    Challenge,
    /// Refused by a rule.
    Deny,
    /// Malformed: 400.
    BadRequest,
    /// No decision could be made (store failure, no login slot).
    Error,
}

/// Every kind, in the order of `Metrics::decisions`.
const KINDS: [Kind; 6] = [
    Kind::Allow,
    Kind::Login,
    Kind::Challenge,
    Kind::Deny,
    Kind::BadRequest,
    Kind::Error,
];

impl Kind {
    /// The `decision` label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Allow => "allow",
            Kind::Login => "login",
            Kind::Challenge => "challenge",
            Kind::Deny => "deny",
            Kind::BadRequest => "bad_request",
            Kind::Error => "error",
        }
    }
}

/// All counters of one gateway process.
#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    decisions: [AtomicU64; 6],
    failures: AtomicU64,
    logins: AtomicU64,
    bans: AtomicU64,
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections closed at accept because `[server] max_connections` were open.
    pub connections_refused: AtomicU64,
}

impl Metrics {
    /// Counts one authorization request, how it was decided and its latency.
    pub fn decision(&self, kind: Kind, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.decisions[kind as usize].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts an authentication result.
    pub fn auth(&self, success: bool, banned: bool) {
        if success {
            self.logins.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if banned {
            self.bans.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text; `sessions` and `banned` are gauges read at scrape time.
    pub fn render(&self, sessions: usize, banned: usize) -> String {
        let mut out = String::with_capacity(2048);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP portcullis_requests_total Authorization requests decided.");
        let _ = writeln!(out, "# TYPE portcullis_requests_total counter");
        let _ = writeln!(out, "portcullis_requests_total {}", get(&self.requests));
        let _ = writeln!(out, "# HELP portcullis_decisions_total Decisions by kind.");
        let _ = writeln!(out, "# TYPE portcullis_decisions_total counter");
        for (kind, c) in KINDS.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "portcullis_decisions_total{{decision=\"{}\"}} {}",
                kind.label(),
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_auth_failures_total Failed authentication attempts."
        );
        let _ = writeln!(out, "# TYPE portcullis_auth_failures_total counter");
        let _ = writeln!(out, "portcullis_auth_failures_total {}", get(&self.failures));
        let _ = writeln!(
            out,
            "# HELP portcullis_auth_successes_total Successful authentication steps."
        );
        let _ = writeln!(out, "# TYPE portcullis_auth_successes_total counter");
        let _ = writeln!(out, "portcullis_auth_successes_total {}", get(&self.logins));
        let _ = writeln!(out, "# HELP portcullis_bans_total Bans started by regulation.");
        let _ = writeln!(out, "# TYPE portcullis_bans_total counter");
        let _ = writeln!(out, "portcullis_bans_total {}", get(&self.bans));
        let _ = writeln!(out, "# HELP portcullis_banned Users and addresses banned now.");
        let _ = writeln!(out, "# TYPE portcullis_banned gauge");
        let _ = writeln!(out, "portcullis_banned {banned}");
        let _ = writeln!(out, "# HELP portcullis_sessions Active sessions.");
        let _ = writeln!(out, "# TYPE portcullis_sessions gauge");
        let _ = writeln!(out, "portcullis_sessions {sessions}");
        let _ = writeln!(
            out,
            "# HELP portcullis_request_duration_seconds Time to decide an authorization request."
        );
        let _ = writeln!(out, "# TYPE portcullis_request_duration_seconds histogram");
        for (bound, b) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "portcullis_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                get(b)
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "portcullis_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "portcullis_request_duration_seconds_sum {}",
            get(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(out, "portcullis_request_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP portcullis_connections Client connections open now.");
        let _ = writeln!(out, "# TYPE portcullis_connections gauge");
        let _ = writeln!(out, "portcullis_connections {}", get(&self.connections));
        let _ = writeln!(
            out,
            "# HELP portcullis_connections_refused_total Connections closed at accept: [server] max_connections were open."
        );
        let _ = writeln!(out, "# TYPE portcullis_connections_refused_total counter");
        let _ = writeln!(
            out,
            "portcullis_connections_refused_total {}",
            get(&self.connections_refused)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.decision(Kind::Allow, Duration::from_micros(50));
        m.decision(Kind::Login, Duration::from_millis(3));
        let text = m.render(2, 0);
        assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("portcullis_request_duration_seconds_count 2"));
        assert!(text.contains("portcullis_decisions_total{decision=\"login\"} 1"));
        assert!(text.contains("portcullis_sessions 2"));
    }
}

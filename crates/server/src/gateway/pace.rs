//! Banned attempts answered at the pace of checked ones: a ban must not be recognisable by
//! its speed (the same status and text in under a millisecond against tens for a checked
//! password would tell an attacker which guesses were never tried).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The typical duration of a real password check, learnt from the checks themselves.
#[derive(Debug)]
pub struct Pace {
    /// Exponentially weighted mean, in microseconds.
    mean_micros: AtomicU64,
}

impl Pace {
    /// Starts from one timed check against the dummy hash, so the first ban is paced too.
    pub fn seeded() -> Pace {
        let started = Instant::now();
        let _ = portcullis_core::password::verify_dummy("");
        Pace {
            mean_micros: AtomicU64::new(micros(started.elapsed())),
        }
    }

    /// Records how long one real check took.
    pub fn record(&self, took: Duration) {
        let sample = micros(took);
        // Lost updates between threads only blur the mean a little; no lock is worth it.
        let old = self.mean_micros.load(Ordering::Relaxed);
        let new = (old.saturating_mul(7).saturating_add(sample)) / 8;
        self.mean_micros.store(new, Ordering::Relaxed);
    }

    /// How much longer an answer that took `already` must wait to look like a check:
    /// the mean with ±10 % jitter, less what was spent. The wait holds no login slot.
    pub fn remaining(&self, already: Duration) -> Duration {
        let mean = self.mean_micros.load(Ordering::Relaxed);
        let jitter = u64::from(portcullis_core::random::bytes(1)[0]) * mean / 1275; // 0..20 %
        let target = Duration::from_micros(mean.saturating_mul(9) / 10 + jitter);
        target.saturating_sub(already)
    }

    /// Sleeps for [`Pace::remaining`].
    pub async fn wait(&self, already: Duration) {
        tokio::time::sleep(self.remaining(already)).await;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_the_checks_it_has_seen() {
        let pace = Pace {
            mean_micros: AtomicU64::new(0),
        };
        for _ in 0..64 {
            pace.record(Duration::from_millis(40));
        }
        let wait = pace.remaining(Duration::ZERO);
        assert!(
            wait >= Duration::from_millis(35) && wait <= Duration::from_millis(49),
            "{wait:?}"
        );
        assert!(pace.remaining(Duration::from_millis(30)) <= Duration::from_millis(19));
        assert_eq!(pace.remaining(Duration::from_secs(1)), Duration::ZERO);
    }
}

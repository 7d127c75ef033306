//! Time as an injected dependency, so that every rule can be tested at any instant.

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock that always says the same time (tests, `otp code --time`).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0
    }
}

/// A clock a test moves by hand, shared between the code under test and the test.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock at `now`.
    pub fn at(now: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(now))
    }

    /// Moves the clock `secs` seconds on.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        // After 2020-09-13 and before 2100: the real time, not a constant.
        let now = SystemClock.now();
        assert!((1_600_000_000..4_102_444_800).contains(&now), "{now}");
        assert_eq!(FixedClock(42).now(), 42);
        let manual = ManualClock::at(100);
        manual.advance(5);
        assert_eq!(manual.now(), 105);
    }
}

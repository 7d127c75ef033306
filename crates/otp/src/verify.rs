//! Window search: which counter or time step, if any, a typed code belongs to.
//!
//! Every candidate in the window is computed and compared in constant time, so a wrong code
//! costs the same as a right one and the position of a match does not leak.

use crate::Hotp;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// How far around the expected step or counter to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Steps before the expected one (clock behind); 0 for event tokens.
    pub behind: u64,
    /// Steps after the expected one (clock ahead, or HOTP presses not sent).
    pub ahead: u64,
}

impl Window {
    /// ±`n` steps, for time tokens.
    pub fn symmetric(n: u64) -> Self {
        Window { behind: n, ahead: n }
    }

    /// The expected counter and up to `n` more, for event tokens.
    pub fn look_ahead(n: u64) -> Self {
        Window { behind: 0, ahead: n }
    }
}

/// The counter or step a code matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    /// The counter (HOTP) or time step (TOTP/mOTP) whose code was given.
    pub counter: u64,
}

/// The outcome of a window search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The code belongs to a counter or step not used before.
    Accepted(Matched),
    /// The code is right but its step was already accepted once.
    Replayed,
    /// No counter or step in the window gives this code.
    Rejected,
}

fn search(
    candidates: impl Iterator<Item = u64>,
    center: u64,
    last_used: Option<u64>,
    mut is_match: impl FnMut(u64) -> bool,
) -> Verdict {
    let mut best: Option<u64> = None;
    let mut replayed = false;
    for counter in candidates {
        // Every candidate is computed; only the bookkeeping below depends on the result.
        if !is_match(counter) {
            continue;
        }
        if last_used.is_some_and(|last| counter <= last) {
            replayed = true;
        } else if best.is_none_or(|b| counter.abs_diff(center) <= b.abs_diff(center)) {
            // Closest to the expected step wins; on a tie the later one, so that the
            // same code cannot be accepted once more at the other counter.
            best = Some(counter);
        }
    }
    match (best, replayed) {
        (Some(counter), _) => Verdict::Accepted(Matched { counter }),
        (None, true) => Verdict::Replayed,
        (None, false) => Verdict::Rejected,
    }
}

/// A constant-time matcher for a typed decimal code against an HOTP generator; a code of
/// the wrong shape matches nothing (but the window is still computed).
pub fn oath_matcher<'a>(generator: &'a Hotp, code: &str) -> impl FnMut(u64) -> bool + 'a {
    let given = generator.parse(code);
    let valid = Choice::from(u8::from(given.is_some()));
    let given = given.unwrap_or(u32::MAX);
    move |counter| bool::from(generator.value(counter).ct_eq(&given) & valid)
}

/// A constant-time matcher for text codes (mOTP hex, either case) from any generator.
pub fn text_matcher<'a>(code: &str, generate: impl Fn(u64) -> Zeroizing<String> + 'a) -> impl FnMut(u64) -> bool + 'a {
    let given = Zeroizing::new(code.to_ascii_lowercase());
    move |counter| bool::from(generate(counter).as_bytes().ct_eq(given.as_bytes()))
}

/// Searches time steps around `center` (current step plus any known drift); `now_step` is
/// always tried too, so a stored drift can never lock out a token whose clock is right.
/// `last_used` is the last accepted step: it and any earlier step count as replays.
pub fn verify_time(
    now_step: u64,
    center: u64,
    window: Window,
    last_used: Option<u64>,
    is_match: impl FnMut(u64) -> bool,
) -> Verdict {
    let lo = center.saturating_sub(window.behind);
    let hi = center.saturating_add(window.ahead);
    let extra = (!(lo..=hi).contains(&now_step)).then_some(now_step);
    search((lo..=hi).chain(extra), center, last_used, is_match)
}

/// Searches counters `next ..= next + window.ahead` of an event (HOTP) token.
/// Counters below `next` were used or skipped, so they are never tried.
pub fn verify_counter(next: u64, window: Window, is_match: impl FnMut(u64) -> bool) -> Verdict {
    let hi = next.saturating_add(window.ahead);
    search(next..=hi, next, None, is_match)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Secret};

    fn key() -> Hotp {
        Hotp::new(
            &Secret::from_bytes(b"12345678901234567890".to_vec()),
            Algorithm::Sha1,
            6,
        )
    }

    fn time(g: &Hotp, code: &str, now: u64, center: u64, w: Window, last: Option<u64>) -> Verdict {
        verify_time(now, center, w, last, oath_matcher(g, code))
    }

    #[test]
    fn of_two_matching_counters_the_closest_wins_and_a_tie_goes_to_the_later() {
        let w = Window::symmetric(2);
        let matches = |set: &'static [u64]| move |c: u64| set.contains(&c);
        let accepted = |v| match v {
            Verdict::Accepted(m) => m.counter,
            other => panic!("expected a match, got {other:?}"),
        };
        assert_eq!(accepted(verify_time(100, 100, w, None, matches(&[98, 101]))), 101);
        assert_eq!(accepted(verify_time(100, 100, w, None, matches(&[99, 102]))), 99);
        assert_eq!(accepted(verify_time(100, 100, w, None, matches(&[99, 101]))), 101);
        assert_eq!(accepted(verify_time(100, 100, w, None, matches(&[100, 101]))), 100);
        // A used step does not compete: the unused one wins even when farther away.
        assert_eq!(accepted(verify_time(100, 100, w, Some(100), matches(&[100, 102]))), 102);
        assert_eq!(accepted(verify_counter(7, Window::look_ahead(3), matches(&[9, 8]))), 8);
    }

    #[test]
    fn time_window_accepts_neighbours_only() {
        let g = key();
        let w = Window::symmetric(1);
        for (step, ok) in [(99, false), (100, true), (101, true), (102, true), (103, false)] {
            let v = time(&g, &g.code(step), 101, 101, w, None);
            assert_eq!(
                matches!(v, Verdict::Accepted(m) if m.counter == step),
                ok,
                "step {step}"
            );
        }
    }

    #[test]
    fn a_used_step_is_a_replay() {
        let g = key();
        let w = Window::symmetric(1);
        assert_eq!(time(&g, &g.code(100), 100, 100, w, Some(100)), Verdict::Replayed);
        // An older step is a replay too, even inside the window.
        assert_eq!(time(&g, &g.code(99), 100, 100, w, Some(100)), Verdict::Replayed);
        assert_eq!(
            time(&g, &g.code(101), 100, 100, w, Some(100)),
            Verdict::Accepted(Matched { counter: 101 })
        );
    }

    #[test]
    fn drifted_center_still_tries_now() {
        let g = key();
        assert_eq!(
            time(&g, &g.code(500), 500, 520, Window::symmetric(1), None),
            Verdict::Accepted(Matched { counter: 500 })
        );
    }

    #[test]
    fn counter_look_ahead_and_resync() {
        let g = key();
        let w = Window::look_ahead(3);
        let c = |code: &str, next| verify_counter(next, w, oath_matcher(&g, code));
        assert_eq!(c(&g.code(5), 2), Verdict::Accepted(Matched { counter: 5 }));
        assert_eq!(c(&g.code(6), 2), Verdict::Rejected);
        assert_eq!(c(&g.code(1), 2), Verdict::Rejected);
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let g = key();
        let w = Window::symmetric(1);
        for bad in ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "-12345", "+12345", " 12345"] {
            assert_eq!(time(&g, bad, 100, 100, w, None), Verdict::Rejected, "{bad:?}");
        }
    }

    #[test]
    fn text_matcher_ignores_case() {
        let mut m = text_matcher("ABC123", |_| Zeroizing::new("abc123".to_string()));
        assert!(m(0));
    }

    #[test]
    fn window_at_zero_does_not_underflow() {
        let g = key();
        assert_eq!(
            time(&g, &g.code(0), 0, 0, Window::symmetric(2), None),
            Verdict::Accepted(Matched { counter: 0 })
        );
    }
}

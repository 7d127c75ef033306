//! Window search: which counter or time step, if any, a typed code belongs to.
//!
//! Every candidate in the window is computed and compared in constant time, so a wrong code
//! costs the same as a right one and the position of a match does not leak.

use subtle::ConstantTimeEq;
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
        Window {
            behind: n,
            ahead: n,
        }
    }

    /// The expected counter and up to `n` more, for event tokens.
    pub fn look_ahead(n: u64) -> Self {
        Window {
            behind: 0,
            ahead: n,
        }
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
    code: &str,
    candidates: impl Iterator<Item = u64>,
    center: u64,
    last_used: Option<u64>,
    generate: impl Fn(u64) -> Zeroizing<String>,
) -> Verdict {
    let given = Zeroizing::new(code.to_ascii_lowercase());
    let mut best: Option<u64> = None;
    let mut replayed = false;
    for counter in candidates {
        let expected = generate(counter);
        let equal: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
        if !equal {
            continue;
        }
        if last_used.is_some_and(|last| counter <= last) {
            replayed = true;
        } else if best.is_none_or(|b| counter.abs_diff(center) < b.abs_diff(center)) {
            best = Some(counter);
        }
    }
    match (best, replayed) {
        (Some(counter), _) => Verdict::Accepted(Matched { counter }),
        (None, true) => Verdict::Replayed,
        (None, false) => Verdict::Rejected,
    }
}

/// Searches time steps around `center` (current step plus any known drift); `now_step` is
/// always tried too, so a stored drift can never lock out a token whose clock is right.
/// `last_used` is the last accepted step: it and any earlier step count as replays.
pub fn verify_time(
    code: &str,
    now_step: u64,
    center: u64,
    window: Window,
    last_used: Option<u64>,
    generate: impl Fn(u64) -> Zeroizing<String>,
) -> Verdict {
    let lo = center.saturating_sub(window.behind);
    let hi = center.saturating_add(window.ahead);
    let extra = (!(lo..=hi).contains(&now_step)).then_some(now_step);
    search(code, (lo..=hi).chain(extra), center, last_used, generate)
}

/// Searches counters `next ..= next + window.ahead` of an event (HOTP) token.
/// Counters below `next` were used or skipped, so they are never tried.
pub fn verify_counter(
    code: &str,
    next: u64,
    window: Window,
    generate: impl Fn(u64) -> Zeroizing<String>,
) -> Verdict {
    let hi = next.saturating_add(window.ahead);
    search(code, next..=hi, next, None, generate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Secret, hotp};

    fn key() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec())
    }

    fn gen_at(s: &Secret) -> impl Fn(u64) -> Zeroizing<String> + '_ {
        move |c| hotp(s, c, 6, Algorithm::Sha1)
    }

    #[test]
    fn time_window_accepts_neighbours_only() {
        let s = key();
        let g = gen_at(&s);
        let w = Window::symmetric(1);
        for (step, ok) in [
            (99, false),
            (100, true),
            (101, true),
            (102, true),
            (103, false),
        ] {
            let code = g(step);
            let v = verify_time(&code, 101, 101, w, None, &g);
            assert_eq!(
                matches!(v, Verdict::Accepted(m) if m.counter == step),
                ok,
                "step {step}"
            );
        }
    }

    #[test]
    fn a_used_step_is_a_replay() {
        let s = key();
        let g = gen_at(&s);
        let w = Window::symmetric(1);
        let code = g(100);
        assert_eq!(
            verify_time(&code, 100, 100, w, Some(100), &g),
            Verdict::Replayed
        );
        // An older step is a replay too, even inside the window.
        let old = g(99);
        assert_eq!(
            verify_time(&old, 100, 100, w, Some(100), &g),
            Verdict::Replayed
        );
        let next = g(101);
        assert_eq!(
            verify_time(&next, 100, 100, w, Some(100), &g),
            Verdict::Accepted(Matched { counter: 101 })
        );
    }

    #[test]
    fn drifted_center_still_tries_now() {
        let s = key();
        let g = gen_at(&s);
        let code = g(500);
        assert_eq!(
            verify_time(&code, 500, 520, Window::symmetric(1), None, &g),
            Verdict::Accepted(Matched { counter: 500 })
        );
    }

    #[test]
    fn counter_look_ahead_and_resync() {
        let s = key();
        let g = gen_at(&s);
        let w = Window::look_ahead(3);
        assert_eq!(
            verify_counter(&g(5), 2, w, &g),
            Verdict::Accepted(Matched { counter: 5 })
        );
        assert_eq!(verify_counter(&g(6), 2, w, &g), Verdict::Rejected);
        assert_eq!(verify_counter(&g(1), 2, w, &g), Verdict::Rejected);
    }

    #[test]
    fn window_at_zero_does_not_underflow() {
        let s = key();
        let g = gen_at(&s);
        assert_eq!(
            verify_time(&g(0), 0, 0, Window::symmetric(2), None, &g),
            Verdict::Accepted(Matched { counter: 0 })
        );
    }
}

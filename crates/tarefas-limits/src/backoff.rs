//! Jitter and exponential backoff for [`Limiter::acquire`](crate::Limiter::acquire)
//! (and [`backoff`] for callers with waiting loops of their own):
//! a tiny xorshift generator seeded from the standard library's random hasher keys,
//! so that workers woken together do not retry in lockstep.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// First wait after Redis is found unreachable.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two attempts while Redis stays unreachable.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The jitter added to a rate-limit wait is at most this fraction of the wait…
const JITTER_FRACTION: u32 = 10;
/// …and at most this long.
const JITTER_MAX: Duration = Duration::from_millis(25);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

/// A uniformly distributed number in `0..=max` (xorshift64*; not for cryptography).
fn below_or_eq(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        match max.checked_add(1) {
            Some(m) => r % m,
            None => r,
        }
    })
}

/// A random extra delay added to a rate-limit wait: up to a tenth of the wait,
/// at most 25 ms. It spreads out workers told to wait for the same slot.
pub(crate) fn jitter(wait: Duration) -> Duration {
    let cap = (wait / JITTER_FRACTION).min(JITTER_MAX);
    Duration::from_micros(below_or_eq(cap.as_micros() as u64))
}

/// The wait before attempt `failures + 1` while Redis is unreachable: exponential
/// from 50 ms, capped at 2 s, with "equal jitter" (half fixed, half random).
pub fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = exp / 2;
    half + Duration::from_micros(below_or_eq(half.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth_of_the_wait_and_25_ms() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_millis(5)) <= Duration::from_micros(500));
            assert!(jitter(Duration::from_secs(10)) <= Duration::from_millis(25));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
            let later = backoff(40);
            assert!(later >= Duration::from_secs(1) && later <= Duration::from_secs(2));
        }
        assert!(backoff(4) >= Duration::from_millis(200));
    }
}

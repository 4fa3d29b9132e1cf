//! Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"): the delay before retry `n` is uniform in `[0, min(max, initial * 2^(n-1))]`,
//! which spreads retries of many failing consumers instead of synchronizing them.

use std::time::Duration;

use rand::Rng;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << shift.min(31))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// A random delay in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceiling_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(9), Duration::from_millis(25_600));
        assert_eq!(b.ceiling(10), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    proptest! {
        #[test]
        fn delay_is_within_zero_and_ceiling(attempt in 0u32..200, init_ms in 1u64..5000, extra in 0u64..100_000, seed in any::<u64>()) {
            use rand::SeedableRng;
            let b = Backoff { initial: Duration::from_millis(init_ms), max: Duration::from_millis(init_ms + extra) };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            prop_assert!(d <= b.ceiling(attempt));
            prop_assert!(b.ceiling(attempt) <= b.max);
        }
    }
}

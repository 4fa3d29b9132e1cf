//! Cache and guard lifetimes.

use std::time::Duration;

use crate::error::CacheError;

/// How long cached values and version guards live.
///
/// The guard must live at least as long as the value: a value whose guard expired first
/// could be overwritten by a replayed older event or a slow reader's older load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    cache_ttl: Duration,
    guard_ttl: Duration,
}

impl Default for Ttls {
    /// One hour for values, seven days for guards.
    fn default() -> Self {
        Ttls {
            cache_ttl: Duration::from_secs(3600),
            guard_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Ttls {
    /// Validated lifetimes: both at least one millisecond, at most ~10 years, and
    /// `guard_ttl >= cache_ttl`.
    pub fn new(cache_ttl: Duration, guard_ttl: Duration) -> Result<Self, CacheError> {
        const MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
        for (name, d) in [("cache_ttl", cache_ttl), ("guard_ttl", guard_ttl)] {
            if d < Duration::from_millis(1) {
                return Err(CacheError::Config(format!(
                    "{name} must be at least 1ms, got {d:?}"
                )));
            }
            if d > MAX {
                return Err(CacheError::Config(format!(
                    "{name} must be at most 10 years, got {d:?}"
                )));
            }
        }
        if guard_ttl < cache_ttl {
            return Err(CacheError::Config(format!(
                "guard_ttl ({guard_ttl:?}) must be >= cache_ttl ({cache_ttl:?}): a guard that \
                 expires before its value lets older versions overwrite it"
            )));
        }
        Ok(Ttls {
            cache_ttl,
            guard_ttl,
        })
    }

    /// Lifetime of a cached value.
    pub fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }

    /// Lifetime of a version guard (refreshed whenever the guard is written).
    pub fn guard_ttl(&self) -> Duration {
        self.guard_ttl
    }

    /// `cache_ttl` in whole milliseconds (for `PX`).
    pub fn cache_ttl_ms(&self) -> u64 {
        millis(self.cache_ttl)
    }

    /// `guard_ttl` in whole milliseconds (for `PX`).
    pub fn guard_ttl_ms(&self) -> u64 {
        millis(self.guard_ttl)
    }
}

fn millis(d: Duration) -> u64 {
    // Bounded to 10 years by `Ttls::new`, so this never saturates in practice.
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_shorter_than_cache_is_refused() {
        let err = Ttls::new(Duration::from_secs(10), Duration::from_secs(5));
        assert!(matches!(err, Err(CacheError::Config(m)) if m.contains("guard_ttl")));
    }

    #[test]
    fn zero_is_refused_and_equal_is_fine() {
        assert!(Ttls::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Ttls::new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
    }
}

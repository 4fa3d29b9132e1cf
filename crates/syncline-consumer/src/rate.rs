//! Events-per-second and requests-per-second limits (`governor`), both optional.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The runtime's two rate limits, shared by every batch task.
#[derive(Debug, Default)]
pub struct RateLimits {
    events: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    requests: Option<DefaultDirectRateLimiter>,
}

impl RateLimits {
    /// Limits from the configured rates; `None` means unlimited.
    pub fn new(events_per_second: Option<u32>, requests_per_second: Option<u32>) -> Self {
        RateLimits {
            // The burst equals one second's worth, which is also the most a batch holds
            // (`RuntimeConfig::batch_event_limit`), so a batch passes in one wait; the
            // chunked wait below keeps a bigger request correct all the same.
            events: events_per_second
                .and_then(NonZeroU32::new)
                .map(|r| (RateLimiter::direct(Quota::per_second(r)), r)),
            requests: requests_per_second
                .and_then(NonZeroU32::new)
                .map(|r| RateLimiter::direct(Quota::per_second(r))),
        }
    }

    /// Wait until `events` events may be sent in one request.
    pub async fn acquire(&self, events: usize) {
        if let Some((limiter, burst)) = &self.events {
            let mut left = u32::try_from(events).unwrap_or(u32::MAX);
            while left > 0 {
                let chunk = left.min(burst.get());
                if let Some(n) = NonZeroU32::new(chunk) {
                    // `chunk <= burst`, so capacity is always sufficient.
                    let _ = limiter.until_n_ready(n).await;
                }
                left -= chunk;
            }
        }
        if let Some(limiter) = &self.requests {
            limiter.until_ready().await;
        }
    }
}

//! Readiness: what `/readyz` answers, kept apart from [`crate::metrics::Metrics`] (which
//! only counts). The runtime feeds both; a caller that wants to watch readiness (a test,
//! an embedding process) creates a [`Health`] and hands it to
//! [`crate::runtime::run_with`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default of [`Health::set_dead_letter_alarm`]: this many dead letters in a row, with
/// nothing applied in between, fail readiness.
pub const DEFAULT_DEAD_LETTER_ALARM: u64 = 1000;

/// The "every record is dead-lettered" error is logged at most this often.
const DEAD_LETTER_ALARM_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    /// Partitions this instance owns.
    assigned: AtomicUsize,
    /// Records dead-lettered since the last one the sink applied or found stale.
    dead_letter_streak: AtomicU64,
    /// A streak this long fails readiness (0: never).
    dead_letter_alarm: AtomicU64,
    /// When the "everything is dead-lettered" error was last logged.
    dead_letter_alarm_logged: Mutex<Option<Instant>>,
    /// Batches in a retry loop, by batch id, with when their retrying began.
    retrying: Mutex<BTreeMap<u64, Instant>>,
}

/// The runtime's readiness state, shared by the runtime and the `/readyz` endpoint.
/// Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready (no partitions yet), with the default dead-letter alarm.
    pub fn new() -> Self {
        Health {
            inner: Arc::new(Inner {
                assigned: AtomicUsize::new(0),
                dead_letter_streak: AtomicU64::new(0),
                dead_letter_alarm: AtomicU64::new(DEFAULT_DEAD_LETTER_ALARM),
                dead_letter_alarm_logged: Mutex::new(None),
                retrying: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Fail readiness once `n` records in a row were dead-lettered with none applied or
    /// found stale in between (0 turns the check off). A group that dead-letters
    /// everything (a schema mistake, a producer bug) otherwise looks healthy: its lag is
    /// zero because dead letters are committed.
    pub fn set_dead_letter_alarm(&self, n: u64) {
        self.inner.dead_letter_alarm.store(n, Ordering::Relaxed);
    }

    /// Records dead-lettered since the sink last applied (or found stale) one.
    pub fn dead_letter_streak(&self) -> u64 {
        self.inner.dead_letter_streak.load(Ordering::Relaxed)
    }

    /// Number of partitions this instance owns.
    pub fn assigned_partitions(&self) -> usize {
        self.inner.assigned.load(Ordering::Relaxed)
    }

    /// How long the oldest batch still in a retry loop has been retrying.
    pub fn retrying_for(&self) -> Option<Duration> {
        self.inner
            .retrying
            .lock()
            .values()
            .min()
            .map(|since| since.elapsed())
    }

    /// `/readyz`: `Ok` when partitions are assigned, no batch has been retrying for
    /// longer than `unready_after` and the dead-letter alarm is quiet; otherwise the
    /// reason.
    pub fn readiness(&self, unready_after: Duration) -> Result<(), String> {
        if self.assigned_partitions() == 0 {
            return Err("no partitions assigned".into());
        }
        if let Some(d) = self.retrying_for() {
            if d > unready_after {
                return Err(format!(
                    "the sink or the dead-letter topic has been failing (retrying) for {}s",
                    d.as_secs()
                ));
            }
        }
        if let Some(streak) = self.dead_letter_alarm_firing() {
            return Err(format!(
                "every one of the last {streak} records was dead-lettered and none applied"
            ));
        }
        Ok(())
    }

    fn dead_letter_alarm_firing(&self) -> Option<u64> {
        let alarm = self.inner.dead_letter_alarm.load(Ordering::Relaxed);
        let streak = self.dead_letter_streak();
        (alarm > 0 && streak >= alarm).then_some(streak)
    }

    // ---- updates used by the runtime -------------------------------------------------

    /// The sink applied (or found stale) `n` records: any dead-letter streak ends.
    pub(crate) fn progressed(&self, n: u64) {
        // A load first: the hot path then only reads a cache line it shares with nobody
        // writing, instead of storing 0 into it for every batch.
        if n > 0 && self.inner.dead_letter_streak.load(Ordering::Relaxed) != 0 {
            self.inner.dead_letter_streak.store(0, Ordering::Relaxed);
        }
    }

    /// One record was dead-lettered as `class`; logs (at most once a minute) while the
    /// alarm fires.
    pub(crate) fn dead_lettered(&self, class: &str) {
        self.inner
            .dead_letter_streak
            .fetch_add(1, Ordering::Relaxed);
        if let Some(streak) = self.dead_letter_alarm_firing() {
            let mut logged = self.inner.dead_letter_alarm_logged.lock();
            if logged.is_none_or(|t| t.elapsed() >= DEAD_LETTER_ALARM_LOG_EVERY) {
                *logged = Some(Instant::now());
                tracing::error!(
                    streak, last_class = class,
                    "every one of the last {streak} records was dead-lettered and none applied: \
                     check the producers' schema and the dead-letter topic (readiness fails until a record is applied)"
                );
            }
        }
    }

    pub(crate) fn set_assigned(&self, n: usize) {
        self.inner.assigned.store(n, Ordering::Relaxed);
    }

    pub(crate) fn retrying_started(&self, batch: u64) {
        self.inner
            .retrying
            .lock()
            .entry(batch)
            .or_insert_with(Instant::now);
    }

    pub(crate) fn retrying_finished(&self, batch: u64) {
        self.inner.retrying.lock().remove(&batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_that_dead_letters_everything_is_not_ready() {
        let h = Health::new();
        h.set_assigned(1);
        h.set_dead_letter_alarm(3);
        h.dead_lettered("unknown_schema");
        h.dead_lettered("unknown_schema");
        assert!(h.readiness(Duration::from_secs(60)).is_ok());
        h.dead_lettered("unknown_schema");
        let why = h.readiness(Duration::from_secs(60)).unwrap_err();
        assert!(why.contains("dead-lettered"), "{why}");
        // One applied record ends the streak.
        h.progressed(1);
        assert!(h.readiness(Duration::from_secs(60)).is_ok());
        assert_eq!(h.dead_letter_streak(), 0);
        // 0 turns the check off.
        h.set_dead_letter_alarm(0);
        for _ in 0..5 {
            h.dead_lettered("bad_magic");
        }
        assert!(h.readiness(Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn readiness_needs_partitions_and_no_long_retry() {
        let h = Health::new();
        assert!(h.readiness(Duration::from_secs(60)).is_err());
        h.set_assigned(1);
        assert!(h.readiness(Duration::from_secs(60)).is_ok());
        h.retrying_started(7);
        assert!(h.readiness(Duration::ZERO).is_err());
        h.retrying_finished(7);
        assert!(h.readiness(Duration::ZERO).is_ok());
    }
}

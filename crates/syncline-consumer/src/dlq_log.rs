//! Rate-limited logging of dead letters, so that a poison storm (every record of a topic
//! dead-lettered: a schema mistake, a producer bug) leaves a readable log: per error class,
//! the first few records of each minute in full, then one count per minute. The metric
//! `syncline_dead_letters_total{class}` carries the exact totals.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::error::KafkaError;

use crate::dlq::DeadLetter;

/// Records logged in full per class and window.
const EXAMPLES_PER_WINDOW: u64 = 3;
/// Length of a window.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct ClassWindow {
    started: Instant,
    logged: u64,
    suppressed: u64,
}

/// What has been logged recently, per class, and the last write failure.
#[derive(Debug, Default)]
pub(crate) struct DlqLog {
    classes: Mutex<HashMap<String, ClassWindow>>,
    /// The cause last logged at error level, and when.
    last_failure: Mutex<Option<(String, Instant)>>,
}

impl DlqLog {
    /// A dead letter was acknowledged.
    pub(crate) fn written(&self, dl: &DeadLetter<'_>, truncated: bool, dlq: &str) {
        let mut classes = self.classes.lock();
        let w = classes
            .entry(dl.class.to_owned())
            .or_insert_with(|| ClassWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            });
        if w.started.elapsed() >= WINDOW {
            if w.suppressed > 0 {
                tracing::warn!(
                    class = dl.class, count = w.suppressed, %dlq,
                    "more records dead-lettered in the last {}s (not logged one by one)",
                    w.started.elapsed().as_secs()
                );
            }
            *w = ClassWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < EXAMPLES_PER_WINDOW {
            w.logged += 1;
            tracing::warn!(
                class = dl.class, reason = dl.reason, partition = dl.at.partition,
                offset = dl.at.offset, truncated, %dlq, "record dead-lettered"
            );
        } else {
            w.suppressed += 1;
        }
    }

    /// A round of dead-letter writes failed. The cause is logged at error level when it
    /// is new or a minute has passed, so a dead-letter outage is named clearly once
    /// instead of once per record and attempt.
    pub(crate) fn failed(
        &self,
        cause: &KafkaError,
        pending: usize,
        attempt: u32,
        delay: Duration,
        dlq: &str,
    ) {
        let text = cause.to_string();
        let mut last = self.last_failure.lock();
        let new = last
            .as_ref()
            .is_none_or(|(t, at)| *t != text || at.elapsed() >= WINDOW);
        if new {
            *last = Some((text, Instant::now()));
            tracing::error!(
                error = %cause, pending, attempt, ?delay, %dlq,
                "cannot write to the dead-letter topic; the records' partitions are paused and \
                 their offsets stay uncommitted until it works (missing topic? authorization? \
                 size limit?)"
            );
        } else {
            tracing::debug!(error = %cause, pending, attempt, ?delay, %dlq, "dead-letter write failed again");
        }
    }

    /// Log the counts still held back (on shutdown).
    pub(crate) fn flush(&self, dlq: &str) {
        for (class, w) in self.classes.lock().iter_mut() {
            if w.suppressed > 0 {
                tracing::warn!(
                    class, count = w.suppressed, %dlq,
                    "more records dead-lettered since the last report (not logged one by one)"
                );
                w.suppressed = 0;
            }
        }
    }
}

//! Replaying the topic through a sink with its own consumer group, and stopping once the
//! group's committed offsets reach given targets.
//!
//! The replay is the ordinary consumer runtime (`run_with`): batching, coalescing,
//! retries, dead letters and contiguous commits are exactly the live sinks'. It is its
//! group's only reader by construction, so it reads every partition as a sole reader
//! ([`Membership::SoleReader`]): no group join, which a broker delays by 3 s for a new
//! group, a tenth of a 1M-event rebuild. It runs on its own multi-threaded Tokio runtime
//! (the CLI's is single-threaded, which would put decoding and bulk building on one
//! core), and is stopped through its cancellation token, so it commits what it finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use syncline_consumer::runtime::{run_with, Membership, RuntimeError};
use syncline_consumer::{Health, Metrics, RuntimeConfig};
use syncline_kafka::Connection;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;

/// A running replay.
pub struct Replay {
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), RuntimeError>>>,
    /// The runtime's metrics (dead letters, applied, ...).
    pub metrics: Metrics,
    /// Its consumer group.
    pub group: String,
    /// Its topic.
    pub topic: String,
    /// Reads the group's committed offsets while waiting (made on first use).
    progress_reader: Option<CommittedReader>,
}

/// How long one committed-offsets request may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// One group's committed offsets on one topic, read through one client for the whole
/// replay. A client per poll (four a second) cost a connection, a metadata request and a
/// coordinator lookup each time: broker and CPU time the replay itself needs.
struct CommittedReader {
    consumer: Arc<BaseConsumer>,
    topic: String,
}

impl CommittedReader {
    fn new(conn: &Connection, group: &str, topic: &str) -> anyhow::Result<CommittedReader> {
        let mut cfg = conn.client_config();
        // Never joins the group nor commits: it only reads what the group committed.
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: BaseConsumer = cfg
            .create()
            .with_context(|| format!("cannot create a consumer for {}", conn.brokers))?;
        Ok(CommittedReader {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
        })
    }

    /// Committed offsets of partitions `0..n`, `None` as 0.
    async fn read(&self, n: usize) -> anyhow::Result<Vec<i64>> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(&topic, i32::try_from(p).context("partition number")?);
            }
            let got = consumer
                .committed_offsets(tpl, OFFSETS_TIMEOUT)
                .context("cannot read the replay's committed offsets")?;
            Ok((0..n)
                .map(|p| {
                    let offset = i32::try_from(p)
                        .ok()
                        .and_then(|p| got.find_partition(&topic, p))
                        .map(|e| e.offset());
                    match offset {
                        Some(Offset::Offset(o)) => o,
                        _ => 0,
                    }
                })
                .collect())
        })
        .await
        .map_err(|e| anyhow!("reading committed offsets: {e}"))?
    }
}

impl Replay {
    /// Start the runtime with `sink` (built against `metrics`) under `config`.
    pub fn start<S: syncline_consumer::sink::Sink>(
        config: RuntimeConfig,
        sink: S,
        metrics: Metrics,
    ) -> anyhow::Result<Replay> {
        config.validate().context("replay consumer settings")?;
        let cancel = CancellationToken::new();
        let (group, topic) = (config.group_id.clone(), config.topic.clone());
        let thread = {
            let (cancel, metrics) = (cancel.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("replay".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("replay-worker")
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            RuntimeError::BatchTaskFailed(format!("cannot start a runtime: {e}"))
                        })?;
                    rt.block_on(run_with(
                        config,
                        sink,
                        metrics,
                        Health::new(),
                        Membership::SoleReader,
                        cancel,
                    ))
                })
                .context("cannot start the replay thread")?
        };
        Ok(Replay {
            cancel,
            thread: Some(thread),
            metrics,
            group,
            topic,
            progress_reader: None,
        })
    }

    /// Has the runtime stopped by itself (an error)?
    fn check_running(&mut self) -> anyhow::Result<()> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return match self.join() {
                Ok(()) => bail!("the replay consumer stopped unexpectedly"),
                Err(e) => Err(e),
            };
        }
        Ok(())
    }

    fn join(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match thread.join() {
            Ok(r) => r.context("replay consumer"),
            Err(_) => Err(anyhow!("the replay thread panicked")),
        }
    }

    /// Stop the runtime (it commits what it finished) and wait for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let thread = self.thread.take();
        match tokio::task::spawn_blocking(move || thread.map(std::thread::JoinHandle::join)).await {
            Ok(Some(Ok(r))) => r.context("replay consumer"),
            Ok(Some(Err(_))) => Err(anyhow!("the replay thread panicked")),
            Ok(None) => Ok(()),
            Err(e) => Err(anyhow!("waiting for the replay consumer: {e}")),
        }
    }

    /// Wait until the group's committed offsets reach `targets` on every partition,
    /// reporting progress; returns how long that took. Fails if the runtime stops by
    /// itself meanwhile.
    ///
    /// The runtime's own view (offsets the coordinator acknowledged to it, in its metrics)
    /// is read every [`LOCAL_POLL`]: no request, so a phase ends within moments of its
    /// target. The broker is asked every [`BROKER_POLL`] as well, for what this run's
    /// runtime never committed itself (a resumed rebuild already past its target).
    pub async fn wait_for(
        &mut self,
        conn: &Connection,
        targets: &[i64],
        progress: &mut Progress,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let reader = match self.progress_reader.take() {
            Some(r) => r,
            None => CommittedReader::new(conn, &self.group, &self.topic)?,
        };
        let mut from_broker: Vec<i64> = Vec::new();
        let mut asked: Option<Instant> = None;
        loop {
            self.check_running()?;
            if asked.is_none_or(|t| t.elapsed() >= BROKER_POLL) {
                from_broker = reader.read(targets.len()).await?;
                asked = Some(Instant::now());
            }
            let local = self.locally_committed(targets.len());
            let committed = max_offsets(&from_broker, &local);
            progress.update(
                done_towards(&committed, targets),
                remaining(&committed, targets),
            );
            if reached(&committed, targets) {
                // Kept for the next phase's wait.
                self.progress_reader = Some(reader);
                return Ok(started.elapsed());
            }
            tokio::time::sleep(LOCAL_POLL).await;
        }
    }

    /// Committed offsets of partitions `0..n` as the runtime's metrics have them (0 where
    /// none is known).
    fn locally_committed(&self, n: usize) -> Vec<i64> {
        let known = self.metrics.partitions();
        (0..n)
            .map(|p| {
                i32::try_from(p)
                    .ok()
                    .and_then(|p| known.get(&p))
                    .map_or(0, |pos| pos.committed.max(0))
            })
            .collect()
    }
}

/// How often [`Replay::wait_for`] reads the runtime's own committed offsets.
const LOCAL_POLL: Duration = Duration::from_millis(50);
/// How often it asks the broker.
const BROKER_POLL: Duration = Duration::from_secs(1);

impl Drop for Replay {
    fn drop(&mut self) {
        // An error path: let the runtime commit what it finished and leave the group.
        self.cancel.cancel();
    }
}

/// Committed offsets of `group` on `topic`, `None` as 0, padded to `n` partitions.
pub async fn committed(
    conn: &Connection,
    group: &str,
    topic: &str,
    n: usize,
) -> anyhow::Result<Vec<i64>> {
    let got = syncline_kafka::committed_offsets(conn.clone(), group, topic)
        .await
        .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
    let mut out: Vec<i64> = got.into_iter().map(|c| c.unwrap_or(0)).collect();
    out.resize(n.max(out.len()), 0);
    Ok(out)
}

/// Every partition's committed offset is at or past its target.
pub fn reached(committed: &[i64], targets: &[i64]) -> bool {
    targets
        .iter()
        .enumerate()
        .all(|(p, t)| committed.get(p).copied().unwrap_or(0) >= *t)
}

/// Records still to replay before `targets`.
pub fn remaining(committed: &[i64], targets: &[i64]) -> u64 {
    targets
        .iter()
        .enumerate()
        .map(|(p, t)| (t - committed.get(p).copied().unwrap_or(0)).max(0) as u64)
        .sum()
}

/// Records replayed so far, counted only up to each partition's target.
pub fn done_towards(committed: &[i64], targets: &[i64]) -> u64 {
    targets
        .iter()
        .enumerate()
        .map(|(p, t)| committed.get(p).copied().unwrap_or(0).clamp(0, *t) as u64)
        .sum()
}

/// Per-partition maximum of two offset vectors.
pub fn max_offsets(a: &[i64], b: &[i64]) -> Vec<i64> {
    (0..a.len().max(b.len()))
        .map(|p| {
            a.get(p)
                .copied()
                .unwrap_or(0)
                .max(b.get(p).copied().unwrap_or(0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_arithmetic() {
        let targets = [10, 0, 5];
        assert!(!reached(&[10, 0], &targets));
        assert!(reached(&[10, 0, 5], &targets));
        assert!(reached(&[11, 3, 7], &targets));
        assert_eq!(remaining(&[4, 0, 7], &targets), 6);
        assert_eq!(done_towards(&[4, 9, 7], &targets), 9);
        assert_eq!(max_offsets(&[1, 5], &[3, 2, 4]), vec![3, 5, 4]);
    }
}

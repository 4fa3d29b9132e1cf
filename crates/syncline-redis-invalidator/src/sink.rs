//! The Redis sink: one pipelined round trip per batch.
//!
//! The pipeline holds one `EVALSHA` of the APPLY script from `syncline-cache` per
//! [`scripts::MAX_APPLY_EVENTS`] events of the (coalesced) batch (the script compares each
//! event's version, deletes or writes the value, sets the guard and optionally PUBLISHes a
//! notice, atomically per event), each call followed by one `INCR` per tag in its events'
//! `invalidate` lists. Outcomes come from the replies:
//!
//! * script reply, one 1 / 0 per event: [`Outcome::Applied`] / [`Outcome::Stale`];
//! * `NOSCRIPT` (the server lost its script cache: restart, failover, `SCRIPT FLUSH`):
//!   load the script and resend those events' commands within the same `apply`;
//! * any other error reply (`LOADING`, `READONLY`, `OOM`, ...) to a call: [`Outcome::Retry`]
//!   for its events; to a tag `INCR`: [`Outcome::Retry`] for that event (when the server
//!   is in such a state every command gets the error, so in practice the batch retries);
//! * connection, I/O or timeout error: [`Outcome::Retry`] for the whole batch. The
//!   runtime backs off, pauses the partitions and never commits past the batch; the
//!   [`ConnectionManager`] reconnects by itself.
//!
//! * `SYNCLINE_GEN <n>` (a rebuild switched the key prefix's generation: the script
//!   touched nothing): remember generation `n`, rebuild those events' keys for it and
//!   resend them within the same `apply`. So the first batch after a switch writes the new
//!   generation, and no write lands in the old one after the switch (the script checks the
//!   generation in the same atomic step as the write).
//!
//! Resending is safe because every command is idempotent under the version guard, except
//! the tag `INCR`s, which may then run twice: that only retires search results one more
//! time than necessary.
//!
//! The live invalidator follows the current generation. A rebuild warming the next
//! generation uses a sink *pinned* to it ([`RedisSink::pinned_to`]), which writes that
//! generation before the switch and never follows a later one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{aio::ConnectionManager, Value};
use syncline_cache::{
    scripts::{self, ApplyCall},
    ApplyOutcome,
};
use syncline_consumer::{
    metrics::{prometheus_client::registry::Unit, Counter, Gauge, TimeHistogram},
    Metrics, Outcome, Sink,
};
use syncline_event::EventRef;

use crate::config::SinkConfig;

/// How often one `apply` reloads the script after `NOSCRIPT` before giving up (Retry).
const MAX_SCRIPT_RELOADS: usize = 3;

/// Why the sink could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis refused or could not be reached.
    #[error("cannot connect to redis at {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The client error.
        source: redis::RedisError,
    },
    /// The TLS handshake failed in a way retrying cannot fix: the server's certificate
    /// is not trusted (wrong `ca_file`) or the server refused the client certificate (none
    /// or an untrusted one).
    #[error("cannot connect to redis at {url}: {cause} ({source})")]
    Tls {
        /// The URL, password redacted.
        url: String,
        /// The TLS cause in words.
        cause: String,
        /// The client error.
        source: redis::RedisError,
    },
    /// The TLS files could not be turned into a client configuration.
    #[error("redis client configuration for {url}: {reason}")]
    Config {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl SinkError {
    /// True when retrying cannot help (bad credentials, bad client configuration).
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::Connect { source, .. } => matches!(
                source.kind(),
                redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
            ),
            SinkError::Tls { .. } | SinkError::Config { .. } => true,
        }
    }
}

/// Upper bounds (seconds) of the pipeline round-trip histogram: a pipeline of a batch
/// takes well under a millisecond to a few milliseconds on a healthy server; the response
/// timeout bounds the rest.
pub const PIPELINE_DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The sink's own metrics, registered in the runtime's `/metrics`.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Events whose APPLY script changed Redis.
    pub applied: Counter,
    /// Events whose APPLY script found an equal or newer version.
    pub stale: Counter,
    /// Tag generation `INCR`s sent.
    pub tag_bumps: Counter,
    /// Pipelines sent (one per batch attempt, plus resends after NOSCRIPT).
    pub pipelines: Counter,
    /// Pipelines that failed as a whole (connection, I/O, timeout).
    pub pipeline_failures: Counter,
    /// Error replies to individual commands (LOADING, READONLY, OOM, ...), NOSCRIPT excluded.
    pub error_replies: Counter,
    /// Pipeline round-trip times, in seconds.
    pub pipeline_duration: TimeHistogram,
    /// Times the APPLY script was (re)loaded after NOSCRIPT.
    pub script_reloads: Counter,
    /// The key prefix generation the sink writes.
    pub generation: Gauge,
    /// Times a script reported a new generation (a rebuild switched it).
    pub generation_switches: Counter,
}

impl SinkMetrics {
    /// Register the counters in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        SinkMetrics {
            applied: metrics.counter(
                "syncline_redis_scripts_applied_total",
                "Events whose APPLY script changed Redis (newer version).",
            ),
            stale: metrics.counter(
                "syncline_redis_scripts_stale_total",
                "Events whose APPLY script found an equal or newer version.",
            ),
            tag_bumps: metrics.counter(
                "syncline_redis_tag_bumps_total",
                "Tag generation INCRs sent (search-result cache invalidations).",
            ),
            pipelines: metrics.counter(
                "syncline_redis_pipelines_total",
                "Pipelines sent to Redis (one round trip each).",
            ),
            pipeline_failures: metrics.counter(
                "syncline_redis_pipeline_failures_total",
                "Pipelines that failed as a whole (connection, I/O, timeout).",
            ),
            error_replies: metrics.counter(
                "syncline_redis_error_replies_total",
                "Error replies to single commands (LOADING, READONLY, OOM, ...).",
            ),
            pipeline_duration: metrics.register_with_unit(
                "syncline_redis_pipeline_duration",
                "Round-trip time of pipelines that Redis answered in full",
                Unit::Seconds,
                TimeHistogram::new(&PIPELINE_DURATION_BUCKETS),
            ),
            script_reloads: metrics.counter(
                "syncline_redis_script_reloads_total",
                "Times the APPLY script was loaded again after NOSCRIPT.",
            ),
            generation: metrics.gauge(
                "syncline_redis_generation",
                "Key prefix generation the sink writes (see syncline-ctl rebuild redis).",
            ),
            generation_switches: metrics.counter(
                "syncline_redis_generation_switches_total",
                "Times the sink learned of a new key prefix generation.",
            ),
        }
    }
}

/// Applies change events to Redis. Cheap to share: the connection is multiplexed, so
/// concurrent batches (the runtime's `max_in_flight_batches`) pipeline over it.
pub struct RedisSink {
    conn: ConnectionManager,
    config: SinkConfig,
    metrics: SinkMetrics,
    /// The generation the keys are built for: the last one a script confirmed, or the
    /// pinned one.
    generation: Arc<AtomicU64>,
    /// Never follow another generation (a rebuild warming the next one).
    pinned: bool,
}

/// What the replies to one chunk say.
enum ChunkReply {
    /// One outcome per event.
    Done(Vec<Outcome>),
    /// The server lost the script: resend after loading it.
    NoScript,
    /// The generation is now this one: resend with its keys.
    Generation(u64),
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One APPLY call in a pipeline and the tag `INCR`s that follow it.
struct Chunk<'a> {
    call: ApplyCall<'a>,
    /// Batch index of each event in the call, in call order.
    events: Vec<usize>,
    /// Position of the call's reply in the pipeline; the tag replies follow in order.
    start: usize,
}

impl RedisSink {
    /// Connect (with the configured timeouts) and load the APPLY script.
    pub async fn connect(config: SinkConfig, metrics: &Metrics) -> Result<Self, SinkError> {
        let err = |source: redis::RedisError| match syncline_cache::connect::tls_cause(&source) {
            Some(cause) => SinkError::Tls {
                url: config.display_url.clone(),
                cause,
                source,
            },
            None => SinkError::Connect {
                url: config.display_url.clone(),
                source,
            },
        };
        let client = syncline_cache::connect::client(config.connection.clone(), &config.tls)
            .map_err(|e| SinkError::Config {
                url: config.display_url.clone(),
                reason: e.to_string(),
            })?;
        // Few, short reconnect attempts per request: while Redis is down each batch attempt
        // fails fast with Retry and the runtime's backoff paces the next one.
        let cm_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_response_timeout(config.response_timeout)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        // A first plain connection reports a refused handshake at once (see `probe`).
        syncline_cache::connect::probe(&client, config.connect_timeout, config.response_timeout)
            .await
            .map_err(err)?;
        let mut conn = client
            .get_connection_manager_with_config(cm_config)
            .await
            .map_err(err)?;
        scripts::apply_script()
            .load_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(Self::new(conn, config, metrics))
    }

    /// A sink over an existing connection (the script is loaded on first `NOSCRIPT`).
    pub fn new(conn: ConnectionManager, config: SinkConfig, metrics: &Metrics) -> Self {
        RedisSink {
            conn,
            config,
            metrics: SinkMetrics::register(metrics),
            generation: Arc::new(AtomicU64::new(0)),
            pinned: false,
        }
    }

    /// This sink, writing `generation` only: before the switch to it (APPLY accepts a
    /// generation newer than the current one) and after it. If the prefix moves past it,
    /// every event is retried with a reason saying so; the caller must stop the sink.
    pub fn pinned_to(mut self, generation: u64) -> Self {
        self.generation = Arc::new(AtomicU64::new(generation));
        self.metrics.generation.set(gauge(generation));
        self.pinned = true;
        self
    }

    /// The generation the next batch writes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The sink's counters.
    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    /// The validated settings.
    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    fn notice(&self, event: &EventRef<'_>) -> Option<String> {
        self.config.publish_channel.as_ref()?;
        Some(
            serde_json::json!({
                "entity_type": event.entity_type,
                "entity_id": event.entity_id,
                "version": event.version,
                "op": event.op.as_str(),
                "event_id": event.event_id,
                "occurred_at": event.occurred_at,
            })
            .to_string(),
        )
    }

    /// Build the pipeline for the events at `pending`: one APPLY call per
    /// [`scripts::MAX_APPLY_EVENTS`] events, each followed by its events' tag `INCR`s.
    /// Events that cannot be expressed (negative version: the runtime validates, so only a
    /// foreign runtime sends one) get their outcome directly.
    // Indexing by event position: `pending` and each chunk's `events` hold positions in
    // `batch` (a subset of 0..batch.len()), and `notices` and `outcomes` have one entry
    // per event of the batch.
    #[allow(clippy::indexing_slicing)]
    fn build<'a>(
        &self,
        batch: &'a [EventRef<'a>],
        pending: &[usize],
        notices: &'a [Option<String>],
        outcomes: &mut [Option<Outcome>],
    ) -> (redis::Pipeline, Vec<Chunk<'a>>) {
        let channel = self.config.publish_channel.as_deref();
        let generation = self.generation();
        let new_chunk = || Chunk {
            call: ApplyCall::new(
                &self.config.layout,
                generation,
                self.config.mode,
                &self.config.ttls,
                channel,
            ),
            events: Vec::new(),
            start: 0,
        };
        let mut chunks = Vec::new();
        let mut chunk = new_chunk();
        for &i in pending {
            let event = batch[i];
            if let Err(e) = chunk.call.push(event, notices[i].as_deref()) {
                outcomes[i] = Some(Outcome::DeadLetter {
                    class: "invalid_event".into(),
                    reason: e.to_string(),
                });
                continue;
            }
            chunk.events.push(i);
            if chunk.call.is_full() {
                chunks.push(std::mem::replace(&mut chunk, new_chunk()));
            }
        }
        if !chunk.call.is_empty() {
            chunks.push(chunk);
        }
        let mut pipe = redis::pipe();
        for chunk in &mut chunks {
            chunk.start = pipe.len();
            pipe.add_command(chunk.call.cmd());
            for &i in &chunk.events {
                for tag in batch[i].invalidate.iter() {
                    pipe.incr(self.config.layout.tag_key(tag), 1);
                }
            }
        }
        (pipe, chunks)
    }

    /// Outcomes of one chunk from its replies, or why it must be resent.
    // Indexing by event position, as in `build`.
    #[allow(clippy::indexing_slicing)]
    fn chunk_outcomes(
        &self,
        batch: &[EventRef<'_>],
        chunk: &Chunk<'_>,
        replies: &[Value],
    ) -> ChunkReply {
        let retry_all = |reason: String| {
            chunk
                .events
                .iter()
                .map(|_| Outcome::Retry {
                    reason: reason.clone(),
                })
                .collect()
        };
        // The replies are Redis's: never trust their number.
        let Some(script_reply) = replies.get(chunk.start) else {
            return ChunkReply::Done(retry_all(format!(
                "redis answered {} replies, none for the APPLY call at {}",
                replies.len(),
                chunk.start
            )));
        };
        if scripts::is_noscript(script_reply) {
            return ChunkReply::NoScript;
        }
        match scripts::generation_changed(script_reply) {
            Some(Ok(current)) if !self.pinned => return ChunkReply::Generation(current),
            Some(Ok(current)) => {
                return ChunkReply::Done(retry_all(format!(
                    "the key prefix moved to generation {current}, past generation {} this \
                     rebuild writes",
                    chunk.call.generation()
                )))
            }
            Some(Err(e)) => return ChunkReply::Done(retry_all(e.to_string())),
            None => {}
        }
        if let Some(reason) = error_reply(script_reply) {
            self.metrics.error_replies.inc();
            return ChunkReply::Done(retry_all(reason));
        }
        let applied = match chunk.call.outcomes(script_reply) {
            Ok(o) => o,
            Err(e) => return ChunkReply::Done(retry_all(e.to_string())),
        };
        let mut tag_reply = chunk.start + 1;
        let mut out = Vec::with_capacity(chunk.events.len());
        for (&i, outcome) in chunk.events.iter().zip(applied) {
            let tags = batch[i].invalidate.len();
            let Some(tag_replies) = replies.get(tag_reply..tag_reply + tags) else {
                out.push(Outcome::Retry {
                    reason: format!(
                        "redis answered {} replies, fewer than the tag increments sent",
                        replies.len()
                    ),
                });
                continue;
            };
            tag_reply += tags;
            self.metrics.tag_bumps.inc_by(tags as u64);
            if let Some(reason) = tag_replies.iter().find_map(error_reply) {
                self.metrics.error_replies.inc();
                out.push(Outcome::Retry { reason });
                continue;
            }
            out.push(match outcome {
                ApplyOutcome::Applied => {
                    self.metrics.applied.inc();
                    Outcome::Applied
                }
                ApplyOutcome::Stale => {
                    self.metrics.stale.inc();
                    Outcome::Stale
                }
            });
        }
        ChunkReply::Done(out)
    }

    // Indexing by event position, as in `build`.
    #[allow(clippy::indexing_slicing)]
    async fn apply_batch(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let notices: Vec<Option<String>> = batch.iter().map(|e| self.notice(e)).collect();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut conn = self.conn.clone();
        // Outer bound in case a reconnect stalls: the manager's own timeouts should fire first.
        let deadline = self.config.response_timeout + self.config.connect_timeout * 4;

        for attempt in 0..=MAX_SCRIPT_RELOADS {
            let (pipe, chunks) = self.build(batch, &pending, &notices, &mut outcomes);
            if chunks.is_empty() {
                break;
            }
            let started = Instant::now();
            let sent =
                tokio::time::timeout(deadline, conn.send_packed_commands(&pipe, 0, pipe.len()))
                    .await;
            self.metrics.pipelines.inc();
            let replies = match sent {
                Ok(Ok(replies)) if replies.len() == pipe.len() => replies,
                other => {
                    let reason = match other {
                        Err(_) => format!("redis did not answer within {deadline:?}"),
                        Ok(Err(e)) => format!("redis: {e}"),
                        Ok(Ok(r)) => format!(
                            "redis answered {} replies to {} commands",
                            r.len(),
                            pipe.len()
                        ),
                    };
                    self.metrics.pipeline_failures.inc();
                    tracing::warn!(%reason, events = pending.len(), "pipeline failed; batch will be retried");
                    for &i in chunks.iter().flat_map(|c| &c.events) {
                        outcomes[i] = Some(Outcome::Retry {
                            reason: reason.clone(),
                        });
                    }
                    break;
                }
            };
            self.metrics.pipeline_duration.observe(started.elapsed());

            let mut missing_script = Vec::new();
            let mut moved = Vec::new();
            let mut new_generation = None;
            for chunk in &chunks {
                match self.chunk_outcomes(batch, chunk, &replies) {
                    ChunkReply::Done(chunk_outcomes) => {
                        for (&i, o) in chunk.events.iter().zip(chunk_outcomes) {
                            outcomes[i] = Some(o);
                        }
                    }
                    ChunkReply::NoScript => missing_script.extend_from_slice(&chunk.events),
                    ChunkReply::Generation(g) => {
                        moved.extend_from_slice(&chunk.events);
                        new_generation = new_generation.max(Some(g));
                    }
                }
            }
            if let Some(g) = new_generation {
                // Generations only grow: never step back because of an older reply.
                let before = self.generation.fetch_max(g, Ordering::Relaxed);
                if g > before {
                    tracing::info!(
                        from = before,
                        to = g,
                        "key prefix generation switched; writing the new generation"
                    );
                    self.metrics.generation_switches.inc();
                    self.metrics.generation.set(gauge(g));
                }
            }
            if missing_script.is_empty() && moved.is_empty() {
                break;
            }
            if missing_script.is_empty() {
                moved.sort_unstable();
                pending = moved;
                continue;
            }
            tracing::info!(
                attempt,
                events = missing_script.len(),
                "redis lost the APPLY script (restart or SCRIPT FLUSH); loading it again"
            );
            self.metrics.script_reloads.inc();
            if let Err(e) = scripts::apply_script().load_async(&mut conn).await {
                let reason = format!("redis: loading the APPLY script failed: {e}");
                for &i in missing_script.iter().chain(&moved) {
                    outcomes[i] = Some(Outcome::Retry {
                        reason: reason.clone(),
                    });
                }
                break;
            }
            missing_script.extend(moved);
            missing_script.sort_unstable();
            pending = missing_script;
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Retry {
                    reason: "redis kept losing the APPLY script, or the generation kept changing"
                        .into(),
                })
            })
            .collect()
    }
}

/// A generation as a gauge value.
fn gauge(generation: u64) -> i64 {
    i64::try_from(generation).unwrap_or(i64::MAX)
}

/// `Some(description)` if the reply is an error reply.
fn error_reply(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(format!(
            "redis error reply: {} {}",
            e.code(),
            e.details().unwrap_or_default()
        )),
        _ => None,
    }
}

impl Sink for RedisSink {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn apply(
        &self,
        batch: &[EventRef<'_>],
    ) -> impl std::future::Future<Output = Vec<Outcome>> + Send {
        self.apply_batch(batch)
    }
}

/// Wait until Redis accepts a connection (or `stop` is cancelled), logging each failure.
/// Permanent failures (authentication, client configuration) return at once.
pub async fn connect_with_retry(
    config: &SinkConfig,
    metrics: &Metrics,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Option<RedisSink>, SinkError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match RedisSink::connect(config.clone(), metrics).await {
            Ok(sink) => return Ok(Some(sink)),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "redis not reachable yet");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

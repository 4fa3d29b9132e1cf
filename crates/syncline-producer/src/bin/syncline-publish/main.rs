//! `syncline-publish`: publish change events from a JSON Lines file (or stdin) to Kafka.
//!
//! See the crate README for the input format, the flags and the exit codes.

mod input;
mod progress;

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use input::{read_lines, InputItem};
use progress::Progress;
use syncline_producer::{
    BulkProducer, Compression, FailedDelivery, ProducerConfig, PublishError, TopicStatus,
    TraceParent,
};

// Publishing allocates several small buffers per event (strings of the parsed event);
// mimalloc's thread-local free lists make that cheap where glibc's malloc spent a fifth
// of the CPU (profiled).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0  every line was published (with --skip-invalid: every valid line; rejected lines were reported)
  1  an invalid line stopped publishing (the lines before it were published, none after it)
  2  usage or configuration error
  3  broker unreachable, topic missing, or topic creation failed
  4  publishing failed: a delivery was refused or not acknowledged within --timeout
  5  the input could not be read
  130 interrupted (Ctrl-C); what was sent before was flushed";

const EXIT_INVALID_LINE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_BROKER: u8 = 3;
const EXIT_DELIVERY: u8 = 4;
const EXIT_INPUT: u8 = 5;
const EXIT_INTERRUPTED: u8 = 130;

/// Publish Syncline change events from JSON Lines to Kafka.
///
/// Each line is one change event in its JSON form (the field names of
/// schemas/change_event.avsc; `document` is a JSON object; `event_id`, `occurred_at` and
/// `source` may be omitted). Events are validated, encoded as Avro single-object records
/// and published in input order with key `entity_type:entity_id`.
#[derive(Parser, Debug)]
#[command(name = "syncline-publish", version, after_help = EXIT_CODES)]
struct Cli {
    /// JSON Lines file to publish; `-` reads standard input.
    #[arg(default_value = "-")]
    input: String,

    /// Bootstrap servers (comma-separated host:port).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,

    /// Topic to publish to.
    #[arg(long, default_value = "changes")]
    topic: String,

    /// Create the topic when it does not exist (an existing topic is left unchanged).
    #[arg(long)]
    create_topic: bool,

    /// With --create-topic: number of partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,

    /// With --create-topic: create it with cleanup.policy=compact.
    #[arg(long)]
    compact: bool,

    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    compression: Compression,

    /// Report invalid lines and go on, instead of stopping at the first one.
    #[arg(long)]
    skip_invalid: bool,

    /// Largest accepted document, in bytes.
    #[arg(long, default_value_t = syncline_producer::Limits::default().max_document_bytes)]
    max_document_bytes: usize,

    /// Upper bound for reaching the broker, for each event's delivery and for the final
    /// flush (e.g. `30s`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,

    /// `source` for lines that do not name one.
    #[arg(long, default_value = "syncline-publish")]
    source: String,

    /// W3C traceparent to attach to every event (header `traceparent`).
    #[arg(long, env = "TRACEPARENT")]
    traceparent: Option<TraceParent>,

    /// Most events awaiting acknowledgement at once.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,

    /// Kafka connection: `-X/--kafka key=value` (repeatable; `--property` still works),
    /// `SYNCLINE_KAFKA` (one property per line) and the first-class TLS/SASL flags.
    #[command(flatten)]
    kafka: syncline_kafka::KafkaArgs,

    /// Progress display on standard error: `auto` (a bar on a terminal, periodic lines
    /// otherwise), `bar`, `lines` or `none`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "bar", "lines", "none"])]
    progress: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn eprint_error(msg: impl std::fmt::Display) {
    eprintln!("syncline-publish: error: {msg}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,librdkafka=off")),
        )
        .init();
    ExitCode::from(run(cli).await)
}

/// Counters shared with the progress display.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
}

async fn run(cli: Cli) -> u8 {
    let extra = match cli.kafka.properties() {
        Ok(p) => p,
        Err(e) => {
            eprint_error(e);
            return EXIT_CONFIG;
        }
    };
    let config = ProducerConfig {
        brokers: cli.brokers.clone(),
        topic: cli.topic.clone(),
        compression: cli.compression,
        delivery_timeout: cli.timeout,
        max_document_bytes: cli.max_document_bytes,
        client_id: "syncline-publish".into(),
        extra: extra.into(),
        ..ProducerConfig::default()
    };
    // The bulk producer counts deliveries instead of keeping a future per event: the
    // per-event oneshot channel and its frees on librdkafka's polling thread were a tenth
    // of the CPU (profiled). A failed delivery still names its line (the event's tag).
    let mut producer = match BulkProducer::new(config) {
        Ok(p) => p.with_traceparent(cli.traceparent),
        Err(e) => {
            eprint_error(e);
            return EXIT_CONFIG;
        }
    };

    // Open the input before touching the broker: a typo in the path is reported at once.
    let (reader, total_bytes): (Box<dyn Read + Send>, Option<u64>) = if cli.input == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        match File::open(&cli.input) {
            Ok(f) => {
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            }
            Err(e) => {
                eprint_error(format_args!("cannot open {}: {e}", cli.input));
                return EXIT_INPUT;
            }
        }
    };

    // Probe the cluster first so that an unreachable broker is a quick, clear error.
    let info = match producer.check_connection(cli.timeout).await {
        Ok(info) => info,
        Err(e) => {
            eprint_error(e);
            return EXIT_BROKER;
        }
    };
    if cli.create_topic {
        match producer
            .ensure_topic(&cli.topic, cli.partitions, cli.compact)
            .await
        {
            Ok(TopicStatus::Created) => eprintln!(
                "syncline-publish: created topic {} ({} partitions{})",
                cli.topic,
                cli.partitions,
                if cli.compact { ", compacted" } else { "" }
            ),
            Ok(TopicStatus::Existed { partitions }) => eprintln!(
                "syncline-publish: topic {} exists ({partitions} partitions), left unchanged",
                cli.topic
            ),
            Err(e) => {
                eprint_error(e);
                return EXIT_BROKER;
            }
        }
    } else if info.topic_partitions.is_none() {
        eprint_error(format_args!(
            "topic {} does not exist at {} (create it, or pass --create-topic)",
            cli.topic, cli.brokers
        ));
        return EXIT_BROKER;
    }

    let counters = Arc::new(Counters::default());
    // Chunks of up to 512 parsed lines; a few in the channel keep both threads busy.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<InputItem>>(8);
    let reader_counters = counters.clone();
    // A line may hold the largest document twice over (JSON escaping) plus the other fields.
    let max_line_bytes = cli
        .max_document_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024);
    let source = cli.source.clone();
    std::thread::spawn(move || read_lines(reader, tx, reader_counters, max_line_bytes, source));

    let progress = Progress::start(&cli.progress, total_bytes, counters.clone());
    let started = Instant::now();
    let max_in_flight = u64::try_from(cli.max_in_flight).unwrap_or(u64::MAX);
    let mut outcome: Result<(), (u8, String)> = Ok(());
    let mut last_line = 0u64;

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    'input: loop {
        let chunk = tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                outcome = Err((
                    EXIT_INTERRUPTED,
                    format!("interrupted after line {last_line}; nothing after it was sent"),
                ));
                break;
            }
            chunk = rx.recv() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        for item in chunk {
            let (line_no, parsed) = match item {
                InputItem::Event(n, event) => (n, Ok(event)),
                InputItem::Invalid(n, reason) => (n, Err(reason)),
                InputItem::Error(n, e) => {
                    outcome = Err((
                        EXIT_INPUT,
                        format!("reading {} failed at line {n}: {e}", cli.input),
                    ));
                    break 'input;
                }
            };
            last_line = line_no;
            // A failed delivery stops reading; its line is reported after the others settle.
            if producer.has_failed() {
                break 'input;
            }
            let rejected = match parsed {
                Err(reason) => Some(reason),
                Ok(event) => {
                    producer.wait_for_room(max_in_flight).await;
                    let tag = usize::try_from(line_no).unwrap_or(usize::MAX);
                    match producer.send_tagged(&event, tag).await {
                        Ok(()) => None,
                        Err(PublishError::Invalid(v)) => Some(format!("invalid event: {v}")),
                        Err(other) => {
                            outcome = Err((EXIT_DELIVERY, format!("line {line_no}: {other}")));
                            break 'input;
                        }
                    }
                }
            };
            if let Some(reason) = rejected {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                progress.println(format!("syncline-publish: line {line_no}: {reason}"));
                if !cli.skip_invalid {
                    outcome = Err((
                        EXIT_INVALID_LINE,
                        format!(
                            "stopped at invalid line {line_no}; the lines before it were published, none after it (use --skip-invalid to go on)"
                        ),
                    ));
                    break 'input;
                }
            }
        }
        counters
            .published
            .store(producer.counts().acked, Ordering::Relaxed);
    }
    drop(rx);

    // Everything sent so far is awaited: each event is acknowledged or fails within the
    // delivery timeout.
    let counts = producer.settle().await;
    counters.published.store(counts.acked, Ordering::Relaxed);
    if let Some(FailedDelivery { tag, error }) = producer.take_failure() {
        // A failed delivery outranks "stopped at an invalid line" or an interruption: the
        // lines before the stop were then not all published.
        let replace = match &outcome {
            Ok(()) => true,
            Err((code, _)) => *code == EXIT_INVALID_LINE || *code == EXIT_INTERRUPTED,
        };
        if replace {
            outcome = Err((EXIT_DELIVERY, format!("line {tag}: {error}")));
        }
    }
    progress.finish();

    let elapsed = started.elapsed();
    let published = counters.published.load(Ordering::Relaxed);
    let rejected = counters.rejected.load(Ordering::Relaxed);
    let rate = published as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "published {published} event(s) to {} in {:.2}s ({rate:.0} events/s), rejected {rejected} line(s)",
        cli.topic,
        elapsed.as_secs_f64()
    );
    match outcome {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprint_error(msg);
            if code == EXIT_DELIVERY {
                eprintln!(
                    "syncline-publish: {published} event(s) were acknowledged; events sent after the failed one may or may not have been written (publishing them again is safe)"
                );
            }
            code
        }
    }
}

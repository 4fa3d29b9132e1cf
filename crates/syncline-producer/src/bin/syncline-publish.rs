//! `syncline-publish`: publish change events from a JSON Lines file (or stdin) to Kafka.
//!
//! See the crate README for the input format, the flags and the exit codes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use syncline_producer::jsonl::parse_line;
use syncline_producer::{
    Compression, PendingDelivery, Producer, ProducerConfig, PublishError, TopicStatus, TraceParent,
};

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
struct Counters {
    published: AtomicU64,
    rejected: AtomicU64,
    bytes_read: AtomicU64,
}

enum InputItem {
    Line(u64, Vec<u8>),
    /// A line longer than any valid event can be (its length in bytes); not kept.
    TooLong(u64, u64),
    Error(u64, std::io::Error),
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
    let producer = match Producer::new(config) {
        Ok(p) => p,
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
    let (tx, mut rx) = tokio::sync::mpsc::channel::<InputItem>(1024);
    let reader_counters = counters.clone();
    // A line may hold the largest document twice over (JSON escaping) plus the other fields.
    let max_line_bytes = cli
        .max_document_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024);
    std::thread::spawn(move || read_lines(reader, tx, reader_counters, max_line_bytes));

    let progress = Progress::start(&cli.progress, total_bytes, counters.clone());
    let started = Instant::now();
    let max_in_flight = cli.max_in_flight.max(1);
    let mut window: VecDeque<(u64, PendingDelivery)> = VecDeque::new();
    let mut outcome: Result<(), (u8, String)> = Ok(());
    let mut last_line = 0u64;

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let item = tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                outcome = Err((
                    EXIT_INTERRUPTED,
                    format!("interrupted after line {last_line}; nothing after it was sent"),
                ));
                break;
            }
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        let (line_no, bytes) = match item {
            InputItem::Line(n, b) => (n, Ok(b)),
            InputItem::TooLong(n, len) => (
                n,
                Err(format!(
                    "line is {len} bytes, longer than any event within --max-document-bytes can be"
                )),
            ),
            InputItem::Error(n, e) => {
                outcome = Err((
                    EXIT_INPUT,
                    format!("reading {} failed at line {n}: {e}", cli.input),
                ));
                break;
            }
        };
        last_line = line_no;
        let parsed = match bytes.as_deref().map(std::str::from_utf8) {
            Err(reason) => Err(reason.clone()),
            Ok(Err(e)) => Err(format!("not UTF-8: {e}")),
            Ok(Ok(text)) if text.trim().is_empty() => continue,
            Ok(Ok(text)) => parse_line(text, &cli.source),
        };
        let sent = match parsed {
            Err(reason) => Err(reason),
            Ok(event) => match producer
                .send_with_traceparent(&event, cli.traceparent)
                .await
            {
                Ok(p) => Ok(p),
                Err(PublishError::Invalid(v)) => Err(format!("invalid event: {v}")),
                Err(other) => {
                    outcome = Err((EXIT_DELIVERY, format!("line {line_no}: {other}")));
                    break;
                }
            },
        };
        match sent {
            Ok(pending) => window.push_back((line_no, pending)),
            Err(reason) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                progress.println(format!("syncline-publish: line {line_no}: {reason}"));
                if !cli.skip_invalid {
                    outcome = Err((
                        EXIT_INVALID_LINE,
                        format!(
                            "stopped at invalid line {line_no}; the lines before it were published, none after it (use --skip-invalid to go on)"
                        ),
                    ));
                    break;
                }
            }
        }
        // Count what is already acknowledged; wait for the oldest while the window is full.
        loop {
            let full = window.len() >= max_in_flight;
            let Some((n, front)) = window.front_mut() else {
                break;
            };
            let n = *n;
            let result = if full {
                Some(front.await)
            } else {
                futures::FutureExt::now_or_never(front)
            };
            let Some(result) = result else { break };
            window.pop_front();
            handle_delivery(result, &counters, &mut outcome, n);
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_err() {
            break;
        }
    }
    drop(rx);

    // Everything sent so far is awaited (bounded by the delivery timeout) and flushed.
    for (n, pending) in window.drain(..) {
        let r = pending.await;
        let mut this = Ok(());
        handle_delivery(r, &counters, &mut this, n);
        // A failed delivery outranks "stopped at an invalid line" or an interruption: the
        // lines before the stop were then not all published.
        let replace = match &outcome {
            Ok(()) => true,
            Err((code, _)) => *code == EXIT_INVALID_LINE || *code == EXIT_INTERRUPTED,
        };
        if let (Err(e), true) = (this, replace) {
            outcome = Err(e);
        }
    }
    if let Err(e) = producer.flush(cli.timeout).await {
        if outcome.is_ok() {
            outcome = Err((EXIT_DELIVERY, e.to_string()));
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

fn handle_delivery(
    r: Result<syncline_producer::Delivery, PublishError>,
    counters: &Counters,
    outcome: &mut Result<(), (u8, String)>,
    line_no: u64,
) {
    match r {
        Ok(_) => {
            counters.published.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            if outcome.is_ok() {
                *outcome = Err((EXIT_DELIVERY, format!("line {line_no}: {e}")));
            }
        }
    }
}

fn read_lines(
    reader: Box<dyn Read + Send>,
    tx: tokio::sync::mpsc::Sender<InputItem>,
    counters: Arc<Counters>,
    max_line_bytes: usize,
) {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line_no = 0u64;
    loop {
        let mut buf = Vec::new();
        line_no += 1;
        // Never hold more than one maximal line in memory, whatever the input.
        let limit = max_line_bytes as u64 + 1;
        let item = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(n) if buf.last() != Some(&b'\n') && n as u64 == limit => {
                let mut skipped = n as u64;
                match skip_line(&mut reader) {
                    Ok(rest) => skipped += rest,
                    Err(e) => {
                        let _ = tx.blocking_send(InputItem::Error(line_no, e));
                        return;
                    }
                }
                counters.bytes_read.fetch_add(skipped, Ordering::Relaxed);
                InputItem::TooLong(line_no, skipped)
            }
            Ok(n) => {
                counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                InputItem::Line(line_no, buf)
            }
            Err(e) => {
                let _ = tx.blocking_send(InputItem::Error(line_no, e));
                return;
            }
        };
        if tx.blocking_send(item).is_err() {
            return; // the publisher stopped
        }
    }
}

/// Consume the rest of the current line; returns how many bytes it had.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i as u64 + 1);
            }
            None => {
                let len = chunk.len();
                reader.consume(len);
                skipped += len as u64;
            }
        }
    }
}

/// Progress on standard error: an indicatif bar on a terminal, a plain line every 5 s
/// otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(mode: &str, total_bytes: Option<u64>, counters: Arc<Counters>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let mode = match mode {
            "auto" if tty => "bar",
            "auto" => "lines",
            m => m,
        };
        match mode {
            "bar" => {
                let bar = match total_bytes {
                    Some(len) => ProgressBar::with_draw_target(
                        Some(len),
                        ProgressDrawTarget::stderr_with_hz(10),
                    )
                    .with_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    ),
                    None => {
                        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
                            .with_style(
                                ProgressStyle::with_template(
                                    "{spinner} [{elapsed_precise}] {bytes} read {msg}",
                                )
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                            )
                    }
                };
                let b = bar.clone();
                let started = Instant::now();
                let ticker = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        b.set_position(counters.bytes_read.load(Ordering::Relaxed));
                        b.set_message(status(&counters, started));
                    }
                });
                Progress {
                    bar: Some(bar),
                    ticker: Some(ticker),
                }
            }
            "lines" => {
                let started = Instant::now();
                let ticker = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        eprintln!("syncline-publish: {}", status(&counters, started));
                    }
                });
                Progress {
                    bar: None,
                    ticker: Some(ticker),
                }
            }
            _ => Progress {
                bar: None,
                ticker: None,
            },
        }
    }

    fn println(&self, msg: String) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    fn finish(&self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn status(counters: &Counters, started: Instant) -> String {
    let published = counters.published.load(Ordering::Relaxed);
    let rejected = counters.rejected.load(Ordering::Relaxed);
    let rate = published as f64 / started.elapsed().as_secs_f64().max(1e-9);
    format!("published {published}, rejected {rejected}, {rate:.0} events/s")
}

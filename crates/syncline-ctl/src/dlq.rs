//! `syncline-ctl dlq list|show|summary|redrive`: inspect dead letters and republish them
//! to their source topic once the cause is fixed.
//!
//! A dead letter (written by `syncline-consumer`'s `dlq` module) keeps the original key and
//! value bytes; its headers say why (`syncline.error.class`, `syncline.error.reason`),
//! where from (`syncline.source.topic`, `.partition`, `.offset`) and which group gave up
//! (`syncline.consumer.group`).
//!
//! # Redrive and de-duplication
//!
//! Redrive republishes the original key, value and non-dead-letter headers with an
//! idempotent producer (`acks=all`), to the source partition when the target is the source
//! topic. Each republished record carries two marker headers:
//! `syncline.redriven.source=<source topic>:<partition>:<offset>` (the identity of the
//! original record) and `syncline.redriven.from=<dlq topic>:<partition>:<offset>`.
//!
//! Before publishing, redrive scans the target topic for `syncline.redriven.source`
//! markers and skips every dead letter whose source record was already republished. The
//! marker travels in the same record as the data, so the check is right after a redrive
//! that was killed half-way (what the broker acknowledged carries its marker; what it did
//! not was never written) and when several dead letters name the same source record (two
//! groups sharing one DLQ, or a record dead-lettered twice across a restart): each source
//! record is republished at most once per run and never again in a later run. A position
//! commit on the DLQ could not give that: a kill between publishing and committing
//! republishes, and filters (`--class`) would skip letters that were never selected.
//!
//! The scan starts, per partition, at the first record newer than the oldest selected
//! dead letter minus [`CLOCK_SKEW_MARGIN`] (a redrive necessarily happens after its dead
//! letter was written; the margin covers clocks of different hosts), found with
//! ListOffsets by timestamp, so it reads only the part of the topic written since then.
//! Two redrives of the same letters must not run at the same time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use syncline_kafka::Connection;

/// Dead-letter header: error class.
const H_CLASS: &str = "syncline.error.class";
/// Dead-letter header: reason.
const H_REASON: &str = "syncline.error.reason";
/// Dead-letter header: source topic.
const H_TOPIC: &str = "syncline.source.topic";
/// Dead-letter header: source partition.
const H_PARTITION: &str = "syncline.source.partition";
/// Dead-letter header: source offset.
const H_OFFSET: &str = "syncline.source.offset";
/// Dead-letter header: the group that gave up.
const H_GROUP: &str = "syncline.consumer.group";
/// Dead-letter header on a letter that was too large for the DLQ: it has no key or value,
/// so redrive reads the original from the source topic.
const H_TRUNCATED: &str = "syncline.dlq.truncated";
/// Marker on a republished record: `<source topic>:<partition>:<offset>`.
pub const H_REDRIVEN_SOURCE: &str = "syncline.redriven.source";
/// Marker on a republished record: `<dlq topic>:<partition>:<offset>`.
pub const H_REDRIVEN_FROM: &str = "syncline.redriven.from";
/// Headers the dead-letter writer adds; never republished.
const DEAD_LETTER_HEADERS: [&str; 7] = [
    H_CLASS,
    H_REASON,
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_GROUP,
    H_TRUNCATED,
];

/// How far before the oldest selected dead letter the marker scan starts.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(3600);

/// Give up reading when no record or end arrives for this long.
const STALL: Duration = Duration::from_secs(30);

/// `syncline-ctl dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// One line per dead letter: position, time, class, source, group, reason.
    List(ListArgs),
    /// Selected dead letters in full: headers, key, value (decoded when it decodes).
    Show(Select),
    /// Counts per class, source topic and group.
    Summary(ListArgs),
    /// Republish selected dead letters to their source topic, once per source record; a
    /// dry run unless --execute.
    Redrive(RedriveArgs),
}

/// Which dead letters.
#[derive(Debug, clap::Args)]
struct Select {
    /// The dead-letter topic, e.g. `changes.dlq`.
    #[arg(long)]
    dlq_topic: String,
    /// Only these error classes (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    class: Vec<String>,
    /// Only dead letters written at or after this: RFC 3339 (`2026-12-01T10:00:00Z`) or
    /// a duration back from now (`2h`, `30m`).
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<String>,
    /// Only dead letters of this consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// Only this offset of the dead-letter topic (with --partition when it has several).
    #[arg(long)]
    offset: Option<i64>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    select: Select,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RedriveArgs {
    #[command(flatten)]
    select: Select,
    /// Publish to this topic instead of each dead letter's source topic.
    #[arg(long)]
    to_topic: Option<String>,
    /// Publish (without it, only print what would be republished).
    #[arg(long)]
    execute: bool,
}

/// Run a `dlq` subcommand.
pub async fn run(conn: &Connection, args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List(a) => {
            let letters = select(conn, &a.select).await?;
            list(&a.select.dlq_topic, &letters, a.json)?;
        }
        Action::Show(s) => {
            let letters = select(conn, &s).await?;
            if letters.is_empty() {
                eprintln!("no dead letter matches");
                return Ok(ExitCode::FAILURE);
            }
            for l in &letters {
                show(&s.dlq_topic, l);
            }
        }
        Action::Summary(a) => {
            let letters = select(conn, &a.select).await?;
            summary(&a.select.dlq_topic, &letters, a.json)?;
        }
        Action::Redrive(a) => return redrive(conn, a).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// One dead letter as read from the DLQ topic.
#[derive(Debug, Clone)]
struct Letter {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    fn from_message(m: &BorrowedMessage<'_>) -> Letter {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Letter {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis().filter(|t| *t >= 0),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The last value of header `name` as text (lossy).
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn class(&self) -> String {
        self.header(H_CLASS).unwrap_or_else(|| "-".to_owned())
    }

    /// `(topic, partition, offset)` of the original record, when the headers say it.
    fn source(&self) -> Option<(String, i32, i64)> {
        Some((
            self.header(H_TOPIC)?,
            self.header(H_PARTITION)?.parse().ok()?,
            self.header(H_OFFSET)?.parse().ok()?,
        ))
    }

    /// Whether the letter lost its key and value for size (see [`H_TRUNCATED`]).
    fn truncated(&self) -> bool {
        self.headers.iter().any(|(k, _)| k == H_TRUNCATED)
    }

    fn source_text(&self) -> String {
        match self.source() {
            Some((t, p, o)) => format!("{t}:{p}:{o}"),
            None => "-".to_owned(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let source = self.source();
        serde_json::json!({
            "partition": self.partition,
            "offset": self.offset,
            "time": self.timestamp_ms.map(time_text),
            "class": self.header(H_CLASS),
            "reason": self.header(H_REASON),
            "source_topic": source.as_ref().map(|s| s.0.clone()),
            "source_partition": source.as_ref().map(|s| s.1),
            "source_offset": source.as_ref().map(|s| s.2),
            "group": self.header(H_GROUP),
            "truncated": self.truncated(),
        })
    }
}

fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms}ms"), |t| t.to_string())
}

/// `--since`: RFC 3339, or a duration back from now; as ms since the epoch.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = crate::offsets::parse_datetime_ms(s) {
        return Ok(ms);
    }
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        anyhow::anyhow!(
            "invalid --since {s:?}: expected RFC 3339 (2026-12-01T10:00:00Z) or a duration (2h, 30m)"
        )
    })?;
    let at = SystemTime::now()
        .checked_sub(d)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(i64::try_from(at.as_millis()).unwrap_or(i64::MAX))
}

/// Read the whole DLQ topic and keep the letters `s` selects, in partition/offset order.
async fn select(conn: &Connection, s: &Select) -> anyhow::Result<Vec<Letter>> {
    let since = s.since.as_deref().map(parse_since).transpose()?;
    let n = syncline_kafka::partition_count(conn, &s.dlq_topic)
        .await
        .with_context(|| format!("cannot look up {}", s.dlq_topic))?;
    if n == 0 {
        bail!(
            "dead-letter topic {} does not exist on {}",
            s.dlq_topic,
            conn.brokers
        );
    }
    if let Some(p) = s.partition {
        if p < 0 || p >= n {
            bail!("{} has no partition {p} (it has {n})", s.dlq_topic);
        }
    }
    let starts = vec![Offset::Beginning; usize::try_from(n).unwrap_or(0)];
    let mut letters = scan(conn, &s.dlq_topic, starts, |m, out| {
        out.push(Letter::from_message(m))
    })
    .await
    .with_context(|| format!("cannot read {}", s.dlq_topic))?;
    letters.retain(|l| {
        (s.class.is_empty() || s.class.contains(&l.class()))
            && since.is_none_or(|t| l.timestamp_ms.is_some_and(|ts| ts >= t))
            && s.group
                .as_ref()
                .is_none_or(|g| l.header(H_GROUP).as_ref() == Some(g))
            && s.partition.is_none_or(|p| l.partition == p)
            && s.offset.is_none_or(|o| l.offset == o)
    });
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// A consumer that only reads (assigned partitions, nothing committed or stored) and
/// reports each partition's end.
fn reader(conn: &Connection) -> ClientConfig {
    let mut c = conn.client_config();
    c.set("group.id", "syncline-ctl-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    c
}

/// Read `topic` from `starts` (one per partition) up to the end offsets found when the
/// scan begins; `each` turns every record into what it adds to the result.
async fn scan<T: Send + 'static>(
    conn: &Connection,
    topic: &str,
    starts: Vec<Offset>,
    mut each: impl FnMut(&BorrowedMessage<'_>, &mut Vec<T>) + Send + 'static,
) -> anyhow::Result<Vec<T>> {
    // End offsets from fetch responses (see syncline_kafka::end_offsets: Tansu answers
    // ListOffsets(latest) wrongly).
    let ends = syncline_kafka::end_offsets(conn, topic).await?;
    let (conn, topic) = (conn.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<T>> {
        let mut out = Vec::new();
        let c: BaseConsumer = reader(&conn).create()?;
        let mut tpl = TopicPartitionList::new();
        let mut open = HashSet::new();
        for (p, (start, end)) in starts.iter().zip(&ends).enumerate() {
            let p = i32::try_from(p)?;
            let nothing = *end == 0 || matches!(start, Offset::Offset(o) if *o >= *end);
            if !nothing {
                tpl.add_partition_offset(&topic, p, *start)?;
                open.insert(p);
            }
        }
        if open.is_empty() {
            return Ok(out);
        }
        // The leaders first, or a logical start is looked up 500 ms late (see
        // syncline_kafka::learn_partitions).
        syncline_kafka::learn_partitions(&c, &topic, STALL)?;
        c.assign(&tpl)?;
        let mut last_progress = Instant::now();
        while !open.is_empty() {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    let p = m.partition();
                    let end = usize::try_from(p).ok().and_then(|i| ends.get(i)).copied();
                    if end.is_some_and(|e| m.offset() >= e) {
                        // Written after the scan began: not part of this snapshot.
                        open.remove(&p);
                        continue;
                    }
                    each(&m, &mut out);
                    if end.is_some_and(|e| m.offset() + 1 >= e) {
                        open.remove(&p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    last_progress = Instant::now();
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(e.into()),
                None => {
                    if last_progress.elapsed() > STALL {
                        bail!(
                            "no record or end of partition arrived for {STALL:?} (partitions {open:?} unfinished)"
                        );
                    }
                }
            }
        }
        Ok(out)
    })
    .await
    .context("reader task")?
}

fn list(topic: &str, letters: &[Letter], json: bool) -> anyhow::Result<()> {
    if json {
        let all: Vec<_> = letters.iter().map(Letter::json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:>9} {:>9}  {:<24}  {:<20} {:<30} {:<24} reason",
        "partition", "offset", "time", "class", "source", "group"
    );
    for l in letters {
        println!(
            "{:>9} {:>9}  {:<24}  {:<20} {:<30} {:<24} {}",
            l.partition,
            l.offset,
            l.timestamp_ms.map_or_else(|| "-".to_owned(), time_text),
            l.class(),
            l.source_text(),
            l.header(H_GROUP).unwrap_or_else(|| "-".to_owned()),
            l.header(H_REASON).unwrap_or_default().replace('\n', " "),
        );
    }
    println!("{} dead letter(s) in {topic}", letters.len());
    Ok(())
}

/// Bytes as text when they are UTF-8 without control characters, else hex.
fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("{s:?}")
        }
        _ => format!("hex {}", hex(b)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn show(topic: &str, l: &Letter) {
    println!(
        "dead letter {topic} partition {} offset {}",
        l.partition, l.offset
    );
    println!(
        "  time: {}",
        l.timestamp_ms.map_or_else(|| "-".to_owned(), time_text)
    );
    println!("  headers:");
    for (k, v) in &l.headers {
        println!(
            "    {k}: {}",
            v.as_deref().map_or_else(|| "(null)".to_owned(), bytes_text)
        );
    }
    println!(
        "  key: {}",
        l.key
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), bytes_text)
    );
    if l.truncated() {
        println!("  truncated: the dead letter was too large for the DLQ; key and value are only in the source record (redrive reads them from there)");
    }
    let Some(value) = &l.value else {
        println!("  value: (none)");
        return;
    };
    println!("  value: {} bytes", value.len());
    match syncline_event::decode(value, &syncline_event::Limits::default()) {
        Ok(event) => match serde_json::to_string_pretty(&event) {
            Ok(j) => println!("  decoded change event: {j}"),
            Err(e) => println!("  decoded, but not printable as JSON: {e}"),
        },
        Err(e) => println!("  does not decode as a change event ({}): {e}", e.class()),
    }
    if value.len() >= 10 && value.starts_with(&[0xc3, 0x01]) {
        if let Some(fp) = value.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            println!(
                "  writer schema fingerprint: {:#018x}",
                u64::from_le_bytes(fp)
            );
        }
    }
    println!(
        "  value (base64): {}",
        base64::engine::general_purpose::STANDARD.encode(value)
    );
}

fn summary(topic: &str, letters: &[Letter], json: bool) -> anyhow::Result<()> {
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_group: BTreeMap<String, usize> = BTreeMap::new();
    let mut sources = HashSet::new();
    for l in letters {
        *by_class.entry(l.class()).or_default() += 1;
        *by_source
            .entry(l.header(H_TOPIC).unwrap_or_else(|| "-".to_owned()))
            .or_default() += 1;
        *by_group
            .entry(l.header(H_GROUP).unwrap_or_else(|| "-".to_owned()))
            .or_default() += 1;
        sources.insert(l.source_text());
    }
    let first = letters.iter().filter_map(|l| l.timestamp_ms).min();
    let last = letters.iter().filter_map(|l| l.timestamp_ms).max();
    if json {
        let v = serde_json::json!({
            "dlq_topic": topic,
            "total": letters.len(),
            "distinct_source_records": sources.len(),
            "first": first.map(time_text),
            "last": last.map(time_text),
            "by_class": by_class,
            "by_source_topic": by_source,
            "by_group": by_group,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{} dead letter(s) in {topic} ({} distinct source records)",
        letters.len(),
        sources.len()
    );
    if let (Some(f), Some(l)) = (first, last) {
        println!("  from {} to {}", time_text(f), time_text(l));
    }
    for (title, counts) in [
        ("class", &by_class),
        ("source topic", &by_source),
        ("group", &by_group),
    ] {
        println!("  by {title}:");
        for (k, n) in counts {
            println!("    {n:>8}  {k}");
        }
    }
    Ok(())
}

/// One dead letter's fate in a redrive.
enum Plan {
    Publish {
        to: String,
        partition: Option<i32>,
    },
    AlreadyRedriven,
    Duplicate,
    NoSource,
    /// A truncated letter whose original is no longer in the source topic.
    Unavailable,
}

async fn redrive(conn: &Connection, a: RedriveArgs) -> anyhow::Result<ExitCode> {
    let mut letters = select(conn, &a.select).await?;
    // Target of each letter; letters without a source position cannot be de-duplicated.
    let mut targets: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, l) in letters.iter().enumerate() {
        if let Some((src, _, _)) = l.source() {
            let to = a.to_topic.clone().unwrap_or(src);
            targets.entry(to).or_default().push(i);
        }
    }
    let mut partitions: HashMap<String, i32> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    for (to, idx) in &targets {
        let n = syncline_kafka::partition_count(conn, to)
            .await
            .with_context(|| format!("cannot look up {to}"))?;
        if n == 0 {
            bail!("target topic {to} does not exist on {}", conn.brokers);
        }
        partitions.insert(to.clone(), n);
        done.extend(markers(conn, to, idx.iter().filter_map(|&i| letters.get(i)), n).await?);
    }

    let mut seen = HashSet::new();
    let mut plans = Vec::with_capacity(letters.len());
    for l in &letters {
        let plan = match l.source() {
            None => Plan::NoSource,
            Some((src, p, o)) => {
                let id = format!("{src}:{p}:{o}");
                if done.contains(&id) {
                    Plan::AlreadyRedriven
                } else if !seen.insert(id) {
                    Plan::Duplicate
                } else {
                    let to = a.to_topic.clone().unwrap_or(src.clone());
                    // Back to the original partition when it still exists: the record then
                    // sits with its key's other events, as the producer placed it.
                    let n = partitions.get(&to).copied().unwrap_or(0);
                    let partition = (to == src && p < n).then_some(p);
                    Plan::Publish { to, partition }
                }
            }
        };
        plans.push(plan);
    }
    // A truncated letter carries no key or value: take them (and the original headers)
    // from the source record, which retention may have removed by now.
    for (l, plan) in letters.iter_mut().zip(plans.iter_mut()) {
        if !l.truncated() || !matches!(plan, Plan::Publish { .. }) {
            continue;
        }
        let Some((src, p, o)) = l.source() else {
            continue;
        };
        match original(conn, &src, p, o).await? {
            Some(orig) => {
                l.key = orig.key;
                l.value = orig.value;
                l.headers = orig.headers;
            }
            None => *plan = Plan::Unavailable,
        }
    }

    for (l, plan) in letters.iter().zip(&plans) {
        let what = match plan {
            Plan::Publish { to, partition } => format!(
                "{} {to}{}",
                if a.execute {
                    "republish to"
                } else {
                    "would republish to"
                },
                partition.map_or(String::new(), |p| format!(" partition {p}"))
            ),
            Plan::AlreadyRedriven => "skip: already redriven".to_owned(),
            Plan::Duplicate => "skip: same source record as an earlier dead letter".to_owned(),
            Plan::NoSource => "skip: no source topic/partition/offset headers".to_owned(),
            Plan::Unavailable => {
                "skip: truncated, and the original is no longer in the source topic".to_owned()
            }
        };
        println!(
            "{}:{}:{} {} source {}: {what}",
            a.select.dlq_topic,
            l.partition,
            l.offset,
            l.class(),
            l.source_text()
        );
    }
    let count = |f: fn(&Plan) -> bool| plans.iter().filter(|p| f(p)).count();
    let publish = count(|p| matches!(p, Plan::Publish { .. }));
    let already = count(|p| matches!(p, Plan::AlreadyRedriven));
    let dup = count(|p| matches!(p, Plan::Duplicate));
    let nosrc = count(|p| matches!(p, Plan::NoSource | Plan::Unavailable));
    if !a.execute {
        println!(
            "dry run: {publish} to republish, {already} already redriven, {dup} duplicate(s), {nosrc} without source; add --execute to publish"
        );
        return Ok(ExitCode::SUCCESS);
    }
    publish_all(conn, &a.select.dlq_topic, &letters, &plans).await?;
    println!(
        "redriven {publish}, {already} already redriven, {dup} duplicate(s), {nosrc} without source"
    );
    Ok(if nosrc > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The record at `offset` of `topic`/`partition` (`None`: no longer there).
async fn original(
    conn: &Connection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Option<Letter>> {
    let (conn, topic) = (conn.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Letter>> {
        let c: BaseConsumer = reader(&conn)
            // Past the log start: report instead of jumping elsewhere.
            .set("auto.offset.reset", "error")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        c.assign(&tpl)?;
        let deadline = Instant::now() + STALL;
        while Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() == offset => return Ok(Some(Letter::from_message(&m))),
                // Compacted away, or the partition ends before it.
                Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
                Some(Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange,
                )))
                | Some(Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                ))) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        bail!("{topic} partition {partition} offset {offset}: no answer within {STALL:?}")
    })
    .await
    .context("reader task")?
}

/// The `syncline.redriven.source` markers in `topic` written since the oldest of
/// `letters` (minus the clock-skew margin).
async fn markers<'a>(
    conn: &Connection,
    topic: &str,
    letters: impl Iterator<Item = &'a Letter>,
    n: i32,
) -> anyhow::Result<HashSet<String>> {
    let mut oldest = None::<i64>;
    let mut unknown_time = false;
    for l in letters {
        match l.timestamp_ms {
            Some(t) => oldest = Some(oldest.map_or(t, |o| o.min(t))),
            None => unknown_time = true,
        }
    }
    let count = usize::try_from(n).unwrap_or(0);
    let starts: Vec<Offset> = match oldest {
        Some(t) if !unknown_time => {
            let margin = i64::try_from(CLOCK_SKEW_MARGIN.as_millis()).unwrap_or(i64::MAX);
            let from = t.saturating_sub(margin);
            let by_time = syncline_kafka::offsets_for_time(conn, topic, from)
                .await
                .with_context(|| format!("cannot look up offsets by time in {topic}"))?;
            by_time
                .into_iter()
                .map(|o| o.map_or(Offset::End, Offset::Offset))
                .collect()
        }
        _ => vec![Offset::Beginning; count],
    };
    // `End` (no record that new) means nothing to scan; `scan` skips a partition only
    // for numeric starts at or past its end, so turn it into a huge offset.
    let starts = starts
        .into_iter()
        .map(|o| match o {
            Offset::End => Offset::Offset(i64::MAX),
            o => o,
        })
        .collect();
    let found = scan(conn, topic, starts, |m, out| {
        let Some(h) = m.headers() else { return };
        for h in h.iter() {
            if h.key == H_REDRIVEN_SOURCE {
                if let Some(v) = h.value {
                    out.push(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
    })
    .await
    .with_context(|| format!("cannot scan {topic} for earlier redrives"))?;
    Ok(found.into_iter().collect())
}

async fn publish_all(
    conn: &Connection,
    dlq_topic: &str,
    letters: &[Letter],
    plans: &[Plan],
) -> anyhow::Result<()> {
    let producer: FutureProducer = conn
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .context("cannot create the producer")?;
    let mut pending = Vec::new();
    for (l, plan) in letters.iter().zip(plans) {
        let Plan::Publish { to, partition } = plan else {
            continue;
        };
        let source = l.source_text();
        let from = format!("{dlq_topic}:{}:{}", l.partition, l.offset);
        let mut headers = OwnedHeaders::new();
        for (k, v) in &l.headers {
            if DEAD_LETTER_HEADERS.contains(&k.as_str())
                || k == H_REDRIVEN_SOURCE
                || k == H_REDRIVEN_FROM
            {
                continue;
            }
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        headers = headers
            .insert(Header {
                key: H_REDRIVEN_SOURCE,
                value: Some(source.as_str()),
            })
            .insert(Header {
                key: H_REDRIVEN_FROM,
                value: Some(from.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(to).headers(headers);
        if let Some(k) = &l.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &l.value {
            record = record.payload(v.as_slice());
        }
        if let Some(p) = partition {
            record = record.partition(*p);
        }
        // Queued in order: with the idempotent producer they land in this order, and a
        // full local queue only makes send wait.
        let fut = producer.send(
            record,
            rdkafka::util::Timeout::After(Duration::from_secs(60)),
        );
        pending.push((from, fut));
    }
    let mut failed = Vec::new();
    for (from, fut) in pending {
        if let Err((e, _)) = fut.await {
            failed.push(format!("{from}: {e}"));
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    if !failed.is_empty() {
        bail!(
            "{} dead letter(s) were not republished (rerun redrive: the others are skipped): {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(parse_since("1970-01-01T00:00:02Z").unwrap(), 2000);
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let two_hours_ago = parse_since("2h").unwrap();
        assert!((now - 7_200_000 - two_hours_ago).abs() < 60_000);
        assert!(format!("{:#}", parse_since("last week").unwrap_err()).contains("invalid --since"));
    }

    #[test]
    fn binary_bytes_show_as_hex() {
        assert_eq!(bytes_text(b"item:1"), "\"item:1\"");
        assert_eq!(bytes_text(&[0xc3, 0x01, 0x00]), "hex c30100");
    }
}

//! `syncline-ctl offsets show|reset`: a consumer group's committed offsets, and moving
//! them the way `kafka-consumer-groups --reset-offsets` does.
//!
//! A reset is a dry run unless `--execute` is given, and it is refused while the group has
//! members: a running member would overwrite the new offsets with its own positions at its
//! next commit, so the reset would silently not happen (Kafka itself refuses such a
//! commit; Tansu does not, so the check here is what protects a Tansu cluster).
//!
//! Offsets come from the broker: end offsets from fetch responses
//! ([`syncline_kafka::end_offsets`], because Tansu answers ListOffsets(latest) wrongly),
//! earliest offsets and offsets by time from ListOffsets with the earliest/timestamp
//! specifiers, which Tansu answers right (checked by `tests/e2e_offsets.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use syncline_kafka::{Connection, GroupDescription};

/// `syncline-ctl offsets`.
#[derive(Debug, clap::Args)]
pub struct OffsetsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the group's state and, per partition, earliest, end and committed offset and lag.
    Show(ShowArgs),
    /// Move the group's committed offsets; a dry run (before/after table) unless --execute.
    Reset(ResetArgs),
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Print `topic,partition,offset` lines (committed partitions only), the format of
    /// `kafka-consumer-groups --export` that `reset --from-file` reads.
    #[arg(long)]
    csv: bool,
}

#[derive(Debug, clap::Args)]
struct ResetArgs {
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Only these partitions (repeat or comma-separate); default all.
    #[arg(long, value_delimiter = ',')]
    partition: Vec<i32>,
    #[command(flatten)]
    target: Target,
    /// Commit the new offsets (without it nothing is changed).
    #[arg(long)]
    execute: bool,
}

/// Where to move the offsets: exactly one.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// The earliest offset each partition still holds.
    #[arg(long)]
    to_earliest: bool,
    /// Each partition's end offset (everything counts as read).
    #[arg(long)]
    to_latest: bool,
    /// The first record at or after this time, e.g. `2026-12-01T10:00:00Z` or
    /// `2026-12-01T12:00:00+02:00` (the end when there is none).
    #[arg(long, value_name = "RFC3339")]
    to_datetime: Option<String>,
    /// The committed offset plus N (negative goes back), clamped to [earliest, end].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// CSV lines `topic,partition,offset` (`kafka-consumer-groups --export`, or
    /// `offsets show --csv`); only the partitions listed move.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

/// Run `offsets show` or `offsets reset`.
pub async fn run(conn: &Connection, args: OffsetsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Show(a) => show(conn, a).await,
        Action::Reset(a) => reset(conn, a).await,
    }
}

/// The topic's offsets and the group's commits, per partition.
struct Positions {
    earliest: Vec<i64>,
    end: Vec<i64>,
    committed: Vec<Option<i64>>,
}

async fn positions(conn: &Connection, group: &str, topic: &str) -> anyhow::Result<Positions> {
    let end = crate::end_offsets(conn, topic).await?;
    let earliest = syncline_kafka::earliest_offsets(conn, topic)
        .await
        .with_context(|| format!("cannot read the earliest offsets of {topic}"))?;
    let committed = syncline_kafka::committed_offsets(conn, group, topic)
        .await
        .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
    if earliest.len() != end.len() || committed.len() != end.len() {
        bail!("the partition count of {topic} changed while it was read; try again");
    }
    Ok(Positions {
        earliest,
        end,
        committed,
    })
}

fn describe(g: &GroupDescription) -> String {
    let state = if g.state.is_empty() {
        "unknown"
    } else {
        &g.state
    };
    format!(
        "group {} state {state}, {} member(s)",
        g.group,
        g.members.len()
    )
}

fn opt(o: Option<i64>) -> String {
    o.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

async fn show(conn: &Connection, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let pos = positions(conn, &a.group, &a.topic).await?;
    if a.csv {
        for (p, c) in pos.committed.iter().enumerate() {
            if let Some(c) = c {
                println!("{},{p},{c}", a.topic);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let g = syncline_kafka::describe_group(conn, &a.group)
        .await
        .with_context(|| format!("cannot describe group {}", a.group))?;
    println!("{}", describe(&g));
    for m in &g.members {
        println!("  member {} client {} host {}", m.id, m.client_id, m.host);
    }
    println!("topic {}", a.topic);
    println!("  partition   earliest        end  committed        lag");
    let mut total = 0;
    for p in 0..pos.end.len() {
        let (earliest, end, committed) = (
            pos.earliest.get(p).copied().unwrap_or(0),
            pos.end.get(p).copied().unwrap_or(0),
            pos.committed.get(p).copied().flatten(),
        );
        let lag = end - committed.unwrap_or(earliest).clamp(earliest.min(end), end);
        total += lag;
        println!(
            "  {p:>9} {earliest:>10} {end:>10} {:>10} {lag:>10}",
            opt(committed)
        );
    }
    println!("  total lag {total}");
    Ok(ExitCode::SUCCESS)
}

/// One partition's planned move.
struct Move {
    partition: i32,
    earliest: i64,
    end: i64,
    before: Option<i64>,
    /// `None`: left as it is (with the reason).
    after: Result<i64, &'static str>,
    clamped: bool,
}

async fn reset(conn: &Connection, a: ResetArgs) -> anyhow::Result<ExitCode> {
    let file_rows = match &a.target.from_file {
        Some(path) => Some(read_csv(path, &a.topic)?),
        None => None,
    };
    let datetime_ms = match &a.target.to_datetime {
        Some(s) => Some(parse_datetime_ms(s)?),
        None => None,
    };
    let group = syncline_kafka::describe_group(conn, &a.group)
        .await
        .with_context(|| format!("cannot describe group {}", a.group))?;
    if group.is_active() {
        return Ok(refuse(&group));
    }
    let pos = positions(conn, &a.group, &a.topic).await?;
    let n = pos.end.len();
    for p in a
        .partition
        .iter()
        .chain(file_rows.iter().flat_map(|r| r.keys()))
    {
        if usize::try_from(*p).map_or(true, |p| p >= n) {
            bail!("{} has no partition {p} (it has {n})", a.topic);
        }
    }
    let by_time = match datetime_ms {
        Some(ms) => Some(
            syncline_kafka::offsets_for_time(conn, &a.topic, ms)
                .await
                .with_context(|| format!("cannot look up offsets by time in {}", a.topic))?,
        ),
        None => None,
    };

    let mut moves = Vec::new();
    for (i, ((&earliest, &end), &before)) in pos
        .earliest
        .iter()
        .zip(&pos.end)
        .zip(&pos.committed)
        .enumerate()
    {
        let partition = i32::try_from(i).context("partition number out of range")?;
        if !a.partition.is_empty() && !a.partition.contains(&partition) {
            continue;
        }
        let wanted: Result<i64, &'static str> = if a.target.to_earliest {
            Ok(earliest)
        } else if a.target.to_latest {
            Ok(end)
        } else if let Some(by_time) = &by_time {
            Ok(by_time.get(i).copied().flatten().unwrap_or(end))
        } else if let Some(n) = a.target.shift_by {
            before
                .map(|b| b.saturating_add(n))
                .ok_or("no committed offset to shift from")
        } else if let Some(rows) = &file_rows {
            rows.get(&partition).copied().ok_or("not in the file")
        } else {
            bail!("one of --to-earliest, --to-latest, --to-datetime, --shift-by, --from-file is needed");
        };
        // Outside [earliest, end] a consumer would fall back to auto.offset.reset, so the
        // reset would not mean what was asked; Kafka's tool clamps the same way.
        let low = earliest.min(end);
        let (after, clamped) = match wanted {
            Ok(w) => (Ok(w.clamp(low, end)), w != w.clamp(low, end)),
            Err(why) => (Err(why), false),
        };
        moves.push(Move {
            partition,
            earliest,
            end,
            before,
            after,
            clamped,
        });
    }

    println!("{}", describe(&group));
    println!("topic {}", a.topic);
    println!("  partition   earliest        end     before      after");
    for m in &moves {
        let after = match m.after {
            Ok(o) => format!("{o:>10}{}", if m.clamped { " (clamped)" } else { "" }),
            Err(why) => format!("{:>10} ({why})", "-"),
        };
        println!(
            "  {:>9} {:>10} {:>10} {:>10} {after}",
            m.partition,
            m.earliest,
            m.end,
            opt(m.before)
        );
    }
    let commits: Vec<(i32, i64)> = moves
        .iter()
        .filter_map(|m| m.after.ok().map(|o| (m.partition, o)))
        .collect();
    if !a.execute {
        println!("dry run: nothing was changed; add --execute to commit these offsets");
        return Ok(ExitCode::SUCCESS);
    }
    if commits.is_empty() {
        println!("nothing to commit");
        return Ok(ExitCode::SUCCESS);
    }
    // Look again right before committing: a member that joined since the first look would
    // overwrite the reset.
    let group = syncline_kafka::describe_group(conn, &a.group)
        .await
        .with_context(|| format!("cannot describe group {}", a.group))?;
    if group.is_active() {
        return Ok(refuse(&group));
    }
    syncline_kafka::commit_group_offsets(conn, &a.group, &a.topic, &commits)
        .await
        .with_context(|| format!("cannot commit offsets for group {}", a.group))?;
    let now = syncline_kafka::committed_offsets(conn, &a.group, &a.topic)
        .await
        .with_context(|| format!("cannot read back the offsets of group {}", a.group))?;
    let wrong: Vec<String> = commits
        .iter()
        .filter(|(p, o)| {
            usize::try_from(*p)
                .ok()
                .and_then(|p| now.get(p).copied().flatten())
                != Some(*o)
        })
        .map(|(p, o)| format!("partition {p}: wanted {o}"))
        .collect();
    if !wrong.is_empty() {
        bail!(
            "the broker did not keep the new offsets ({}); committed now: {now:?}",
            wrong.join(", ")
        );
    }
    println!(
        "committed {} partition(s) for group {}",
        commits.len(),
        a.group
    );
    Ok(ExitCode::SUCCESS)
}

fn refuse(g: &GroupDescription) -> ExitCode {
    eprintln!(
        "refusing to change offsets: {} (stop its consumers first; a running member would overwrite the new offsets)",
        describe(g)
    );
    for m in &g.members {
        eprintln!("  member {} client {} host {}", m.id, m.client_id, m.host);
    }
    ExitCode::FAILURE
}

/// `ms` since the Unix epoch of an RFC 3339 time with an offset (`Z` or `+hh:mm`).
pub(crate) fn parse_datetime_ms(s: &str) -> anyhow::Result<i64> {
    let t: jiff::Timestamp = s.trim().parse().with_context(|| {
        format!("invalid time {s:?}: expected RFC 3339 with an offset, e.g. 2026-12-01T10:00:00Z")
    })?;
    Ok(t.as_millisecond())
}

/// Read `topic,partition,offset` lines into partition -> offset. Blank lines, `#`
/// comments and a `topic,partition,offset` header are skipped; every row must name
/// `topic`, and a partition may appear once.
fn read_csv(path: &Path, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&text, topic).with_context(|| format!("in {}", path.display()))
}

fn parse_csv(text: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [t, p, o] = fields.as_slice() else {
            bail!(
                "line {n}: expected topic,partition,offset, got {} field(s)",
                fields.len()
            );
        };
        if n == 1 && (*t, *p, *o) == ("topic", "partition", "offset") {
            continue;
        }
        if *t != topic {
            bail!("line {n}: topic {t:?} is not --topic {topic:?}");
        }
        let p: i32 = p
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .with_context(|| format!("line {n}: partition {p:?} is not a partition number"))?;
        let o: i64 = o
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .with_context(|| format!("line {n}: offset {o:?} is not an offset (0 or more)"))?;
        if out.insert(p, o).is_some() {
            bail!("line {n}: partition {p} appears twice");
        }
    }
    if out.is_empty() {
        bail!("no topic,partition,offset rows");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_kafka_export_and_show_output() {
        let rows = parse_csv("topic,partition,offset\nt,0,5\n\n# note\nt, 1 ,7\n", "t").unwrap();
        assert_eq!(rows, BTreeMap::from([(0, 5), (1, 7)]));
    }

    #[test]
    fn csv_refuses_bad_rows_with_their_line() {
        let e = |text: &str| format!("{:#}", parse_csv(text, "t").unwrap_err());
        assert!(e("t,0,5\nu,1,2").contains("line 2: topic \"u\""));
        assert!(e("t,0").contains("line 1: expected topic,partition,offset"));
        assert!(e("t,x,1").contains("line 1: partition \"x\""));
        assert!(e("t,0,-3").contains("line 1: offset \"-3\""));
        assert!(e("t,0,1\nt,0,2").contains("line 2: partition 0 appears twice"));
        assert!(e("\n# only comments\n").contains("no topic,partition,offset rows"));
    }

    #[test]
    fn datetimes_need_an_offset() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_datetime_ms("1970-01-01T02:00:01+02:00").unwrap(),
            1000
        );
        assert!(parse_datetime_ms("1970-01-01T00:00:01").is_err());
        assert!(parse_datetime_ms("yesterday").is_err());
    }
}

//! `syncline-ctl rebuild redis`: make every cached entry of a Redis key prefix unreachable
//! at once by switching the prefix to a new generation, then unlink the old generation's
//! keys in the background.
//!
//! The key layout and the generation check live in `syncline-cache` (`keys`, `scripts`):
//! every read and write of a cached entry, by applications and by the invalidator, reads
//! `<prefix>_gen` in the same atomic script as the entry and refuses another generation's
//! keys. So the switch, one `SET` of `<prefix>_gen` to the next number, is the moment after
//! which nobody reads or writes the old generation.
//!
//! * **invalidate mode** (the invalidator's `redis.mode`): switch, then clean up. The new
//!   generation starts empty; readers load through the cache-aside path.
//! * **refresh mode**: first *warm* the next generation by replaying the topic from the
//!   start through the invalidator's own sink (`RedisSink`, pinned to the next generation,
//!   which the APPLY script accepts before the switch), with its own consumer group, until
//!   caught up; then switch; then keep replaying past the live invalidator's committed
//!   offsets and the end offsets taken at the switch (everything the live invalidator can
//!   have written to the old generation only), exactly like `rebuild es`. Then clean up.
//!   `--no-warm` switches at once instead.
//! * **cleanup**: `SCAN MATCH <old generation's pattern> COUNT n` + `UNLINK`, at most
//!   `--keys-per-second`, with progress lines.
//!
//! State lives in Redis, in the hash `<prefix>_rebuild` (from, to, phase, replay group,
//! cleanup cursor), written in the same script as the switch, so a rerun of the command
//! after a crash or `kill -9` continues where it stopped: warming (the group's committed
//! offsets say where the replay stands), after the switch, or in the middle of the cleanup
//! (the saved `SCAN` cursor). The hash is deleted last.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use redis::aio::ConnectionManager;
use syncline_cache::admin::{self, UnlinkCursor};
use syncline_cache::{KeyLayout, Mode};
use syncline_consumer::{cli, Metrics, RuntimeConfig};
use syncline_kafka::Connection;
use syncline_redis_invalidator::{
    RedisArgs, RedisSettings, RedisSink, SinkConfig, DEFAULT_GROUP_ID, SECTION,
};

use super::es::{delete_group, CLOSE_ENOUGH, MAX_CATCH_UP_ROUNDS};
use super::history;
use super::progress::Progress;
use super::replay::{self, Replay};
use super::replay_args::{From, ReplayArgs};

/// How often the cleanup prints a progress line.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// `syncline-ctl rebuild redis`.
#[derive(Debug, clap::Args)]
pub struct RedisRebuildArgs {
    /// The invalidator's TOML config file (`[consumer]` for topic and batching, `[redis]`
    /// for the connection, key prefix, mode and TTLs).
    #[arg(long = "config", env = "SYNCLINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// How the warm-up replays the topic (refresh mode; `--from` and the history check
    /// have no use without warming).
    #[command(flatten)]
    replay: ReplayArgs,
    /// Print the prefix's generation, any unfinished rebuild and what would be done;
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Refresh mode: switch at once instead of warming the new generation first (the new
    /// generation starts empty, as in invalidate mode).
    #[arg(long)]
    no_warm: bool,
    /// The live invalidator's consumer group (its committed offsets at the switch bound
    /// the replay after it).
    #[arg(long, default_value = DEFAULT_GROUP_ID)]
    live_group: String,
    /// Most old-generation keys unlinked per second by the cleanup.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys_per_second: u64,
    /// `COUNT` hint of each `SCAN` of the cleanup (keys examined per step).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    scan_count: u64,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Where an unfinished rebuild stands (the `<prefix>_rebuild` hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next generation is being filled by a replay; the old one is still current.
    Warming,
    /// Switched; the replay still has to pass the live invalidator's position.
    Overlap,
    /// Switched; the old generation's keys are being unlinked.
    Cleaning,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Warming => "warming",
            Phase::Overlap => "overlap",
            Phase::Cleaning => "cleaning",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        match s {
            "warming" => Some(Phase::Warming),
            "overlap" => Some(Phase::Overlap),
            "cleaning" => Some(Phase::Cleaning),
            _ => None,
        }
    }
}

/// An unfinished rebuild, read back from Redis.
#[derive(Debug, Clone)]
struct State {
    from: u64,
    to: u64,
    phase: Phase,
    /// The warming replay's consumer group (refresh mode).
    group: Option<String>,
    cursor: UnlinkCursor,
    unlinked: u64,
}

impl State {
    fn parse(key: &str, h: &HashMap<String, String>) -> anyhow::Result<State> {
        let num = |field: &str| -> anyhow::Result<u64> {
            h.get(field)
                .with_context(|| format!("{key} has no field {field}"))?
                .parse()
                .with_context(|| format!("{key} field {field} is not a number"))
        };
        let opt = |field: &str| -> anyhow::Result<u64> {
            match h.get(field) {
                None => Ok(0),
                Some(v) => v
                    .parse()
                    .with_context(|| format!("{key} field {field} is not a number")),
            }
        };
        let phase = h
            .get("phase")
            .and_then(|p| Phase::parse(p))
            .with_context(|| format!("{key} has no valid phase"))?;
        Ok(State {
            from: num("from")?,
            to: num("to")?,
            phase,
            group: h.get("group").cloned().filter(|g| !g.is_empty()),
            cursor: UnlinkCursor {
                pattern: usize::try_from(opt("pattern")?).unwrap_or(usize::MAX),
                cursor: opt("cursor")?,
            },
            unlinked: opt("unlinked")?,
        })
    }
}

/// Start a rebuild: record it, and unless it warms first, switch in the same step.
/// KEYS = [generation key, state key]; ARGV = [expected current generation, next
/// generation, phase, replay group, now (ms)]. Refuses when a rebuild is recorded or the
/// generation moved, so two concurrent starts cannot both switch.
const START_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR another rebuild of this prefix has started')
end
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then
  return redis.error_reply('ERR the generation is ' .. cur .. ', expected ' .. ARGV[1])
end
if ARGV[3] ~= 'warming' then redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('HSET', KEYS[2], 'from', ARGV[1], 'to', ARGV[2], 'phase', ARGV[3],
  'group', ARGV[4], 'started_at_ms', ARGV[5], 'pattern', 0, 'cursor', 0, 'unlinked', 0)
return 1
"#;

/// Switch a warmed generation in: KEYS = [generation key, state key]; ARGV = [from, to,
/// now (ms)]. The generation and the phase change in one step.
const SWITCH_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then
  return redis.error_reply('ERR the generation is ' .. cur .. ', expected ' .. ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'phase', 'overlap', 'switched_at_ms', ARGV[3])
return 1
"#;

/// Everything one invocation works with.
struct Ctx<'a> {
    conn: &'a Connection,
    redis: ConnectionManager,
    sink: SinkConfig,
    runtime: RuntimeConfig,
    args: &'a RedisRebuildArgs,
}

/// Run `syncline-ctl rebuild redis`.
pub async fn run(conn: &Connection, args: RedisRebuildArgs) -> anyhow::Result<ExitCode> {
    let defaults = RuntimeConfig {
        group_id: DEFAULT_GROUP_ID.into(),
        ..Default::default()
    };
    let (mut runtime, mut settings): (RuntimeConfig, RedisSettings) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            cli::from_toml(&text, &path.display().to_string(), SECTION, defaults)?
        }
        None => (defaults, RedisSettings::default()),
    };
    settings.apply_args(&args.redis);
    let sink = settings.validate()?;
    args.replay.apply(&mut runtime);
    // The global connection flags decide how to reach the broker.
    runtime.brokers = conn.brokers.clone();
    runtime
        .kafka
        .extend(conn.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    runtime.metrics_addr = None;
    let client = syncline_cache::connect::client(sink.connection.clone(), &sink.tls)
        .with_context(|| format!("redis client for {}", sink.display_url))?;
    let cm_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(sink.connect_timeout)
        .set_response_timeout(sink.response_timeout)
        .set_number_of_retries(2);
    let redis = client
        .get_connection_manager_with_config(cm_config)
        .await
        .with_context(|| format!("cannot connect to redis at {}", sink.display_url))?;
    let mut ctx = Ctx {
        conn,
        redis,
        sink,
        runtime,
        args: &args,
    };
    ctx.rebuild().await
}

impl Ctx<'_> {
    fn layout(&self) -> &KeyLayout {
        &self.sink.layout
    }

    /// Warm first? Only refresh mode caches documents worth warming.
    fn warms(&self) -> bool {
        self.sink.mode == Mode::Refresh && !self.args.no_warm
    }

    async fn state(&mut self) -> anyhow::Result<Option<State>> {
        let key = self.layout().rebuild_state_key();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.redis)
            .await
            .with_context(|| format!("reading {key}"))?;
        if h.is_empty() {
            return Ok(None);
        }
        State::parse(&key, &h).map(Some)
    }

    async fn rebuild(&mut self) -> anyhow::Result<ExitCode> {
        let prefix = self.layout().prefix().to_owned();
        let current = admin::current_generation(&mut self.redis, &self.sink.layout).await?;
        let state = self.state().await?;
        if self.args.replay.from != From::Earliest && !self.warms() {
            bail!(
                "--from applies to the warm-up replay only, and this rebuild does not warm \
                 (mode {}{}): leave --from out",
                self.sink.mode,
                if self.args.no_warm { ", --no-warm" } else { "" }
            );
        }
        if self.args.dry_run {
            self.describe(current, state.as_ref());
            return Ok(ExitCode::SUCCESS);
        }
        let mut state = match state {
            Some(s) => {
                eprintln!(
                    "{prefix}: continuing the unfinished rebuild of generation {} -> {} ({})",
                    s.from,
                    s.to,
                    s.phase.as_str()
                );
                s
            }
            None => match self.start(current).await? {
                Some(s) => s,
                None => return Ok(ExitCode::FAILURE),
            },
        };
        if state.to <= current && state.phase == Phase::Warming {
            bail!(
                "{prefix}: the generation is {current}, but the unfinished rebuild recorded in \
                 {} was warming generation {}: another tool switched it. Delete that key and \
                 run again",
                self.layout().rebuild_state_key(),
                state.to
            );
        }
        if matches!(state.phase, Phase::Warming | Phase::Overlap) {
            self.warm_and_switch(&mut state).await?;
        }
        self.clean_up(&mut state).await?;
        let _: () = redis::cmd("DEL")
            .arg(self.layout().rebuild_state_key())
            .query_async(&mut self.redis)
            .await?;
        println!(
            "{prefix}: rebuilt into generation {} ({} keys of generation {} unlinked)",
            state.to, state.unlinked, state.from
        );
        Ok(ExitCode::SUCCESS)
    }

    fn describe(&self, current: u64, state: Option<&State>) {
        let l = self.layout();
        println!("prefix {:?} on {}", l.prefix(), self.sink.display_url);
        println!("current generation {current} (key {})", l.generation_key());
        println!("mode {}", self.sink.mode);
        match state {
            Some(s) => println!(
                "unfinished rebuild {} -> {}: {}, {} keys unlinked so far; would continue it",
                s.from,
                s.to,
                s.phase.as_str(),
                s.unlinked
            ),
            None if self.warms() => println!(
                "would warm generation {} by replaying {} from {}, switch to it, \
                 replay past the live group {}, then unlink generation {current}'s keys at \
                 most {} keys/s",
                current + 1,
                self.runtime.topic,
                match self.args.replay.from {
                    From::Earliest => "the start".to_owned(),
                    From::Time(ms) => format!("{ms} ms since the epoch (--from)"),
                },
                self.args.live_group,
                self.args.keys_per_second
            ),
            None => println!(
                "would switch to generation {} now, then unlink generation {current}'s keys \
                 at most {} keys/s",
                current + 1,
                self.args.keys_per_second
            ),
        }
        println!(
            "old generation's keys: {:?}",
            l.generation_patterns(state.map_or(current, |s| s.from))
        );
    }

    /// Record a new rebuild (and switch, unless it warms first). `None`: refused (history).
    async fn start(&mut self, current: u64) -> anyhow::Result<Option<State>> {
        let prefix = self.layout().prefix().to_owned();
        let next = current + 1;
        let (phase, group) = if self.warms() {
            if !self.history_ok().await? {
                return Ok(None);
            }
            (Phase::Warming, replay_group(&prefix, next))
        } else {
            (Phase::Cleaning, String::new())
        };
        let now = history::now_ms();
        let script = redis::Script::new(START_LUA);
        let _: i64 = script
            .key(self.layout().generation_key())
            .key(self.layout().rebuild_state_key())
            .arg(current)
            .arg(next)
            .arg(phase.as_str())
            .arg(&group)
            .arg(now)
            .invoke_async(&mut self.redis)
            .await
            .with_context(|| format!("{prefix}: starting the rebuild"))?;
        if phase == Phase::Cleaning {
            eprintln!(
                "{prefix}: switched generation {current} -> {next}: every entry of generation \
                 {current} is unreachable from now on"
            );
        } else {
            eprintln!("{prefix}: warming generation {next} (generation {current} stays current)");
        }
        Ok(Some(State {
            from: current,
            to: next,
            phase,
            group: (!group.is_empty()).then_some(group),
            cursor: UnlinkCursor::default(),
            unlinked: 0,
        }))
    }

    /// The topic's history check of `rebuild es`; false when it refuses.
    async fn history_ok(&self) -> anyhow::Result<bool> {
        let topic = &self.runtime.topic;
        let ends = crate::end_offsets(self.conn, topic).await?;
        let needed = self
            .args
            .replay
            .start_offsets(self.conn, topic, &ends)
            .await?;
        let verdict = history::check(
            self.conn,
            topic,
            &ends,
            &needed,
            self.args.replay.since(),
            self.args.replay.retention_margin,
        )
        .await?;
        for note in &verdict.notes {
            eprintln!("note: {note}");
        }
        if verdict.problems.is_empty() {
            return Ok(true);
        }
        for p in &verdict.problems {
            eprintln!("history: {p}");
        }
        if self.args.replay.allow_partial {
            eprintln!("--allow-partial: warming from an incomplete history");
            return Ok(true);
        }
        eprintln!(
            "refusing to warm from {topic}: the topic no longer holds the whole history, so the \
             new generation would silently miss entities. Pass --no-warm to switch to an empty \
             generation (readers load through the cache), or --allow-partial to warm from what \
             is left."
        );
        Ok(false)
    }

    /// Warm the next generation, switch, and replay past the live invalidator.
    async fn warm_and_switch(&mut self, state: &mut State) -> anyhow::Result<()> {
        let prefix = self.layout().prefix().to_owned();
        let Some(group) = state.group.clone() else {
            bail!(
                "{prefix}: the unfinished rebuild has no replay group recorded in {}",
                self.layout().rebuild_state_key()
            );
        };
        let topic = self.runtime.topic.clone();
        if state.phase == Phase::Warming {
            let ends = crate::end_offsets(self.conn, &topic).await?;
            if let Some(start) = self
                .args
                .replay
                .seed_group(self.conn, &group, &topic, &ends)
                .await?
            {
                eprintln!("{prefix}: warming starts at {start:?} (--from)");
            }
        }
        let mut replay = self.start_replay(&group, state.to).await?;
        eprintln!(
            "{prefix}: replaying {topic} into generation {} with group {group}",
            state.to
        );
        // Where the time goes (printed once the replay stops; the bench reads it too).
        let (mut warm, mut catch_up) = (Duration::ZERO, Duration::ZERO);
        if state.phase == Phase::Warming {
            let ends = crate::end_offsets(self.conn, &topic).await?;
            let mut p = Progress::new(&format!("{prefix} warm"));
            warm = replay.wait_for(self.conn, &ends, &mut p).await?;
            p.finish();
            let catch_up_started = Instant::now();
            for round in 1..=MAX_CATCH_UP_ROUNDS {
                let ends = crate::end_offsets(self.conn, &topic).await?;
                let mut p = Progress::new(&format!("{prefix} catch-up {round}"));
                let took = replay.wait_for(self.conn, &ends, &mut p).await?;
                p.finish();
                if took < CLOSE_ENOUGH {
                    break;
                }
            }
            catch_up = catch_up_started.elapsed();
            let script = redis::Script::new(SWITCH_LUA);
            let _: i64 = script
                .key(self.layout().generation_key())
                .key(self.layout().rebuild_state_key())
                .arg(state.from)
                .arg(state.to)
                .arg(history::now_ms())
                .invoke_async(&mut self.redis)
                .await
                .with_context(|| format!("{prefix}: switching to generation {}", state.to))?;
            state.phase = Phase::Overlap;
            eprintln!(
                "{prefix}: switched generation {} -> {}: every entry of generation {} is \
                 unreachable from now on",
                state.from, state.to, state.from
            );
        }
        // Until the switch the live invalidator wrote the old generation only; everything
        // it can have written there lies below these offsets.
        let overlap_started = Instant::now();
        let ends = crate::end_offsets(self.conn, &topic).await?;
        let live = replay::committed(self.conn, &self.args.live_group, &topic, ends.len()).await?;
        let targets = replay::max_offsets(&ends, &live);
        let mut p = Progress::new(&format!("{prefix} overlap"));
        replay.wait_for(self.conn, &targets, &mut p).await?;
        p.finish();
        let dead = replay.metrics.snapshot().dead_lettered_total();
        replay.stop().await?;
        eprintln!(
            "{prefix}: phases: warm {:.1} s, catch-up {:.1} s, overlap and stop {:.1} s",
            warm.as_secs_f64(),
            catch_up.as_secs_f64(),
            overlap_started.elapsed().as_secs_f64()
        );
        if dead > 0 {
            eprintln!(
                "warning: {dead} events were dead-lettered by this run of the warm-up (see the \
                 dead-letter topic {}; header group {group})",
                self.runtime.dlq_topic()
            );
        }
        if let Err(e) = delete_group(self.conn, &group).await {
            eprintln!("note: could not delete the replay's consumer group {group} ({e:#}); it holds only offsets and can be deleted later");
        }
        let _: () = redis::cmd("HSET")
            .arg(self.layout().rebuild_state_key())
            .arg("phase")
            .arg(Phase::Cleaning.as_str())
            .query_async(&mut self.redis)
            .await?;
        state.phase = Phase::Cleaning;
        Ok(())
    }

    /// The consumer runtime with the invalidator's own sink, pinned to `generation`.
    async fn start_replay(&self, group: &str, generation: u64) -> anyhow::Result<Replay> {
        let mut config = self.runtime.clone();
        config.group_id = group.to_owned();
        let metrics = Metrics::new();
        let sink = RedisSink::connect(self.sink.clone(), &metrics)
            .await
            .context("connecting the replay's redis sink")?
            .pinned_to(generation);
        Replay::start(config, sink, metrics)
    }

    /// Unlink the old generation's keys at a bounded rate, saving the cursor as it goes.
    async fn clean_up(&mut self, state: &mut State) -> anyhow::Result<()> {
        let prefix = self.layout().prefix().to_owned();
        let rate = self.args.keys_per_second;
        // One step never unlinks more than a second's worth.
        let count = self.args.scan_count.min(rate);
        let key = self.layout().rebuild_state_key();
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut this_run = 0u64;
        eprintln!(
            "{prefix}: unlinking generation {}'s keys ({:?}) at most {rate} keys/s",
            state.from,
            self.layout().generation_patterns(state.from)
        );
        loop {
            let layout = self.sink.layout.clone();
            let step = admin::unlink_generation_step(
                &mut self.redis,
                &layout,
                state.from,
                &mut state.cursor,
                count,
            )
            .await?;
            state.unlinked += step.unlinked;
            this_run += step.unlinked;
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg("pattern")
                .arg(state.cursor.pattern)
                .arg("cursor")
                .arg(state.cursor.cursor)
                .arg("unlinked")
                .arg(state.unlinked)
                .query_async(&mut self.redis)
                .await?;
            let elapsed = started.elapsed();
            let line = || {
                format!(
                    "{prefix} cleanup: {} keys of generation {} unlinked ({this_run} in {:.1}s, \
                     {:.0} keys/s)",
                    state.unlinked,
                    state.from,
                    elapsed.as_secs_f64(),
                    this_run as f64 / elapsed.as_secs_f64().max(1e-3)
                )
            };
            if step.done {
                eprintln!("{}; done", line());
                return Ok(());
            }
            if last_log.elapsed() >= LOG_EVERY {
                last_log = Instant::now();
                eprintln!("{}", line());
            }
            // Pace to the rate: `this_run` keys may take `this_run / rate` seconds.
            let due = Duration::from_secs_f64(this_run as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(elapsed) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A consumer group for warming `generation` of `prefix`, unique per rebuild (a rerun
/// reads it back from the state hash).
fn replay_group(prefix: &str, generation: u64) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "syncline-rebuild-redis-{clean}-g{generation}-{:x}{:x}",
        nonce,
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_its_fields() {
        let h: HashMap<String, String> = [
            ("from", "2"),
            ("to", "3"),
            ("phase", "cleaning"),
            ("group", ""),
            ("pattern", "1"),
            ("cursor", "77"),
            ("unlinked", "900"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let s = State::parse("k", &h).ok();
        let s = s.as_ref();
        assert_eq!(
            s.map(|s| (s.from, s.to, s.phase)),
            Some((2, 3, Phase::Cleaning))
        );
        assert_eq!(s.and_then(|s| s.group.clone()), None);
        assert_eq!(
            s.map(|s| s.cursor),
            Some(UnlinkCursor {
                pattern: 1,
                cursor: 77
            })
        );
        let mut bad = h.clone();
        bad.insert("phase".into(), "done".into());
        assert!(State::parse("k", &bad).is_err());
    }

    #[test]
    fn replay_groups_are_clean_and_distinct() {
        let g = replay_group("shop:cache:", 4);
        assert!(
            g.starts_with("syncline-rebuild-redis-shop_cache_-g4-"),
            "{g}"
        );
        assert!(g
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
    }
}

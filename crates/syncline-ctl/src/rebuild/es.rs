//! `syncline-ctl rebuild es`: rebuild the index behind an alias from the topic.
//!
//! For each entity type, with alias `A = <prefix><type>`:
//!
//! 1. **Create** the next concrete index `A-NNNNNN` (one above the newest) from the
//!    current mapping file, with bulk-load settings (no refresh, no replicas), carrying
//!    only the *rebuild alias* `syncline-rebuild.A` as its write alias. Readers and the
//!    live indexer never see it yet.
//! 2. **Fill** it by running the consumer runtime with the indexer's own sink
//!    (`EsSink`, prefix `syncline-rebuild.<prefix>`, so it writes through the rebuild alias
//!    into the new index only) and its own group `syncline-rebuild-A-NNNNNN-<uuid>`, until
//!    the group's committed offsets reach the end offsets read at the start, then chase
//!    the end offsets again until a round takes under two seconds.
//! 3. **Swap**: restore the index's real settings, refresh, wait for its primaries, then
//!    one `_aliases` request removes `A` from every index it was on and adds it to the new
//!    index as write index (with the tombstone filter in tombstone mode). The alias is
//!    never without a write index and never has two.
//! 4. **Overlap**: until the swap the live indexer wrote to the old index; everything it
//!    can have written there lies below the end offsets read right after the swap (and
//!    below its committed offsets then), so the replay continues past the maximum of
//!    both. External versions make the overlap harmless: an older version is a 409.
//! 5. **Clean up**: stop the replay, delete the old indexes (`--delete-old`), delete the
//!    replay's group, and last remove the rebuild alias.
//!
//! State lives in Elasticsearch and the broker, so a rerun of the same command continues:
//! the newest generation carrying the rebuild alias is a rebuild in progress (swapped if
//! it also carries `A`), and the group name contains the index's `index.uuid`, so the
//! committed offsets belong to exactly that index (a deleted and recreated index gets a
//! fresh group, never a position that skips data).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use syncline_consumer::sink::Sink;
use syncline_consumer::{cli, Metrics, Outcome, RuntimeConfig};
use syncline_es_indexer::args::EsArgs;
use syncline_es_indexer::client::build_client;
use syncline_es_indexer::mappings::{tombstone_filter, IndexDefinitions};
use syncline_es_indexer::routing::{alias_name, index_name};
use syncline_es_indexer::{DeleteMode, EsConfig, EsSink, CONFIG_SECTION, DEFAULT_GROUP_ID};
use syncline_event::validate::is_valid_entity_type;
use syncline_event::EventRef;
use syncline_kafka::Connection;

use super::es_api::{EsApi, Generation};
use super::history;
use super::progress::Progress;
use super::replay::{self, Replay};
use super::replay_args::ReplayArgs;

/// Prefix of the rebuild alias: `syncline-rebuild.<alias>` points at the index being
/// filled. A dot cannot start an entity type, and the name is not a valid alias of the
/// live prefix, so it never collides with a live alias.
pub const REBUILD_ALIAS_PREFIX: &str = "syncline-rebuild.";

/// A catch-up round shorter than this means the replay is within a moment of the live
/// stream: time to swap.
pub(super) const CLOSE_ENOUGH: Duration = Duration::from_secs(2);
/// At most this many catch-up rounds (a topic written faster than the replay never
/// converges; the overlap phase covers what is left).
pub(super) const MAX_CATCH_UP_ROUNDS: usize = 10;

/// `syncline-ctl rebuild es`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("types")
        .required(true)
        .args(["entity_type", "all_entity_types"])
))]
pub struct EsRebuildArgs {
    /// Entity type(s) to rebuild (repeat or comma-separate).
    #[arg(long = "entity-type", value_delimiter = ',')]
    entity_type: Vec<String>,
    /// Rebuild every entity type that has a mapping file or an alias under the prefix.
    #[arg(long)]
    all_entity_types: bool,
    /// The indexer's TOML config file (`[consumer]` for topic and batching,
    /// `[elasticsearch]` for the connection, prefix, mappings and delete mode).
    #[arg(long = "config", env = "SYNCLINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    replay: ReplayArgs,
    /// Keep the old index after the swap (the default).
    #[arg(long, conflicts_with = "delete_old")]
    keep_old: bool,
    /// Delete the old index once the new one has passed the live indexer.
    #[arg(long)]
    delete_old: bool,
    /// Print what would be done (indexes, groups, events to replay, history check).
    #[arg(long)]
    dry_run: bool,
    /// The live indexer's consumer group (its committed offsets at the swap bound the
    /// overlap phase).
    #[arg(long, default_value = DEFAULT_GROUP_ID)]
    live_group: String,
    #[command(flatten)]
    es: EsArgs,
}

/// Where one alias's rebuild stands.
#[derive(Debug, Clone)]
enum Stage {
    /// No rebuild in progress: the next index is to be created.
    Fresh { next: u32 },
    /// The new index exists and is being filled; the alias still points elsewhere.
    Filling { new: Generation },
    /// The alias points at the new index; the overlap phase and cleanup remain.
    Swapped { new: Generation },
}

/// Everything about one entity type's rebuild.
struct Plan {
    entity_type: String,
    alias: String,
    rebuild_alias: String,
    /// Indexes the alias points at now, with its definition on each.
    current: BTreeMap<String, Value>,
    generations: BTreeMap<u32, Generation>,
    stage: Stage,
}

impl Plan {
    fn new_index(&self) -> String {
        match &self.stage {
            Stage::Fresh { next } => index_name(&self.alias, *next),
            Stage::Filling { new } | Stage::Swapped { new } => new.index.clone(),
        }
    }
}

/// Shared by every entity type of one invocation.
struct Ctx<'a> {
    conn: &'a Connection,
    api: EsApi,
    es: EsConfig,
    definitions: IndexDefinitions,
    runtime: RuntimeConfig,
    args: &'a EsRebuildArgs,
    /// When the command started (the setup phase of the timing line).
    started: Instant,
}

/// Run `syncline-ctl rebuild es`.
pub async fn run(conn: &Connection, args: EsRebuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let defaults = RuntimeConfig {
        group_id: DEFAULT_GROUP_ID.into(),
        ..Default::default()
    };
    let (mut runtime, es_file): (RuntimeConfig, EsConfig) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            cli::from_toml(&text, &path.display().to_string(), CONFIG_SECTION, defaults)?
        }
        None => (defaults, EsConfig::default()),
    };
    let es = args.es.apply(es_file)?;
    args.replay.apply(&mut runtime);
    // The global connection flags decide how to reach the broker.
    runtime.brokers = conn.brokers.clone();
    runtime
        .kafka
        .extend(conn.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    runtime.metrics_addr = None;
    let definitions =
        IndexDefinitions::load(&es.mappings_dir_or_default(), es.mappings_dir.is_some())
            .context("invalid setting elasticsearch.mappings_dir")?;
    let api = EsApi::new(build_client(&es)?);
    let ctx = Ctx {
        conn,
        api,
        es,
        definitions,
        runtime,
        args: &args,
        started,
    };

    let types = ctx.entity_types().await?;
    if types.is_empty() {
        bail!(
            "no entity type to rebuild: no mapping file and no alias under the prefix {:?}",
            ctx.es.index_prefix
        );
    }

    // History first: refusing after creating indexes would leave work behind.
    let topic = ctx.runtime.topic.clone();
    let ends = crate::end_offsets(conn, &topic).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "end offsets read");
    let needed = args.replay.start_offsets(conn, &topic, &ends).await?;
    let verdict = history::check(
        conn,
        &topic,
        &ends,
        &needed,
        args.replay.since(),
        args.replay.retention_margin,
    )
    .await?;
    tracing::debug!(elapsed = ?started.elapsed(), "history checked");
    for note in &verdict.notes {
        eprintln!("note: {note}");
    }
    if !verdict.problems.is_empty() {
        for p in &verdict.problems {
            eprintln!("history: {p}");
        }
        if !args.replay.allow_partial {
            eprintln!(
                "refusing to rebuild from {topic}: the topic no longer holds the whole history, \
                 so the rebuilt index would silently miss entities. Backfill from the system \
                 of record instead (re-publish every entity's current state), or pass \
                 --allow-partial to rebuild from what is left."
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("--allow-partial: rebuilding from an incomplete history");
    }

    for entity_type in &types {
        let plan = ctx.plan(entity_type).await?;
        if args.dry_run {
            ctx.describe(&plan, &ends).await?;
            continue;
        }
        ctx.rebuild(plan, &ends).await?;
    }
    Ok(ExitCode::SUCCESS)
}

impl Ctx<'_> {
    /// The entity types named, or every one with a mapping file or an alias under the
    /// prefix that points at generation indexes.
    async fn entity_types(&self) -> anyhow::Result<Vec<String>> {
        if !self.args.all_entity_types {
            for t in &self.args.entity_type {
                if !is_valid_entity_type(t) {
                    bail!("--entity-type {t:?} is not an entity type ([a-z0-9][a-z0-9_-]{{0,63}})");
                }
            }
            return Ok(self.args.entity_type.clone());
        }
        let mut types: Vec<String> = self
            .definitions
            .entity_types()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for alias in self.api.all_aliases().await? {
            let Some(t) = alias.strip_prefix(self.es.index_prefix.as_str()) else {
                continue;
            };
            if is_valid_entity_type(t)
                && !alias.starts_with(REBUILD_ALIAS_PREFIX)
                && !self.api.generations(&alias).await?.is_empty()
            {
                types.push(t.to_owned());
            }
        }
        types.sort();
        types.dedup();
        // A mapping file for a type that has no alias yet has nothing to rebuild.
        let mut out = Vec::new();
        for t in types {
            let alias = alias_name(&self.es.index_prefix, &t);
            if self.api.alias_indexes(&alias).await?.is_empty() {
                eprintln!("skipping {t}: alias {alias} does not exist yet");
            } else {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Read where `entity_type`'s rebuild stands.
    async fn plan(&self, entity_type: &str) -> anyhow::Result<Plan> {
        let alias = alias_name(&self.es.index_prefix, entity_type);
        let rebuild_alias = format!("{REBUILD_ALIAS_PREFIX}{alias}");
        let current = self.api.alias_indexes(&alias).await?;
        if current.is_empty() {
            bail!(
                "alias {alias} does not exist: nothing to rebuild (the indexer creates it \
                 with its first index on the first event of type {entity_type})"
            );
        }
        let generations = self.api.generations(&alias).await?;
        let stage = match generations.values().next_back() {
            Some(g) if g.has(&rebuild_alias) && g.has(&alias) => Stage::Swapped { new: g.clone() },
            Some(g) if g.has(&rebuild_alias) => Stage::Filling { new: g.clone() },
            Some(g) if g.has(&alias) => Stage::Fresh { next: g.number + 1 },
            Some(g) => bail!(
                "index {} (the newest generation of {alias}) carries neither {alias} nor \
                 {rebuild_alias}: it is not part of a rebuild this command can continue. \
                 Delete it, or point {alias} at it, then run again",
                g.index
            ),
            // The alias points at indexes not named by generation (made by hand).
            None => Stage::Fresh { next: 1 },
        };
        Ok(Plan {
            entity_type: entity_type.to_owned(),
            alias,
            rebuild_alias,
            current,
            generations,
            stage,
        })
    }

    async fn describe(&self, plan: &Plan, ends: &[i64]) -> anyhow::Result<()> {
        let new = plan.new_index();
        let stage = match &plan.stage {
            Stage::Fresh { .. } => "no rebuild in progress: would create the new index",
            Stage::Filling { .. } => "a rebuild is in progress (filling): would continue it",
            Stage::Swapped { .. } => "a rebuild is past its swap: would finish it",
        };
        println!("entity type {}", plan.entity_type);
        println!(
            "  alias            {} -> {:?}",
            plan.alias,
            plan.current.keys().collect::<Vec<_>>()
        );
        println!("  new index        {new}");
        println!("  state            {stage}");
        let total: i64 = ends.iter().sum();
        match &plan.stage {
            Stage::Fresh { .. } => {
                println!("  events to replay {total} (topic {})", self.runtime.topic);
            }
            Stage::Filling { new } | Stage::Swapped { new } => {
                let group = self.group(new).await?;
                let committed =
                    replay::committed(self.conn, &group, &self.runtime.topic, ends.len()).await?;
                println!("  group            {group}");
                println!(
                    "  events to replay {} of {total}",
                    replay::remaining(&committed, ends)
                );
            }
        }
        let old = if self.args.delete_old {
            "deleted after the overlap"
        } else {
            "kept (not in the alias)"
        };
        println!("  old indexes      {old}");
        Ok(())
    }

    /// The replay's group for `index`: tied to its `index.uuid`, so offsets committed for
    /// an index that was later deleted are never reused for a new one.
    async fn group(&self, new: &Generation) -> anyhow::Result<String> {
        let uuid = self.api.index_uuid(&new.index).await?;
        let short: String = uuid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        Ok(format!("syncline-rebuild-{}-{short}", new.index))
    }

    /// Carry `plan` through to the end, from whatever stage it is in. `ends` (read at the
    /// command's start, for the history check) is the fill's target; the catch-up rounds
    /// then chase whatever was written since.
    async fn rebuild(&self, mut plan: Plan, ends: &[i64]) -> anyhow::Result<()> {
        if let Stage::Fresh { next } = plan.stage {
            let index = index_name(&plan.alias, next);
            let (body, _) = self.create_body(&plan);
            if !self.api.create_index(&index, body).await? {
                bail!("index {index} appeared while this rebuild was starting: is another rebuild of {} running?", plan.alias);
            }
            eprintln!(
                "{}: created {index} (bulk-load settings, alias {})",
                plan.alias, plan.rebuild_alias
            );
            tracing::debug!(elapsed = ?self.started.elapsed(), "index created");
            plan = self.plan(&plan.entity_type).await?;
        }
        let new = match &plan.stage {
            Stage::Filling { new } | Stage::Swapped { new } => new.clone(),
            Stage::Fresh { .. } => {
                bail!("index {} vanished after it was created", plan.new_index())
            }
        };
        let group = self.group(&new).await?;
        let topic = self.runtime.topic.clone();
        tracing::debug!(elapsed = ?self.started.elapsed(), "plan read");
        if let Some(start) = self
            .args
            .replay
            .seed_group(self.conn, &group, &topic, ends)
            .await?
        {
            eprintln!("{}: replay starts at {start:?} (--from)", plan.alias);
        }
        let mut replay = self.start_replay(&plan, &group)?;
        eprintln!(
            "{}: replaying {topic} into {} with group {group}",
            plan.alias, new.index
        );
        // Where the time goes, printed at the end (the bench reads it too).
        let mut phases = Phases {
            setup: self.started.elapsed(),
            ..Phases::default()
        };

        if let Stage::Filling { .. } = plan.stage {
            let mut p = Progress::new(&format!("{} fill", plan.alias));
            phases.fill = replay.wait_for(self.conn, ends, &mut p).await?;
            p.finish();
            let catch_up_started = Instant::now();
            for round in 1..=MAX_CATCH_UP_ROUNDS {
                let ends = crate::end_offsets(self.conn, &topic).await?;
                let mut p = Progress::new(&format!("{} catch-up {round}", plan.alias));
                let took = replay.wait_for(self.conn, &ends, &mut p).await?;
                p.finish();
                if took < CLOSE_ENOUGH {
                    break;
                }
            }
            phases.catch_up = catch_up_started.elapsed();
            let swap_started = Instant::now();
            self.swap(&plan, &new).await?;
            phases.swap = swap_started.elapsed();
        }

        // Overlap: past everything the live indexer can have written to the old index.
        let overlap_started = Instant::now();
        // Independent reads, made at once. Partitions the live group never committed count
        // as 0, and `max_offsets` pads the shorter vector.
        let (ends, live) = tokio::try_join!(
            crate::end_offsets(self.conn, &topic),
            replay::committed(self.conn, &self.args.live_group, &topic, 0),
        )?;
        tracing::debug!(took = ?overlap_started.elapsed(), "overlap targets read");
        let targets = replay::max_offsets(&ends, &live);
        let mut p = Progress::new(&format!("{} overlap", plan.alias));
        replay.wait_for(self.conn, &targets, &mut p).await?;
        p.finish();
        phases.overlap = overlap_started.elapsed();
        let finish_started = Instant::now();
        let dead = replay.metrics.snapshot().dead_lettered_total();
        replay.stop().await?;
        tracing::debug!(took = ?finish_started.elapsed(), "replay stopped");
        if dead > 0 {
            eprintln!(
                "warning: {dead} events were dead-lettered by this run of the rebuild (see the \
                 dead-letter topic {}; header group {group}); they are not in {}",
                self.runtime.dlq_topic(),
                new.index
            );
        }
        self.clean_up(&plan, &new, &group).await?;
        phases.finish = finish_started.elapsed();
        eprintln!("{}: {phases}", plan.alias);
        let docs = self.api.count(&new.index).await.unwrap_or(0);
        println!(
            "{}: rebuilt into {} ({docs} documents including tombstones); alias {} -> {}",
            plan.entity_type, new.index, plan.alias, new.index
        );
        Ok(())
    }

    fn start_replay(&self, plan: &Plan, group: &str) -> anyhow::Result<Replay> {
        let mut config = self.runtime.clone();
        config.group_id = group.to_owned();
        let mut es = self.es.clone();
        // The sink writes through `syncline-rebuild.<alias>`, i.e. into the new index only,
        // and must never create an index of its own.
        es.index_prefix = format!("{REBUILD_ALIAS_PREFIX}{}", self.es.index_prefix);
        es.create_indexes = false;
        let metrics = Metrics::new();
        let sink = EsSink::with_definitions(&es, self.definitions.clone(), &metrics)
            .context("building the Elasticsearch sink")?;
        let sink = OneType {
            inner: sink,
            entity_type: plan.entity_type.clone(),
        };
        Replay::start(config, sink, metrics)
    }

    /// The create-index body of the new index and the flat settings it must have once
    /// filled (from the mapping file).
    fn create_body(&self, plan: &Plan) -> (Value, Map<String, Value>) {
        let mut body =
            self.definitions
                .create_body(&plan.entity_type, &plan.alias, self.es.delete_mode);
        let mut settings = Map::new();
        if let Some(s) = body.get("settings") {
            flatten("", s, &mut settings);
        }
        let wanted = settings.clone();
        // Bulk-load settings: no periodic refresh, no replica copies while filling.
        settings.insert("index.refresh_interval".into(), json!("-1"));
        settings.insert("index.number_of_replicas".into(), json!(0));
        body.insert("settings".into(), Value::Object(settings));
        // The rebuild alias only takes writes; it carries the tombstone filter anyway, like
        // every alias the indexer writes through, so the sink does not warn about it.
        let mut rebuild_alias = Map::from_iter([("is_write_index".to_owned(), Value::Bool(true))]);
        if self.es.delete_mode == DeleteMode::Tombstone {
            rebuild_alias.insert("filter".into(), tombstone_filter());
        }
        body.insert(
            "aliases".into(),
            json!({ plan.rebuild_alias.clone(): rebuild_alias }),
        );
        (Value::Object(body), wanted)
    }

    /// Restore serving settings, make the index searchable, then swap the alias in one
    /// atomic request.
    async fn swap(&self, plan: &Plan, new: &Generation) -> anyhow::Result<()> {
        let (_, wanted) = self.create_body(plan);
        // What the index had before the rebuild is the best default for what the mapping
        // file does not say.
        let mut old_settings = Map::new();
        for index in plan.current.keys() {
            if index != &new.index {
                old_settings = self.api.flat_settings(index).await?;
                break;
            }
        }
        let pick = |key: &str, default: Value| {
            wanted
                .get(key)
                .or_else(|| old_settings.get(key))
                .cloned()
                .unwrap_or(default)
        };
        self.api
            .put_settings(
                &new.index,
                json!({
                    "index.refresh_interval": pick("index.refresh_interval", json!("1s")),
                    "index.number_of_replicas": pick("index.number_of_replicas", json!(1)),
                }),
            )
            .await?;
        self.api.refresh(&new.index).await?;
        self.api.wait_ready(&new.index).await?;

        // The alias keeps its routing options; the filter is the tombstone filter in
        // tombstone mode (what the indexer itself creates), else whatever it had.
        let write_def = plan
            .current
            .values()
            .find(|d| d["is_write_index"] == true)
            .or_else(|| plan.current.values().next())
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut add = Map::new();
        add.insert("index".into(), json!(new.index));
        add.insert("alias".into(), json!(plan.alias));
        for key in [
            "filter",
            "routing",
            "index_routing",
            "search_routing",
            "is_hidden",
        ] {
            if let Some(v) = write_def.get(key) {
                add.insert(key.into(), v.clone());
            }
        }
        if self.es.delete_mode == DeleteMode::Tombstone {
            add.insert("filter".into(), tombstone_filter());
        }
        add.insert("is_write_index".into(), json!(true));
        let mut actions: Vec<Value> = plan
            .current
            .keys()
            .filter(|i| **i != new.index)
            .map(|i| json!({ "remove": { "index": i, "alias": plan.alias } }))
            .collect();
        actions.push(json!({ "add": add }));
        self.api.alias_actions(actions).await?;
        eprintln!(
            "{}: swapped {} -> {} (was {:?})",
            plan.alias,
            plan.alias,
            new.index,
            plan.current.keys().collect::<Vec<_>>()
        );
        Ok(())
    }

    /// After the overlap: old indexes (with `--delete-old`), the group, and last the
    /// rebuild alias, whose presence marks an unfinished rebuild.
    async fn clean_up(&self, plan: &Plan, new: &Generation, group: &str) -> anyhow::Result<()> {
        if self.args.delete_old {
            let now = self.api.alias_indexes(&plan.alias).await?;
            let mut old: Vec<String> = plan
                .generations
                .values()
                .filter(|g| g.number < new.number)
                .map(|g| g.index.clone())
                .chain(plan.current.keys().cloned())
                .filter(|i| *i != new.index && !now.contains_key(i))
                .collect();
            old.sort();
            old.dedup();
            for index in old {
                self.api.delete_index(&index).await?;
                eprintln!("{}: deleted old index {index}", plan.alias);
            }
        }
        if let Err(e) = delete_group(self.conn, group).await {
            eprintln!("note: could not delete the replay's consumer group {group} ({e:#}); it holds only offsets and can be deleted later");
        }
        self.api
            .alias_actions(vec![
                json!({ "remove": { "index": new.index, "alias": plan.rebuild_alias } }),
            ])
            .await
            .with_context(|| format!("removing the rebuild alias {}", plan.rebuild_alias))?;
        Ok(())
    }
}

/// How long each step of one alias's rebuild took (zero for steps a resumed run skips).
#[derive(Debug, Default)]
struct Phases {
    /// From the command's start to the replay's start: history check, index creation.
    setup: Duration,
    /// Replaying up to the end offsets read at the start.
    fill: Duration,
    /// Chasing the end offsets until a round is short.
    catch_up: Duration,
    /// Restoring settings, refreshing, waiting for the index, moving the alias.
    swap: Duration,
    /// Replaying past what the live indexer may have written to the old index.
    overlap: Duration,
    /// Stopping the replay and cleaning up.
    finish: Duration,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "phases: setup {:.1} s, fill {:.1} s, catch-up {:.1} s, swap {:.1} s, \
             overlap {:.1} s, stop and clean-up {:.1} s",
            self.setup.as_secs_f64(),
            self.fill.as_secs_f64(),
            self.catch_up.as_secs_f64(),
            self.swap.as_secs_f64(),
            self.overlap.as_secs_f64(),
            self.finish.as_secs_f64()
        )
    }
}

/// Flatten nested settings (`{"index":{"number_of_shards":1}}`, `{"number_of_shards":1}`)
/// to Elasticsearch's flat form with the `index.` prefix.
fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            let key = if prefix.starts_with("index.") {
                prefix.to_owned()
            } else {
                format!("index.{prefix}")
            };
            out.insert(key, other.clone());
        }
    }
}

/// The indexer's sink restricted to one entity type: events of other types are not this
/// rebuild's business and count as done.
struct OneType {
    inner: EsSink,
    entity_type: String,
}

impl Sink for OneType {
    fn name(&self) -> &'static str {
        "elasticsearch-rebuild"
    }

    async fn apply(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        if batch.iter().all(|e| e.entity_type == self.entity_type) {
            return self.inner.apply(batch).await;
        }
        let mine: Vec<EventRef<'_>> = batch
            .iter()
            .filter(|e| e.entity_type == self.entity_type)
            .copied()
            .collect();
        let mut theirs = if mine.is_empty() {
            Vec::new()
        } else {
            self.inner.apply(&mine).await
        }
        .into_iter();
        batch
            .iter()
            .map(|e| {
                if e.entity_type == self.entity_type {
                    theirs.next().unwrap_or(Outcome::Retry {
                        reason: "the sink answered fewer outcomes than events".into(),
                    })
                } else {
                    Outcome::Applied
                }
            })
            .collect()
    }
}

/// Delete a consumer group that has no members.
pub(super) async fn delete_group(conn: &Connection, group: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = conn.client_config().create()?;
    let results = admin
        .delete_groups(
            &[group],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(g, e)| anyhow::anyhow!("{g}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten() {
        let mut out = Map::new();
        flatten(
            "",
            &json!({"number_of_shards": 1, "index": {"refresh_interval": "5s"}, "analysis": {"analyzer": {"a": {"type": "standard"}}}}),
            &mut out,
        );
        assert_eq!(out["index.number_of_shards"], 1);
        assert_eq!(out["index.refresh_interval"], "5s");
        assert_eq!(out["index.analysis.analyzer.a.type"], "standard");
    }
}

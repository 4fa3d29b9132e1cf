//! A tiny cache-aside CLI over Syncline's key layout, for demos and poking at a cache.
//!
//! ```sh
//! export REDIS_URL=redis://127.0.0.1:6379
//! cargo run -p syncline-cache --example cache_aside -- load product p-1 --version 3 --document '{"name":"Mug"}'
//! cargo run -p syncline-cache --example cache_aside -- get product p-1
//! cargo run -p syncline-cache --example cache_aside -- guard product p-1
//! cargo run -p syncline-cache --example cache_aside -- race product p-2
//! ```
//!
//! `load` plays an application's read path: read through the cache, and on a miss "load
//! from the database" (the `--version`/`--document` given) and store it only if no newer
//! version is known. `get` prints what is cached as one JSON line (`"cached": false` on a
//! miss). `race` demonstrates the slow-reader race the version guard closes.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use syncline_cache::{Cache, Entry, KeyLayout, Mode, Ttls};
use syncline_event::{ChangeEvent, Op};

#[derive(Parser)]
#[command(about = "Cache-aside over Syncline's Redis key layout")]
struct Args {
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Key prefix (the invalidator's `key_prefix`).
    #[arg(long, env = "SYNCLINE_REDIS_KEY_PREFIX", default_value = "syncline:")]
    prefix: String,
    /// Lifetime of stored values.
    #[arg(long, default_value = "1h", value_parser = humantime_duration)]
    cache_ttl: Duration,
    /// Lifetime of version guards.
    #[arg(long, default_value = "7days", value_parser = humantime_duration)]
    guard_ttl: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the cached entry (one JSON line).
    Get {
        entity_type: String,
        entity_id: String,
    },
    /// Print the version guard (one JSON line).
    Guard {
        entity_type: String,
        entity_id: String,
    },
    /// Read through the cache; on a miss store the given "database" state if not stale.
    Load {
        entity_type: String,
        entity_id: String,
        /// Version the "database" returns.
        #[arg(long)]
        version: i64,
        /// Document the "database" returns.
        #[arg(long)]
        document: String,
    },
    /// Show a slow reader's stale store being refused after an invalidation.
    Race {
        entity_type: String,
        entity_id: String,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    // A small parser so the example needs no extra crate: <n>(ms|s|m|h|d|days).
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" | "days" => n * 86_400,
        _ => return Err(format!("bad duration unit in {s:?}")),
    };
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let layout = KeyLayout::new(args.prefix.clone())?;
    let ttls = Ttls::new(args.cache_ttl, args.guard_ttl)?;
    let cache = Cache::connect(&args.redis_url, layout, ttls)
        .await
        .context("connecting to redis")?;
    match args.command {
        Command::Get {
            entity_type,
            entity_id,
        } => {
            let key = cache.layout().cache_key(&entity_type, &entity_id);
            let line = match cache.get(&entity_type, &entity_id).await? {
                Some(e) => {
                    json!({"key": key, "cached": true, "version": e.version, "document": e.document})
                }
                None => json!({"key": key, "cached": false}),
            };
            println!("{line}");
        }
        Command::Guard {
            entity_type,
            entity_id,
        } => {
            let key = cache.layout().guard_key(&entity_type, &entity_id);
            let guard = cache.guard(&entity_type, &entity_id).await?;
            println!("{}", json!({"key": key, "guard": guard}));
        }
        Command::Load {
            entity_type,
            entity_id,
            version,
            document,
        } => {
            let loaded = cache
                .get_or_load(&entity_type, &entity_id, || async {
                    Ok::<_, std::convert::Infallible>(Some(Entry { version, document }))
                })
                .await?
                .context("loader returned nothing")?;
            println!(
                "{}",
                json!({
                    "key": cache.layout().cache_key(&entity_type, &entity_id),
                    "origin": format!("{:?}", loaded.origin).to_lowercase(),
                    "version": loaded.entry.version,
                    "document": loaded.entry.document,
                })
            );
        }
        Command::Race {
            entity_type,
            entity_id,
        } => race(&cache, &entity_type, &entity_id).await?,
    }
    Ok(())
}

async fn race(cache: &Cache, entity_type: &str, entity_id: &str) -> anyhow::Result<()> {
    let base = cache.guard(entity_type, entity_id).await?.unwrap_or(0) + 1;
    println!("1. a reader misses and loads version {base} from the database (slowly)");
    let slow = Entry {
        version: base,
        document: format!("{{\"version\":{base}}}"),
    };
    println!(
        "2. meanwhile version {} is committed; its event invalidates the cache",
        base + 1
    );
    let event = ChangeEvent::new(
        entity_type,
        entity_id,
        Op::Upsert,
        base + 1,
        "example",
        Some("{}".into()),
    );
    let applied = cache.apply(&event, Mode::Invalidate).await?;
    println!("   APPLY -> {applied:?}");
    let refused = cache.store(entity_type, entity_id, &slow).await?;
    println!(
        "3. the slow reader stores version {base}: {refused:?} (guard is {})",
        base + 1
    );
    let fresh = Entry {
        version: base + 1,
        document: format!("{{\"version\":{}}}", base + 1),
    };
    let stored = cache.store(entity_type, entity_id, &fresh).await?;
    println!(
        "4. a reader that loaded version {} stores it: {stored:?}",
        base + 1
    );
    Ok(())
}

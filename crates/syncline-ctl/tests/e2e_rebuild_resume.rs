//! `syncline-ctl rebuild es` killed with SIGKILL at five random moments and run again:
//! every rerun continues (or cleans up) what the killed one left, and the last one
//! finishes. Meanwhile the live indexer keeps applying live traffic and a sampler reads the
//! alias every few milliseconds: it must always have exactly one write index. At the end
//! the alias points at the newest generation only, the rebuild alias is gone, the old
//! generations are kept (`--keep-old`) outside the alias, and the alias equals the oracle.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod rebuild_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rebuild_support::{check_oracle, debug_binary, mapping_dir, Es, Publisher, Setup};
use serde_json::{json, Value};
use syncline_testkit::{create_topic_with_dlq, publish_events, ChildGuard, Workload, WorkloadSpec};

/// Indexes behind the alias that count as its write index.
fn write_indexes(behind: &std::collections::BTreeMap<String, Value>) -> usize {
    if behind.len() == 1 {
        // A lone index is the write index unless explicitly marked otherwise.
        return usize::from(behind.values().all(|d| d["is_write_index"] != false));
    }
    behind
        .values()
        .filter(|d| d["is_write_index"] == true)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_five_random_moments_then_rerun_converges() {
    let indexer_bin = debug_binary("syncline-es-indexer", "syncline-es-indexer");
    let es = Arc::new(Es::start().await);
    let setup = Setup::new(&es, "rebuild-kill");
    let alias = setup.alias("product");
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");
    let mappings = mapping_dir(
        "product",
        &json!({"mappings": {"properties": {"name": {"type": "keyword"}, "price": {"type": "long"}}}}),
    );
    let keys = 2_000;
    let w = Workload::generate(&WorkloadSpec {
        events: 30_000,
        keys,
        entity_type: "product".into(),
        delete_ratio: 0.15,
        duplicate_ratio: 0.05,
        doc_bytes: 300,
        shuffle: true,
        seed: 21,
    });
    publish_events(&setup.brokers, &setup.topic, &w.events)
        .await
        .expect("publish history");
    let _live = setup.spawn_indexer(&indexer_bin, mappings.path());
    setup
        .wait_drained(&setup.live_group, Duration::from_secs(180))
        .await;
    let publisher = Publisher::start(
        setup.brokers.clone(),
        setup.topic.clone(),
        "product".into(),
        w.oracle.clone(),
        keys,
        Vec::new(),
        300,
        22,
    );

    // The sampler: exactly one write index behind the alias, at every look.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (es, alias, sampling) = (es.clone(), alias.clone(), sampling.clone());
        tokio::spawn(async move {
            let (mut looks, mut bad) = (0u64, Vec::new());
            while sampling.load(Ordering::Relaxed) {
                let behind = es.alias_indexes(&alias).await;
                looks += 1;
                if write_indexes(&behind) != 1 {
                    bad.push(format!("{behind:?}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (looks, bad)
        })
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("kill moments seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Rate-limited so that a run lasts long enough (~10 s of filling: the limit counts
    // events after coalescing, about half the records) for kills to land in every phase:
    // before the index exists, while filling, around the swap, after it.
    let flags = [
        "--entity-type",
        "product",
        "--keep-old",
        "--events-per-second",
        "1500",
    ];
    let mut killed_in_flight = 0;
    // Five kills of a running rebuild; a run that finishes before its kill moment does not
    // count (the next run then starts the next generation).
    let mut round = 0;
    while killed_in_flight < 5 && round < 12 {
        round += 1;
        let mut child = ChildGuard::spawn(
            setup
                .rebuild_cmd(mappings.path(), &flags)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("spawn rebuild");
        let wait = Duration::from_millis(rng.random_range(300..10_000));
        let before: Vec<String> = es.alias_indexes(&alias).await.into_keys().collect();
        let started = Instant::now();
        let mut finished = None;
        // The fifth kill comes right after the swap instead, so that a rerun has to
        // finish the overlap and the clean-up of a swapped rebuild.
        let after_swap = killed_in_flight == 4;
        while after_swap || started.elapsed() < wait {
            if let Some(status) = child.try_wait().expect("try_wait") {
                finished = Some(status);
                break;
            }
            if after_swap {
                let now: Vec<String> = es.alias_indexes(&alias).await.into_keys().collect();
                if now != before {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill();
        let gens = es.get(&format!("/{alias}-*/_alias")).await.1;
        let state: Vec<String> = gens
            .as_object()
            .into_iter()
            .flatten()
            .map(|(i, d)| {
                let mut a: Vec<&String> = d["aliases"]
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                a.sort();
                format!("{i}: {a:?}")
            })
            .collect();
        match finished {
            Some(status) => eprintln!("round {round}: finished by itself ({status}) before the kill at {wait:?}; {state:?}"),
            None => {
                killed_in_flight += 1;
                let when = if after_swap { "right after the swap".to_owned() } else { format!("after {wait:?}") };
                eprintln!("round {round}: SIGKILL {when}; {state:?}");
            }
        }
    }

    let out = setup
        .rebuild_cmd(mappings.path(), &flags)
        .output()
        .expect("final rebuild");
    eprintln!(
        "final run: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the rerun after the kills failed");

    let oracle = publisher.stop().await;
    setup
        .wait_drained(&setup.live_group, Duration::from_secs(180))
        .await;
    sampling.store(false, Ordering::Relaxed);
    let (looks, bad) = sampler.await.expect("sampler");
    eprintln!("{looks} looks at the alias, {killed_in_flight} runs killed mid-flight");
    assert_eq!(killed_in_flight, 5, "runs killed mid-flight");
    assert!(
        bad.is_empty(),
        "alias without exactly one write index: {:?}",
        &bad[..bad.len().min(5)]
    );
    assert!(looks > 50, "only {looks} looks");

    // Newest generation behind the alias, alone; rebuild alias gone; older ones kept.
    let gens = es.get(&format!("/{alias}-*/_alias")).await.1;
    let mut names: Vec<String> = gens
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    let newest = names.last().cloned().expect("some generation");
    assert!(names.len() >= 2, "{names:?}");
    let behind = es.alias_indexes(&alias).await;
    assert_eq!(
        behind.keys().collect::<Vec<_>>(),
        vec![&newest],
        "{behind:?}"
    );
    for (i, d) in gens.as_object().into_iter().flatten() {
        let aliases = d["aliases"].as_object().cloned().unwrap_or_default();
        assert!(
            aliases.keys().all(|a| a == &alias),
            "{i} still carries {:?}",
            aliases.keys().collect::<Vec<_>>()
        );
    }
    let dlq = syncline_testkit::end_offsets(&setup.brokers, &format!("{}.dlq", setup.topic))
        .await
        .expect("dlq offsets");
    assert_eq!(dlq.iter().sum::<i64>(), 0, "dead letters: {dlq:?}");
    if let Err(e) = check_oracle(&es, &alias, &oracle).await {
        panic!("after five kills and a rerun the alias differs from the oracle: {e}");
    }
}

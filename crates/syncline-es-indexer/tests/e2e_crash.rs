//! Crash safety: the indexer is killed with SIGKILL at five random moments while events
//! are being published and restarted each time. While it runs, the group's committed
//! offsets are sampled; for every sample, every event below the committed offset must
//! already be in Elasticsearch (its document's version at least the event's). At the end
//! the index equals the oracle.
//!
//! Tombstone mode makes the per-event check possible for deletes too: a delete leaves a
//! versioned document behind.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{check_oracle, Es, Setup};
use rand::{Rng, SeedableRng};
use syncline_testkit::{
    committed_offsets, create_topic_with_dlq, publish_events, Delivered, Workload, WorkloadSpec,
};
use tokio::sync::Mutex;

/// (partition, offset, entity id, version) of every published event.
type Published = Vec<(i32, i64, String, i64)>;

/// One sample: committed offsets, then the index's versions; returns the number of
/// events checked and the violations.
async fn sample(
    es: &Es,
    setup: &Setup,
    published: &Published,
) -> Result<(usize, Vec<String>), String> {
    let committed = committed_offsets(&setup.brokers, &setup.group, &setup.topic)
        .await
        .map_err(|e| e.to_string())?;
    if committed.iter().all(Option::is_none) {
        return Ok((0, Vec::new()));
    }
    // Read the index only after the offsets: versions only grow, so anything committed
    // before this point must be visible now.
    let alias = setup.alias("product");
    let indexes = es.alias_indexes(&alias).await;
    let versions: HashMap<String, i64> = match indexes.as_slice() {
        [index] => es
            .search_all(index)
            .await
            .into_iter()
            .map(|(id, (v, _))| (id, v))
            .collect(),
        _ => HashMap::new(),
    };
    let mut violations = Vec::new();
    let mut checked = 0;
    for (p, offset, id, version) in published {
        let Some(Some(c)) = committed.get(*p as usize) else {
            continue;
        };
        if offset >= c {
            continue;
        }
        checked += 1;
        if versions.get(id).copied().unwrap_or(-1) < *version {
            violations.push(format!(
                "partition {p} committed {c} but event at offset {offset} ({id} v{version}) \
                 is not applied (index has {:?})",
                versions.get(id)
            ));
        }
    }
    Ok((checked, violations))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_commits_ahead_and_converges() {
    let es = Arc::new(Es::start().await);
    let setup = Setup::new(&es, "crash");
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 30_000,
        keys: 1_500,
        entity_type: "product".into(),
        delete_ratio: 0.15,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 99,
    });
    let published: Arc<Mutex<Published>> = Arc::new(Mutex::new(Vec::new()));

    // Sampler: runs until told to stop, collecting violations.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (es, setup, published, stop) =
            (es.clone(), setup.clone(), published.clone(), stop.clone());
        tokio::spawn(async move {
            let mut violations = Vec::new();
            let (mut samples, mut checked) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let snapshot = published.lock().await.clone();
                if let Ok((c, v)) = sample(&es, &setup, &snapshot).await {
                    samples += 1;
                    checked += c;
                    violations.extend(v);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (samples, checked, violations)
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let chunks: Vec<&[syncline_event::ChangeEvent]> =
        w.events.chunks(w.events.len() / 6 + 1).collect();
    // Rate-limited so that the run lasts long enough for the kills to land mid-drain.
    let args = ["--events-per-second", "2000"];
    let mut indexer = setup.spawn(&args);
    for (round, chunk) in chunks.iter().enumerate() {
        let delivered: Vec<Delivered> = publish_events(&setup.brokers, &setup.topic, chunk)
            .await
            .expect("publish");
        {
            let mut p = published.lock().await;
            for (e, d) in chunk.iter().zip(delivered) {
                p.push((d.partition, d.offset, e.entity_id.clone(), e.version));
            }
        }
        if round < 5 {
            // A random moment: anywhere from joining the group to mid-drain.
            let wait = rng.random_range(1_000..8_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            indexer.child.kill();
            indexer = setup.spawn(&args);
        }
    }
    setup.wait_drained(Duration::from_secs(600)).await;
    stop.store(true, Ordering::Relaxed);
    let (samples, checked, violations) = sampler.await.expect("sampler");
    eprintln!("{samples} samples checked {checked} (event, sample) pairs");
    let result = check_oracle(&es, &setup.alias("product"), &w.oracle, true).await;
    drop(indexer);
    assert!(samples >= 5, "only {samples} samples taken");
    assert!(checked > 0, "no sample saw a committed offset");
    assert!(
        violations.is_empty(),
        "{} violations in {samples} samples, first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    if let Err(e) = result {
        panic!("index differs from the oracle after 5 kills: {e}");
    }
}

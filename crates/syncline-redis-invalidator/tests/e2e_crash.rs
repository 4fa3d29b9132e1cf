//! Crash safety: the invalidator is SIGKILLed at five random moments while events keep
//! arriving, restarted each time; the end state equals the oracle.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use rand::Rng as _;
use syncline_cache::Mode;
use syncline_testkit::{create_topic, publish_events, Workload, WorkloadSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_still_converges() {
    let url = syncline_testkit::redis_url();
    let setup = common::Setup::new("crash", &url);
    create_topic(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topic");
    let workload = Workload::generate(&WorkloadSpec {
        events: 30_000,
        keys: 1_000,
        entity_type: "product".into(),
        delete_ratio: 0.1,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 11,
    });
    let chunks: Vec<_> = workload
        .events
        .chunks(workload.events.len() / 5 + 1)
        .collect();
    let mut rng = rand::rng();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut inv = setup.spawn(Mode::Refresh, &[]);
        publish_events(&setup.brokers, &setup.topic, chunk)
            .await
            .expect("publish");
        // A random moment: anywhere from mid-startup to mid-drain.
        let ms = rng.random_range(200..4_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        inv.child.kill();
        eprintln!(
            "kill {} after {ms} ms; committed {:?}",
            i + 1,
            setup.committed().await
        );
    }
    let inv = setup.spawn(Mode::Refresh, &[]);
    setup.wait_drained(common::DEADLINE * 2).await;
    let metrics = inv.metrics();
    drop(inv);
    let mut conn = common::connect(&url).await;
    let result =
        common::check_oracle(&mut conn, &setup.layout, &workload.oracle, Mode::Refresh).await;
    common::cleanup(&mut conn, &setup.layout).await;
    result.unwrap_or_else(|e| panic!("{e}\n{metrics}"));
}

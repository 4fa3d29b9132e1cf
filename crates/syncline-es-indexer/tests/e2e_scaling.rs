//! Scaling: three indexer processes in one group on a 6-partition topic; one is killed
//! (SIGKILL) and one added while events are being published. The end state equals the
//! oracle.

mod common;

use std::time::Duration;

use common::{check_oracle, Es, Setup};
use syncline_testkit::{create_topic_with_dlq, publish_events, Workload, WorkloadSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_with_a_kill_and_a_join_converges() {
    let es = Es::start().await;
    let setup = Setup::new(&es, "scale");
    create_topic_with_dlq(&setup.brokers, &setup.topic, 6)
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
        seed: 21,
    });
    let chunks: Vec<_> = w.events.chunks(w.events.len() / 3 + 1).collect();
    // Rate-limited per process so that the kill and the join happen while work is queued.
    let args = ["--events-per-second", "800"];
    let mut group: Vec<_> = (0..3).map(|_| setup.spawn(&args)).collect();

    publish_events(&setup.brokers, &setup.topic, chunks[0])
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(8)).await;
    // One dies without a chance to commit or leave the group.
    group.remove(0).child.kill();
    publish_events(&setup.brokers, &setup.topic, chunks[1])
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(8)).await;
    group.push(setup.spawn(&args));
    publish_events(&setup.brokers, &setup.topic, chunks[2])
        .await
        .expect("publish");

    setup.wait_drained(Duration::from_secs(600)).await;
    let result = check_oracle(&es, &setup.alias("product"), &w.oracle, true).await;
    drop(group);
    if let Err(e) = result {
        panic!("index differs from the oracle: {e}");
    }
}

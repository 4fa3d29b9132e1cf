//! `syncline-ctl lag` against the real broker: it reports what the group committed, and
//! `--wait` succeeds only once the group has committed everything.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use syncline_testkit::*;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
        .arg("--brokers")
        .arg(kafka_brokers())
        .args(args)
        .output()
        .unwrap()
}

fn commit(group: &str, topic: &str, offsets: &[i64]) {
    let c: BaseConsumer = consumer_config(&kafka_brokers(), group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn lag_reports_committed_positions_and_wait_needs_zero() {
    let brokers = kafka_brokers();
    let topic = unique_name("ctl-lag");
    let group = unique_name("ctl-group");
    create_topic(&brokers, &topic, 2).await.unwrap();
    let w = Workload::generate(&WorkloadSpec {
        events: 40,
        keys: 10,
        duplicate_ratio: 0.0,
        ..WorkloadSpec::default()
    });
    publish_events(&brokers, &topic, &w.events).await.unwrap();
    let ends = end_offsets(&brokers, &topic).await.unwrap();
    assert_eq!(ends.iter().sum::<i64>(), 40);

    commit(&group, &topic, &[1, 0]);
    let out = ctl(&["lag", "--topic", &topic, "--group", &group]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("total lag {}", 40 - 1)), "{text}");

    let out = ctl(&[
        "lag",
        "--topic",
        &topic,
        "--group",
        &group,
        "--wait",
        "--timeout",
        "2s",
    ]);
    assert!(
        !out.status.success(),
        "--wait must fail while the group lags"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("still lag by 39 records"));

    commit(&group, &topic, &ends);
    let out = ctl(&[
        "lag",
        "--topic",
        &topic,
        "--group",
        &group,
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("total lag 0"));
}

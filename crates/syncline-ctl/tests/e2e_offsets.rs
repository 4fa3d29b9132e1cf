//! `syncline-ctl offsets` against the real broker: a dry run changes nothing, `--execute`
//! commits exactly what the table said for each of the five modes, `show --csv` feeds back
//! into `--from-file`, and a reset is refused while the group has a running member.
//!
//! Records are produced with explicit partitions and timestamps, so `--to-datetime` has
//! a known answer (this is also the check that Tansu answers ListOffsets by timestamp and
//! earliest correctly).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ctl, text};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use syncline_testkit::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Produce `count` records to `partition` stamped `timestamp_ms`.
async fn produce(topic: &str, partition: i32, count: usize, timestamp_ms: i64) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..count {
        let key = format!("k{partition}-{i}");
        p.send(
            FutureRecord::to(topic)
                .key(&key)
                .payload("v")
                .partition(partition)
                .timestamp(timestamp_ms),
            Duration::from_secs(30),
        )
        .await
        .expect("produce");
    }
}

fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = consumer_config(&kafka_brokers(), group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("tpl");
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

async fn committed(group: &str, topic: &str) -> Vec<Option<i64>> {
    committed_offsets(&kafka_brokers(), group, topic)
        .await
        .expect("committed offsets")
}

/// Run a reset with `mode` and `--execute`; it must succeed.
fn reset(group: &str, topic: &str, mode: &[&str]) -> String {
    let mut args = vec!["offsets", "reset", "--group", group, "--topic", topic];
    args.extend_from_slice(mode);
    args.push("--execute");
    let out = ctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Partition 0: 6 records two hours old, then 4 one hour old; partition 1: 3 old, 7 newer;
/// partition 2: empty.
async fn setup(topic: &str) -> i64 {
    create_topic(&kafka_brokers(), topic, 3)
        .await
        .expect("topic");
    let (old, newer) = (now_ms() - 2 * 3_600_000, now_ms() - 3_600_000);
    produce(topic, 0, 6, old).await;
    produce(topic, 0, 4, newer).await;
    produce(topic, 1, 3, old).await;
    produce(topic, 1, 7, newer).await;
    assert_eq!(
        end_offsets(&kafka_brokers(), topic).await.expect("ends"),
        vec![10, 10, 0]
    );
    old + 30 * 60_000
}

#[tokio::test]
async fn reset_modes_dry_run_and_execute() {
    let topic = unique_name("ctl-off");
    let group = unique_name("ctl-off-g");
    let between = setup(&topic).await;
    commit(&group, &topic, &[(0, 5), (1, 5)]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(5), Some(5), None]
    );

    // Dry run: the before/after table, and nothing changes on the broker.
    let out = ctl(&[
        "offsets",
        "reset",
        "--group",
        &group,
        "--topic",
        &topic,
        "--to-earliest",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 5 && w[0].parse::<i32>().is_ok())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["0", "0", "10", "5", "0"],
            vec!["1", "0", "10", "5", "0"],
            vec!["2", "0", "0", "-", "0"],
        ],
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(5), Some(5), None]
    );

    reset(&group, &topic, &["--to-earliest"]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(0), Some(0), Some(0)]
    );

    reset(&group, &topic, &["--to-latest"]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(10), Some(10), Some(0)]
    );

    // The first record at or after `between` is the first "newer" one; partition 2 has
    // none, so it goes to its end.
    let at = jiff::Timestamp::from_millisecond(between)
        .expect("time")
        .to_string();
    reset(&group, &topic, &["--to-datetime", &at]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(6), Some(3), Some(0)]
    );

    // Shifts are clamped to [earliest, end].
    let out = reset(&group, &topic, &["--shift-by", "-4"]);
    assert!(out.contains("(clamped)"), "{out}");
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(2), Some(0), Some(0)]
    );
    reset(&group, &topic, &["--shift-by", "3", "--partition", "1"]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(2), Some(3), Some(0)]
    );
    reset(&group, &topic, &["--shift-by", "100"]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(10), Some(10), Some(0)]
    );

    // What `show --csv` prints is what `--from-file` reads back.
    commit(&group, &topic, &[(0, 7), (1, 4)]);
    let out = ctl(&[
        "offsets", "show", "--group", &group, "--topic", &topic, "--csv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(csv, format!("{topic},0,7\n{topic},1,4\n{topic},2,0\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("saved.csv");
    std::fs::write(&saved, &csv).expect("write csv");
    reset(&group, &topic, &["--to-earliest"]);
    reset(
        &group,
        &topic,
        &["--from-file", saved.to_str().expect("path")],
    );
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(7), Some(4), Some(0)]
    );

    // kafka-consumer-groups' format with a header and only one partition: only it moves.
    let partial = dir.path().join("partial.csv");
    std::fs::write(&partial, format!("topic,partition,offset\n{topic},1,9\n")).expect("write");
    reset(
        &group,
        &topic,
        &["--from-file", partial.to_str().expect("path")],
    );
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(7), Some(9), Some(0)]
    );

    // A file naming another topic is refused with its line; nothing changes.
    let wrong = dir.path().join("wrong.csv");
    std::fs::write(&wrong, format!("{topic},0,1\nother,1,2\n")).expect("write");
    let out = ctl(&[
        "offsets",
        "reset",
        "--group",
        &group,
        "--topic",
        &topic,
        "--from-file",
        wrong.to_str().expect("path"),
        "--execute",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: topic \"other\""),
        "{}",
        text(&out)
    );
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(7), Some(9), Some(0)]
    );

    // Two modes at once is a usage error.
    let out = ctl(&[
        "offsets",
        "reset",
        "--group",
        &group,
        "--topic",
        &topic,
        "--to-earliest",
        "--to-latest",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn reset_is_refused_while_the_group_has_members() {
    let topic = unique_name("ctl-off-active");
    let group = unique_name("ctl-off-active-g");
    setup(&topic).await;
    commit(&group, &topic, &[(0, 5), (1, 5)]);

    // A running member of the group: subscribed, polling on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let assigned = Arc::new(AtomicBool::new(false));
    let member = {
        let (stop, assigned, topic, group) =
            (stop.clone(), assigned.clone(), topic.clone(), group.clone());
        std::thread::spawn(move || {
            let mut cfg = consumer_config(&kafka_brokers(), &group);
            for (k, v) in consumer_kafka_props("") {
                cfg.set(k, v);
            }
            let c: BaseConsumer = cfg.create().expect("member");
            c.subscribe(&[&topic]).expect("subscribe");
            while !stop.load(Ordering::Relaxed) {
                let _ = c.poll(Duration::from_millis(100));
                if c.assignment().map(|a| a.count() > 0).unwrap_or(false) {
                    assigned.store(true, Ordering::Relaxed);
                }
            }
            c.unsubscribe();
        })
    };
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let assigned = assigned.load(Ordering::Relaxed);
        async move {
            if assigned {
                Ok(())
            } else {
                Err("member has no assignment yet".to_owned())
            }
        }
    })
    .await
    .expect("member joined");

    for args in [vec!["--to-earliest", "--execute"], vec!["--to-earliest"]] {
        let mut all = vec!["offsets", "reset", "--group", &group, "--topic", &topic];
        all.extend(args);
        let out = ctl(&all);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to change offsets"), "{err}");
        assert!(err.contains("1 member(s)"), "{err}");
    }
    let now = committed(&group, &topic).await;
    assert_eq!(&now[..2], &[Some(5), Some(5)]);

    // `show` names the member.
    let out = ctl(&["offsets", "show", "--group", &group, "--topic", &topic]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 member(s)"),
        "{}",
        text(&out)
    );

    // Once the member has left, the same reset goes through.
    stop.store(true, Ordering::Relaxed);
    member.join().expect("member thread");
    let brokers = kafka_brokers();
    wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let (brokers, group) = (brokers.clone(), group.clone());
        async move {
            let g = syncline_kafka::describe_group(brokers.as_str(), &group)
                .await
                .map_err(|e| e.to_string())?;
            if g.is_active() {
                Err(format!("{g:?}"))
            } else {
                Ok(())
            }
        }
    })
    .await
    .expect("group became empty");
    reset(&group, &topic, &["--to-earliest"]);
    assert_eq!(
        committed(&group, &topic).await,
        vec![Some(0), Some(0), Some(0)]
    );
}

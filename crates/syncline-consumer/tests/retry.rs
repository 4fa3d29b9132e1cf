//! Transient sink failures are retried without skipping: while events wait for a retry,
//! no sampled committed offset passes a record whose change the sink does not yet hold,
//! and the end state equals the oracle.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    assert_matches_oracle, test_config, wait_committed_to_end, Key, Plan, Shared, TestSink,
};
use syncline_consumer::{run_with_metrics, Metrics};
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::{
    committed_offsets, create_topic_with_dlq, end_offsets, kafka_brokers, publish_events,
    unique_name, wait_until, Workload, WorkloadSpec,
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_never_committed_past() {
    let brokers = kafka_brokers();
    let topic = unique_name("retry");
    let group = unique_name("retry-g");
    create_topic_with_dlq(&brokers, &topic, 4)
        .await
        .expect("create topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 5_000,
        keys: 300,
        seed: 11,
        ..WorkloadSpec::default()
    });
    let delivered = publish_events(&brokers, &topic, &w.events)
        .await
        .expect("publish");
    // Per partition: (offset, key, version) of every record.
    let mut by_partition: HashMap<i32, Vec<(i64, Key, i64)>> = HashMap::new();
    for (e, d) in w.events.iter().zip(&delivered) {
        by_partition.entry(d.partition).or_default().push((
            d.offset,
            (e.entity_type.clone(), e.entity_id.clone()),
            e.version,
        ));
    }

    // One event in 7 fails its first 4 attempts.
    let sink = TestSink::new(Plan {
        fail_one_in: Some(7),
        fail_attempts: 4,
        ..Plan::default()
    });
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let run = tokio::spawn(run_with_metrics(
        test_config(&topic, &group),
        Shared(sink.clone()),
        metrics.clone(),
        token.clone(),
    ));

    // Sample: read the committed offsets first, then the store. Whatever a commit covers
    // was applied before the commit, so the later store snapshot must hold it (or newer).
    let end = end_offsets(&brokers, &topic).await.expect("end offsets");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut samples = 0;
    let mut samples_with_progress = 0;
    loop {
        let committed = committed_offsets(&brokers, &group, &topic)
            .await
            .expect("committed");
        let state = sink.snapshot();
        samples += 1;
        for (p, c) in committed.iter().enumerate() {
            let Some(c) = c else { continue };
            let p = i32::try_from(p).expect("partition");
            if *c > 0 && *c < end[p as usize] {
                samples_with_progress += 1;
            }
            for (offset, key, version) in by_partition.get(&p).into_iter().flatten() {
                if offset < c {
                    let held = state.get(key).map(|(v, _)| *v);
                    assert!(
                        held.is_some_and(|v| v >= *version),
                        "partition {p} committed {c} past offset {offset} ({key:?} v{version}), store holds {held:?}"
                    );
                }
            }
        }
        let done = committed
            .iter()
            .zip(&end)
            .all(|(c, e)| *e == 0 || *c == Some(*e));
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up: {committed:?} vs {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_committed_to_end(&group, &topic, Duration::from_secs(10)).await;
    assert_matches_oracle(&sink.snapshot(), &w.oracle);

    let snap = metrics.snapshot();
    let returned = sink.retries_returned.load(Ordering::Relaxed);
    assert!(returned > 0, "the plan made the sink fail");
    assert_eq!(snap.retries, returned, "every Retry outcome is counted");
    assert_eq!(snap.dead_lettered_total(), 0, "{snap:?}");
    eprintln!("{samples} samples, {samples_with_progress} mid-run; {snap:?}");

    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns after cancel")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
}

/// A sink that never recovers: shutdown still returns `Ok` within `shutdown_timeout`, the
/// stuck event stays uncommitted (so the next owner gets it), and the records before it
/// are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_stuck_retry_without_committing_it() {
    let brokers = kafka_brokers();
    let topic = unique_name("stuck");
    let group = unique_name("stuck-g");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("create topics");
    let ev = |id: &str| ChangeEvent::new("item", id, Op::Upsert, 1, "t", Some("{}".into()));
    let before: Vec<ChangeEvent> = (0..10).map(|i| ev(&format!("a{i}"))).collect();
    publish_events(&brokers, &topic, &before)
        .await
        .expect("publish");
    // Published separately so it lands in a later batch than the records before it.
    let stuck = publish_events(&brokers, &topic, &[ev("stuck")])
        .await
        .expect("publish");
    let stuck_offset = stuck[0].offset;

    let sink = TestSink::new(Plan {
        always_fail_ids: ["stuck".to_owned()].into(),
        ..Plan::default()
    });
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config.shutdown_timeout = Duration::from_secs(2);
    let run = tokio::spawn(run_with_metrics(
        config,
        Shared(sink.clone()),
        metrics.clone(),
        token.clone(),
    ));

    let m = metrics.clone();
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let m = m.clone();
        async move {
            let s = m.snapshot();
            if s.retries >= 3 && s.applied >= 10 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await
    .expect("stuck event is being retried");
    // The records before it are committed while it keeps failing.
    let g = group.clone();
    let t = topic.clone();
    wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let (brokers, g, t) = (brokers.clone(), g.clone(), t.clone());
        async move {
            let c = committed_offsets(&brokers, &g, &t)
                .await
                .map_err(|e| e.to_string())?;
            if c[0] == Some(stuck_offset) {
                Ok(())
            } else {
                Err(format!("committed {c:?}"))
            }
        }
    })
    .await
    .expect("prefix committed up to the stuck record");

    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns within the shutdown timeout")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    let c = committed_offsets(&brokers, &group, &topic)
        .await
        .expect("committed");
    assert_eq!(
        c[0],
        Some(stuck_offset),
        "never committed past the stuck record"
    );
}

/// A sink that panics is a bug: `run` stops with an error (so the process restarts), having
/// committed only what was complete before the failing record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_stops_the_runtime_without_committing_past_it() {
    let brokers = kafka_brokers();
    let topic = unique_name("panic");
    let group = unique_name("panic-g");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("create topics");
    let ev = |id: &str| ChangeEvent::new("item", id, Op::Upsert, 1, "t", Some("{}".into()));
    let before: Vec<ChangeEvent> = (0..10).map(|i| ev(&format!("a{i}"))).collect();
    publish_events(&brokers, &topic, &before)
        .await
        .expect("publish");
    let bad = publish_events(&brokers, &topic, &[ev("boom")])
        .await
        .expect("publish");

    let sink = TestSink::new(Plan {
        panic_ids: ["boom".to_owned()].into(),
        ..Plan::default()
    });
    let token = CancellationToken::new();
    let run = tokio::spawn(run_with_metrics(
        test_config(&topic, &group),
        Shared(sink.clone()),
        Metrics::new(),
        token.clone(),
    ));
    let result = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("run stops by itself")
        .expect("task");
    assert!(
        matches!(
            result,
            Err(syncline_consumer::RuntimeError::BatchTaskFailed(_))
        ),
        "{result:?}"
    );
    let c = committed_offsets(&brokers, &group, &topic)
        .await
        .expect("committed");
    assert!(
        c[0].is_none_or(|o| o <= bad[0].offset),
        "committed {c:?} past the failing record"
    );
}

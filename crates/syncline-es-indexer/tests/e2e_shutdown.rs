//! A second SIGTERM during a graceful shutdown that is waiting on Elasticsearch ends the
//! process at once with 143, and the first one logs the shutdown timeout.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::{create_topic_with_dlq, free_port, publish_events, unique_name, wait_until};

async fn log_contains(log: &Arc<Mutex<String>>, needle: &str, timeout: Duration) {
    let r = wait_until(timeout, Duration::from_millis(100), || {
        let text = log.lock().map(|l| l.clone()).unwrap_or_default();
        let needle = needle.to_owned();
        async move {
            if text.contains(&needle) {
                Ok(())
            } else {
                Err(format!("no {needle:?} in:\n{text}"))
            }
        }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_a_stuck_shutdown_with_143() {
    let brokers = syncline_testkit::kafka_brokers();
    let topic = unique_name("shutdown2");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("topics");
    let events: Vec<ChangeEvent> = (0..10)
        .map(|i| {
            ChangeEvent::new(
                "product",
                format!("p{i}"),
                Op::Upsert,
                1,
                "test",
                Some("{}".to_owned()),
            )
        })
        .collect();
    publish_events(&brokers, &topic, &events)
        .await
        .expect("publish");
    // Elasticsearch never answers (port 9 is closed): the batch retries, so a graceful
    // shutdown would wait the whole shutdown timeout.
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"))
        .args([
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &unique_name("shutdown2-g"),
            "--es-url",
            "http://127.0.0.1:9",
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--shutdown-timeout",
            "120s",
        ])
        .env("SYNCLINE_KAFKA", syncline_testkit::consumer_kafka_env(""))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Arc::new(Mutex::new(String::new()));
    let reader = child.stderr.take().map(|e| {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        })
    });
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    log_contains(
        &log,
        "transient sink failure; retrying",
        Duration::from_secs(60),
    )
    .await;

    let _ = kill(pid, Signal::SIGTERM);
    log_contains(&log, "draining in-flight batches", Duration::from_secs(30)).await;
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        text.contains("120s"),
        "the shutdown timeout is logged:\n{text}"
    );

    let second = Instant::now();
    let _ = kill(pid, Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    if let Some(r) = reader {
        let _ = r.join();
    }
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        second.elapsed() < Duration::from_secs(30),
        "the second signal did not end the process at once"
    );
}

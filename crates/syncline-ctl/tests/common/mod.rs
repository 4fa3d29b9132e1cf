//! Running the `syncline-ctl` binary against the test broker, shared by the tests that
//! drive it directly (no pipeline around it).

#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use syncline_event::{ChangeEvent, Limits, Op};

use syncline_testkit::kafka_brokers;

/// Run `syncline-ctl --brokers <test broker> <args>` to completion.
pub fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
        .arg("--brokers")
        .arg(kafka_brokers())
        .args(args)
        .output()
        .expect("run syncline-ctl")
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Publish `n` UPSERTs of `product` `k0..k<n>` (version 1) with a record timestamp `age`
/// in the past: data a broker with a shorter `retention.ms` deletes (Tansu does not).
pub async fn publish_stamped(brokers: &str, topic: &str, n: usize, age: Duration) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let ts = (SystemTime::now() - age)
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    for i in 0..n {
        let id = format!("k{i}");
        let e = ChangeEvent::new(
            "product",
            id.clone(),
            Op::Upsert,
            1,
            "test",
            Some(json!({"id": id}).to_string()),
        );
        let payload = syncline_event::encode(&e, &Limits::default()).expect("encode");
        let key = e.key();
        p.send(
            FutureRecord::to(topic)
                .key(&key)
                .payload(&payload)
                .timestamp(ts),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("publish");
    }
}

#![allow(missing_docs)]
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::time::Duration;
fn main() {
    let t = std::env::args().nth(1).unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", "probe")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    for p in 0..3 {
        println!(
            "p{p} {:?}",
            c.fetch_watermarks(&t, p, Duration::from_secs(5))
        );
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&t, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            match m {
                Ok(m) => println!(
                    "p{} o{} {:?}",
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.key().unwrap())
                ),
                Err(e) => println!("err {e}"),
            }
        }
    }
}

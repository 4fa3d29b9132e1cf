//! The kit's Kafka helpers against the real broker: what they report is what is there.

use std::time::Duration;

use rdkafka::Message;
use syncline_testkit::kafka::decode_message;
use syncline_testkit::*;

#[tokio::test]
async fn publish_read_back_and_offsets() {
    let brokers = kafka_brokers();
    let topic = unique_name("kit");
    create_topic(&brokers, &topic, 3).await.unwrap();

    let w = Workload::generate(&WorkloadSpec {
        events: 300,
        keys: 20,
        ..WorkloadSpec::default()
    });
    let delivered = publish_events(&brokers, &topic, &w.events).await.unwrap();
    assert_eq!(delivered.len(), w.events.len());

    let ends = end_offsets(&brokers, &topic).await.unwrap();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends.iter().sum::<i64>() as usize, w.events.len());

    let msgs = read_all(&brokers, &topic, w.events.len(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(msgs.len(), w.events.len());
    for m in &msgs {
        let e = decode_message(m).unwrap();
        assert_eq!(m.key(), Some(e.key().as_bytes()));
        let d = delivered
            .iter()
            .position(|d| d.partition == m.partition() && d.offset == m.offset())
            .unwrap();
        assert_eq!(w.events[d].event_id, e.event_id);
    }

    let group = unique_name("kit-group");
    assert_eq!(
        committed_offsets(&brokers, &group, &topic).await.unwrap(),
        vec![None, None, None]
    );
}

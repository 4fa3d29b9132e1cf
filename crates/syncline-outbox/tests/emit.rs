//! `syncline_producer::outbox::emit` inside a service's transaction, published by the relay:
//! what comes out of Kafka is the event that went in, field for field.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use syncline_outbox::{migrate, Metrics, RelaySettings};
use syncline_producer::outbox::{emit, EmitError};
use syncline_producer::{ChangeEvent, Limits, Op, ProducerConfig};
use syncline_testkit::kafka::decode_message;
use syncline_testkit::postgres::count_rows;
use syncline_testkit::{create_topic, kafka_brokers, read_all, unique_name, wait_until, TestDb};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn emitted_events_come_out_unchanged_and_invalid_ones_never_go_in() {
    let db = TestDb::create().await;
    migrate(&db.config()).await.unwrap();
    let topic = unique_name("outbox-emit");
    create_topic(&kafka_brokers(), &topic, 1).await.unwrap();
    let mut c = db.client().await;
    let limits = Limits::default();

    let mut upsert = ChangeEvent::new(
        "product",
        "p-1",
        Op::Upsert,
        7,
        "catalog",
        Some(r#"{"b":1,"a":[2]}"#.into()),
    );
    upsert.invalidate = vec!["search:lamps".into()];
    upsert.attributes.insert("tenant".into(), "acme".into());
    let delete = ChangeEvent::new("product", "p-2", Op::Delete, 3, "catalog", None);
    let tx = c.transaction().await.unwrap();
    emit(&tx, &upsert, &limits).await.unwrap();
    emit(&tx, &delete, &limits).await.unwrap();
    tx.commit().await.unwrap();

    let tx = c.transaction().await.unwrap();
    let rolled_back = ChangeEvent::new(
        "product",
        "p-3",
        Op::Upsert,
        1,
        "catalog",
        Some("{}".into()),
    );
    emit(&tx, &rolled_back, &limits).await.unwrap();
    tx.rollback().await.unwrap();

    // Refused exactly as the producer refuses it, and nothing is written.
    let bad = ChangeEvent::new(
        "Product",
        "p-4",
        Op::Upsert,
        1,
        "catalog",
        Some("{}".into()),
    );
    assert!(matches!(
        emit(&c, &bad, &limits).await,
        Err(EmitError::Invalid(_))
    ));
    let not_object = ChangeEvent::new(
        "product",
        "p-5",
        Op::Upsert,
        1,
        "catalog",
        Some("[1]".into()),
    );
    assert!(matches!(
        emit(&c, &not_object, &limits).await,
        Err(EmitError::Invalid(_))
    ));
    let mut odd_id = upsert.clone();
    odd_id.event_id = "not-a-uuid".into();
    assert!(matches!(
        emit(&c, &odd_id, &limits).await,
        Err(EmitError::EventIdNotUuid(_))
    ));
    assert_eq!(count_rows(&c, "syncline_outbox").await, 2);

    let stop = CancellationToken::new();
    let metrics = Metrics::new();
    let relay = tokio::spawn(syncline_outbox::run(
        RelaySettings::new(db.config(), ProducerConfig::new(kafka_brokers(), &topic)),
        metrics.clone(),
        stop.clone(),
    ));
    wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let m = metrics.clone();
        async move {
            if m.published() >= 2 {
                Ok(())
            } else {
                Err("waiting".into())
            }
        }
    })
    .await
    .unwrap();
    stop.cancel();
    relay.await.unwrap().unwrap();
    let got: Vec<ChangeEvent> = read_all(&kafka_brokers(), &topic, 2, Duration::from_secs(30))
        .await
        .unwrap()
        .iter()
        .map(|m| decode_message(m).unwrap())
        .collect();
    assert_eq!(got, vec![upsert, delete]);
}

//! The Kafka source against a real broker (noida-db, started by the test):
//! a bounded read of a topic written in transactions sees each committed
//! record once, no aborted one, and ends by itself although the partitions
//! end in transaction markers rather than records.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use common::within;
use headwater::prelude::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const T: Duration = Duration::from_secs(30);

/// Writes ids `from..to` to both partitions of `topic` in one transaction,
/// committed or aborted.
fn transaction(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    from: i64,
    to: i64,
    commit: bool,
) {
    producer.begin_transaction().unwrap();
    for id in from..to {
        let value = format!(r#"{{"id":{id}}}"#);
        let record = BaseRecord::<(), str>::to(topic)
            .partition((id % 2) as i32)
            .payload(&value);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    if commit {
        producer.commit_transaction(T).unwrap();
    } else {
        producer.abort_transaction(T).unwrap();
    }
}

async fn read_all(bootstrap: &str, parallelism: usize) -> Vec<i64> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let env = StreamEnvironment::new().with_parallelism(parallelism);
    let source = KafkaSource::json(bootstrap, Topics::Named(vec!["tx".into()]), schema)
        .bounded(BoundedMode::LatestOffset);
    let rx = env.source(source).collect().unwrap();
    let job = env.execute().unwrap();
    let batches = within(60, rx.collect_all()).await;
    within(30, job.wait()).await.unwrap();
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_read_sees_committed_records_once_and_ends() {
    let broker = common::broker::start();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new("tx", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", "headwater-test-writer")
        .create()
        .unwrap();
    producer.init_transactions(T).unwrap();
    transaction(&producer, "tx", 0, 100, true);
    transaction(&producer, "tx", 100, 150, false);
    transaction(&producer, "tx", 150, 250, true);

    let committed: Vec<i64> = (0..100).chain(150..250).collect();
    assert_eq!(read_all(&broker.bootstrap, 2).await, committed);
    // Read again, at another parallelism: the same.
    assert_eq!(read_all(&broker.bootstrap, 1).await, committed);
}

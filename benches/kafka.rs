//! Kafka on loopback, against the test broker (noida-db, which
//! `scripts/setup.sh` installs): 500,000 JSON bids in a 2-partition topic.
//!
//! - consume: a plain librdkafka consumer (one thread, `read_committed`,
//!   touching every payload) against the Headwater Kafka source decoding the
//!   bids into batches, at parallelism 1 and 2, into a blackhole: events/s;
//! - sink: the same bids read and written to another topic with the
//!   at-least-once sink and with the exactly-once sink, checkpoints every
//!   second: events/s.
//!
//! Each figure is the best of 3. Run with `cargo bench --bench kafka`.

#[path = "../tests/integration/common/broker.rs"]
mod broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use headwater::prelude::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const BIDS: usize = 500_000;

fn produce(bootstrap: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let channels = ["web", "app", "api", "partner"];
    for i in 0..BIDS {
        let value = format!(
            r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}","date_time":{}}}"#,
            (i * 7) % 1000,
            (i * 13) % 10_000,
            (i * 31) % 10_000,
            channels[i % 4],
            1_735_689_600_000u64 + i as u64
        );
        loop {
            let record = BaseRecord::<(), str>::to("bids")
                .partition((i % 2) as i32)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// A plain consumer: every record of both partitions, its payload touched.
fn plain_consumer(bootstrap: &str) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        assignment
            .add_partition_offset("bids", p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    let (mut count, mut bytes) = (0usize, 0usize);
    while count < BIDS {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, <[u8]>::len);
            count += 1;
        }
    }
    std::hint::black_box(bytes);
    BIDS as f64 / started.elapsed().as_secs_f64()
}

fn schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("date_time", DataType::Int64, false),
    ]))
}

fn source(bootstrap: &str) -> KafkaSource {
    KafkaSource::json(bootstrap, Topics::Named(vec!["bids".into()]), schema())
        .with_startup(StartupMode::EarliestOffset)
        .bounded(BoundedMode::LatestOffset)
}

/// The Headwater source into a blackhole.
async fn headwater_consumer(bootstrap: &str, parallelism: usize) -> f64 {
    let env = StreamEnvironment::new().with_parallelism(parallelism);
    env.source(source(bootstrap)).sink(BlackholeSink).unwrap();
    let started = Instant::now();
    let result = env.execute().unwrap().wait().await.unwrap();
    assert_eq!(result.metrics.operator("kafka").rows_out, BIDS as u64);
    BIDS as f64 / started.elapsed().as_secs_f64()
}

/// The bids read and written to `topic` with `sink`, checkpoints every second.
async fn through_sink(bootstrap: &str, sink: KafkaSink) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamEnvironment::new()
        .with_parallelism(1)
        .with_checkpoints(dir.path(), Duration::from_secs(1));
    env.source(source(bootstrap)).sink(sink).unwrap();
    let started = Instant::now();
    env.execute().unwrap().wait().await.unwrap();
    BIDS as f64 / started.elapsed().as_secs_f64()
}

fn best_of_3(mut run: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| run()).fold(0.0, f64::max)
}

fn main() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(broker::create_topics(
        &bootstrap,
        &[("bids", 2), ("out-alo", 2), ("out-eo", 2)],
    ));
    let started = Instant::now();
    produce(&bootstrap);
    println!(
        "produced {BIDS} bids in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let plain = best_of_3(|| plain_consumer(&bootstrap));
    let p1 = best_of_3(|| rt.block_on(headwater_consumer(&bootstrap, 1)));
    let p2 = best_of_3(|| rt.block_on(headwater_consumer(&bootstrap, 2)));
    println!("consume: plain librdkafka consumer {plain:.0} records/s (1 thread)");
    println!(
        "consume: Headwater Kafka source, JSON decoded: {p1:.0} events/s at parallelism 1, \
         {p2:.0} at 2 ({:.0} per core)",
        p2 / 2.0
    );
    let alo = best_of_3(|| {
        rt.block_on(through_sink(
            &bootstrap,
            KafkaSink::json(&bootstrap, "out-alo"),
        ))
    });
    let mut round = 0;
    let eo = best_of_3(|| {
        round += 1;
        let sink = KafkaSink::json(&bootstrap, "out-eo").exactly_once(&format!("bench-{round}"));
        rt.block_on(through_sink(&bootstrap, sink))
    });
    println!(
        "sink (read, decode, encode, write; checkpoints every 1 s, parallelism 1): \
         at-least-once {alo:.0} events/s, exactly-once {eo:.0} events/s ({:.0}%)",
        100.0 * eo / alo
    );
}

//! The Kafka source against librdkafka's in-process mock cluster (plumbing
//! only: the mock fakes transactions, so nothing here asserts exactly-once
//! against a broker's transactions): every record of a 4-partition topic is
//! read once through savepoints that rescale 1 to 3 and 3 to 2, and a broker
//! outage; a topic that appears is read; an idle partition does not hold the
//! watermark; bad records are counted or fail the job with their place.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use common::{committed_rows, within};
use headwater::prelude::*;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

type Mock = MockCluster<'static, DefaultProducerContext>;

fn producer(cluster: &Mock) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap()
}

/// Sends `value` to `partition` of `topic`, and waits until it is stored.
fn send_all(producer: &ThreadedProducer<DefaultProducerContext>, records: &[(&str, i32, String)]) {
    for (topic, partition, value) in records {
        let mut record = BaseRecord::<(), str>::to(topic)
            .partition(*partition)
            .payload(value.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn event_schema() -> std::sync::Arc<Schema> {
    std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Int64, true),
    ]))
}

/// Events `from..to`, partition `id % 4`.
fn events(from: i64, to: i64) -> Vec<(&'static str, i32, String)> {
    (from..to)
        .map(|id| {
            (
                "events",
                (id % 4) as i32,
                format!(r#"{{"id":{id},"amount":{}}}"#, id % 97),
            )
        })
        .collect()
}

/// Waits until the sink under `dir` has committed `rows` rows.
async fn committed_at_least(dir: &Path, rows: usize) {
    let started = Instant::now();
    while committed_rows(dir).len() < rows {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {rows} rows committed",
            committed_rows(dir).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(rows: &[String]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_read_once_through_rescales_and_a_broker_outage() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 4, 1).unwrap();
    let producer = producer(&cluster);
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let source = |bounded: bool| {
        let source = KafkaSource::json(
            &servers,
            Topics::Named(vec!["events".into()]),
            event_schema(),
        )
        .with_batch_size(500);
        if bounded {
            source.bounded(BoundedMode::LatestOffset)
        } else {
            source
        }
    };
    let run = |p: usize, bounded: bool, savepoint: Option<&Path>, checkpoints: &str| {
        let mut env = StreamEnvironment::new()
            .with_parallelism(p)
            .with_checkpoints(dir.path().join(checkpoints), Duration::from_millis(200));
        if let Some(savepoint) = savepoint {
            env = env.from_savepoint(savepoint);
        }
        env.source(source(bounded))
            .sink(FileSink::json(&output))
            .unwrap();
        env.execute().unwrap()
    };

    // At parallelism 1: the first 15,000 records, then a savepoint.
    send_all(&producer, &events(0, 15_000));
    let job = run(1, false, None, "c1");
    committed_at_least(&output, 15_000).await;
    let first = within(30, job.stop_with_savepoint()).await.unwrap();
    within(30, job.wait()).await.unwrap();

    // At 3, from the savepoint: 15,000 more, with the broker down a while.
    send_all(&producer, &events(15_000, 25_000));
    let job = run(3, false, Some(&first), "c3");
    committed_at_least(&output, 20_000).await;
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.broker_up(1).unwrap();
    send_all(&producer, &events(25_000, 30_000));
    committed_at_least(&output, 30_000).await;
    let second = within(30, job.stop_with_savepoint()).await.unwrap();
    within(30, job.wait()).await.unwrap();

    // At 2, bounded by the offsets at its start: the rest, and it ends.
    send_all(&producer, &events(30_000, 40_000));
    let job = run(2, true, Some(&second), "c2");
    within(60, job.wait()).await.unwrap();

    let got = ids(&committed_rows(&output));
    assert_eq!(got.len(), 40_000, "records lost or read twice");
    assert!(got == (0..40_000).collect::<Vec<_>>(), "records differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_appears_is_read_and_bad_records_are_counted() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("metrics-a", 2, 1).unwrap();
    let producer = producer(&cluster);
    let mut records: Vec<(&str, i32, String)> = (0..100)
        .map(|id| ("metrics-a", id % 2, format!(r#"{{"id":{id},"amount":1}}"#)))
        .collect();
    records.push(("metrics-a", 0, "not json".into()));
    records.push(("metrics-a", 1, r#"{"id":"not a number"}"#.into()));
    send_all(&producer, &records);

    let env = StreamEnvironment::new().with_parallelism(2);
    let source = KafkaSource::json(
        &cluster.bootstrap_servers(),
        Topics::Pattern(regex::Regex::new("metrics-.*").unwrap()),
        event_schema(),
    )
    .with_discovery_interval(Some(Duration::from_millis(300)))
    .on_decode_error(DecodeErrorPolicy::Skip);
    let mut rx = env.source(source).collect().unwrap();
    let job = env.execute().unwrap();
    let mut seen: Vec<i64> = Vec::new();
    let mut created = false;
    let started = Instant::now();
    while seen.len() < 150 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of 150 rows",
            seen.len()
        );
        let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
        else {
            if seen.len() >= 100 && !created {
                // A new topic that matches the pattern, while the job runs.
                created = true;
                cluster.create_topic("metrics-b", 3, 1).unwrap();
                let more: Vec<(&str, i32, String)> = (100..150)
                    .map(|id| ("metrics-b", id % 3, format!(r#"{{"id":{id},"amount":2}}"#)))
                    .collect();
                send_all(&producer, &more);
            }
            continue;
        };
        seen.extend(batch.column(0).as_primitive::<Int64Type>().values());
    }
    seen.sort_unstable();
    assert!(
        seen == (0..150).collect::<Vec<_>>(),
        "rows differ: {seen:?}"
    );
    let errors: u64 = job
        .metrics()
        .operators
        .values()
        .filter_map(|o| o.counters.get("decode_errors"))
        .sum();
    job.cancel();
    let _ = within(30, job.wait()).await;
    assert_eq!(errors, 2, "the two bad records are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_hold_the_watermark() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("clicks", 2, 1).unwrap();
    let producer = producer(&cluster);
    // Partition 1 sends one click at 1 s and goes quiet; partition 0 goes on
    // to 25 s, then keeps sending clicks far later. Only if partition 1 stops
    // holding the watermark do the windows before 20 s close.
    let mut records = vec![("clicks", 1, r#"{"user":"b","ts":1000}"#.to_string())];
    records.extend((1..=25).map(|s| ("clicks", 0, format!(r#"{{"user":"a","ts":{}}}"#, s * 1000))));
    send_all(&producer, &records);
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let background = {
        let sending = sending.clone();
        std::thread::spawn(move || {
            let mut ts = 100_000;
            while sending.load(std::sync::atomic::Ordering::Relaxed) {
                send_all(
                    &producer,
                    &[("clicks", 0, format!(r#"{{"user":"c","ts":{ts}}}"#))],
                );
                ts += 1000;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let env = StreamEnvironment::new().with_parallelism(1);
    let source = KafkaSource::json(
        &cluster.bootstrap_servers(),
        Topics::Named(vec!["clicks".into()]),
        schema,
    )
    .with_event_time(EventTimeSpec::column("ts", Duration::ZERO))
    .with_idle_timeout(Duration::from_millis(500));
    let mut rx = env
        .source(source)
        .key_by(&["user"])
        .unwrap()
        .window(Tumbling::of(Duration::from_secs(10)))
        .unwrap()
        .aggregate(vec![count(lit(1)).alias("clicks")])
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let mut windows: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let started = Instant::now();
    let wanted = [("a", 0), ("a", 10_000), ("b", 0)];
    while !wanted
        .iter()
        .all(|(user, start)| windows.contains_key(&(user.to_string(), *start)))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "windows closed so far: {windows:?}"
        );
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            collect_windows(&batch, &mut windows);
        }
    }
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    background.join().unwrap();
    job.cancel();
    let _ = within(30, job.wait()).await;
    windows.retain(|(user, _), _| user != "c");
    windows.remove(&("a".to_string(), 20_000));
    let expected: BTreeMap<(String, i64), i64> = [
        (("a".to_string(), 0), 9),
        (("a".to_string(), 10_000), 10),
        (("b".to_string(), 0), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(windows, expected);
}

fn collect_windows(batch: &RecordBatch, windows: &mut BTreeMap<(String, i64), i64>) {
    let schema = batch.schema();
    let user = batch
        .column(schema.index_of("user").unwrap())
        .as_string::<i32>();
    let start = arrow::compute::cast(
        batch.column(schema.index_of("window_start").unwrap()),
        &DataType::Int64,
    )
    .unwrap();
    let start = start.as_primitive::<Int64Type>();
    let clicks = batch
        .column(schema.index_of("clicks").unwrap())
        .as_primitive::<Int64Type>();
    for i in 0..batch.num_rows() {
        windows.insert((user.value(i).to_string(), start.value(i)), clicks.value(i));
    }
}

fn headwater(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the headwater binary runs")
}

/// A Flink user's DDL over a Kafka topic, through the binary: per-window
/// revenue equals a plain Rust reference over the same records; a bad record
/// under the `fail` policy names its topic, partition and offset.
#[test]
fn sql_reads_a_bounded_topic_in_windows_like_flink_ddl() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let producer = producer(&cluster);
    let mut reference: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let records: Vec<(&str, i32, String)> = (0..6_000i64)
        .map(|i| {
            let ts = 1_700_000_000_000 + i * 37;
            let amount = (i * 7919) % 500;
            let window = ts - ts.rem_euclid(60_000);
            let r = reference.entry(window).or_default();
            r.0 += 1;
            r.1 += amount;
            (
                "orders",
                (i % 3) as i32,
                format!(r#"{{"order_id":{i},"amount":{amount},"ts":{ts}}}"#),
            )
        })
        .collect();
    send_all(&producer, &records);
    let dir = tempfile::tempdir().unwrap();
    let table = |extra: &str| {
        format!(
            "CREATE TABLE orders (order_id BIGINT, amount BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'orders',
               'properties.bootstrap.servers' = '{}', 'properties.group.id' = 'revenue',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
               'format' = 'json'{extra});",
            cluster.bootstrap_servers()
        )
    };
    std::fs::write(
        dir.path().join("job.sql"),
        format!(
            "{}
             CREATE TABLE out (window_start TIMESTAMP(3), orders BIGINT, revenue BIGINT)
               WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
             INSERT INTO out
             SELECT window_start, count(*) AS orders, sum(amount) AS revenue
             FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end;",
            table("")
        ),
    )
    .unwrap();
    let output = headwater(&["run", "job.sql", "--parallelism", "2"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut got: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for row in committed_rows(&dir.path().join("out")) {
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        let start = v["window_start"].as_str().unwrap();
        let start = start
            .parse::<chrono::NaiveDateTime>()
            .unwrap()
            .and_utc()
            .timestamp_millis();
        got.insert(
            start,
            (
                v["orders"].as_i64().unwrap(),
                v["revenue"].as_i64().unwrap(),
            ),
        );
    }
    assert_eq!(got, reference);

    // A bad record fails the job, and says where it is.
    send_all(
        &producer,
        &[("orders", 1, "{\"order_id\": oops}".to_string())],
    );
    std::fs::write(
        dir.path().join("bad.sql"),
        format!(
            "{}
             CREATE TABLE sink (order_id BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT order_id FROM orders;",
            table("")
        ),
    )
    .unwrap();
    let output = headwater(&["run", "bad.sql"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("topic orders, partition 1, offset 2000"),
        "{stderr}"
    );

    // A missing option is named, with its place.
    std::fs::write(
        dir.path().join("missing.sql"),
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json');
         CREATE TABLE s (a BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO s SELECT a FROM t;",
    )
    .unwrap();
    let output = headwater(&["run", "missing.sql"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("properties.bootstrap.servers"), "{stderr}");
}

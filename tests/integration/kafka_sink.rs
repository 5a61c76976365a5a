//! The Kafka sink against librdkafka's mock cluster, through the binary: a
//! SQL job writes every row once (at least once, and with no failure,
//! exactly the rows), keyed records land on the partition Kafka's Java
//! partitioner picks (murmur2 of the key, as Flink's would), and `fixed`
//! sends each subtask's rows to one partition.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Kafka's `Utils.murmur2`, as its Java clients partition keys.
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Every record of `topic`: (partition, key, value).
fn read_topic(
    servers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    while out.len() < expected && started.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.partition(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    // Nothing more comes.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            panic!(
                "an extra record at partition {} offset {}",
                m.partition(),
                m.offset()
            );
        }
    }
    out
}

fn run(dir: &Path, script: &str, parallelism: &str) {
    std::fs::write(dir.join("job.sql"), script).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["run", "job.sql", "--parallelism", parallelism])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_sql_job_writes_keyed_rows_where_kafka_would_put_them() {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic("bids-out", 4, 1).unwrap();
    cluster.create_topic("fixed-out", 3, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("bids.jsonl")).unwrap();
    for i in 0..3000 {
        writeln!(
            file,
            r#"{{"bid":{i},"bidder":"u{}","price":{}}}"#,
            i % 37,
            i % 101
        )
        .unwrap();
    }
    drop(file);
    let source = "CREATE TABLE bids (bid BIGINT, bidder VARCHAR, price BIGINT)
        WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');";
    run(
        dir.path(),
        &format!(
            "{source}
             CREATE TABLE out (bid BIGINT, bidder VARCHAR, price BIGINT) WITH (
               'connector' = 'kafka', 'topic' = 'bids-out', 'properties.bootstrap.servers' = '{servers}',
               'format' = 'json', 'key.fields' = 'bidder', 'sink.delivery-guarantee' = 'at-least-once');
             INSERT INTO out SELECT bid, bidder, price FROM bids;"
        ),
        "2",
    );
    let records = read_topic(&servers, "bids-out", 4, 3000);
    let mut bids: Vec<i64> = Vec::new();
    for (partition, key, value) in &records {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        bids.push(v["bid"].as_i64().unwrap());
        assert_eq!(
            key,
            &format!(r#"{{"bidder":"{}"}}"#, v["bidder"].as_str().unwrap())
        );
        let expected = (murmur2(key.as_bytes()) & 0x7fff_ffff) % 4;
        assert_eq!(*partition, expected, "key {key} on partition {partition}");
    }
    bids.sort_unstable();
    assert!(bids == (0..3000).collect::<Vec<_>>(), "each row once");

    // `fixed`: subtask i writes partition i % 3 only.
    run(
        dir.path(),
        &format!(
            "{source}
             CREATE TABLE out (bid BIGINT, price BIGINT) WITH (
               'connector' = 'kafka', 'topic' = 'fixed-out', 'properties.bootstrap.servers' = '{servers}',
               'format' = 'csv', 'sink.partitioner' = 'fixed');
             INSERT INTO out SELECT bid, price FROM bids;"
        ),
        "2",
    );
    let records = read_topic(&servers, "fixed-out", 3, 3000);
    let per_partition: BTreeMap<i32, usize> =
        records.iter().fold(BTreeMap::new(), |mut m, (p, _, _)| {
            *m.entry(*p).or_default() += 1;
            m
        });
    assert_eq!(per_partition.values().sum::<usize>(), 3000);
    assert!(!per_partition.contains_key(&2), "{per_partition:?}");
    let mut bids: Vec<i64> = records
        .iter()
        .map(|(_, _, v)| v.split(',').next().unwrap().parse().unwrap())
        .collect();
    bids.sort_unstable();
    assert!(bids == (0..3000).collect::<Vec<_>>());

    // Exactly-once needs a transactional-id prefix, and checkpoints: each
    // missing one is named.
    let run = |script: &str, options: &str| {
        std::fs::write(
            dir.path().join("eo.sql"),
            format!(
                "{source}
                 CREATE TABLE out (bid BIGINT) WITH ('connector' = 'kafka', 'topic' = 'x',
                   'properties.bootstrap.servers' = '{servers}', 'format' = 'json',
                   'sink.delivery-guarantee' = 'exactly-once'{options});
                 INSERT INTO out SELECT bid FROM bids;"
            ),
        )
        .unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
            .args(["run", script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run("eo.sql", "");
    assert!(
        stderr.contains("'sink.transactional-id-prefix'"),
        "{stderr}"
    );
    assert!(stderr.contains("eo.sql:"), "the error says where: {stderr}");
    let stderr = run("eo.sql", ", 'sink.transactional-id-prefix' = 'p'");
    assert!(stderr.contains("--checkpoint-dir"), "{stderr}");
}

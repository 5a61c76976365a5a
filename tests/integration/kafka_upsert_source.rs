//! Reading Kafka as a table, against a real broker (noida-db, started by
//! the test):
//! - an upsert-kafka table (a compacted topic of account balances, keyed by
//!   `(id, region)`, with updates, tombstones and bad values) filtered into an
//!   exactly-once upsert-kafka sink, while the job is SIGKILLed and restarted
//!   at other parallelisms: the sink's latest row per key is a plain Rust
//!   reference's (the latest value of each key, kept if it passes the filter);
//! - a kafka table with the key's columns (`key.fields`) and metadata columns
//!   (`partition`, `offset`, `timestamp`, `headers`, `key`): every record's
//!   row holds what the producer wrote.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{self, Seen};
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const RECORDS: i64 = 12_000;

/// The records' timestamps start here: now, since a broker drops records
/// older than its retention.
fn base_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    })
}
const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// A job process, killed when the test ends (passed or not).
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, parallelism: usize) -> Job {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("job.log"))
        .unwrap();
    Job(Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["run", "job.sql", "--checkpoint-dir", "checkpoints"])
        .args(["--checkpoint-interval", "300ms"])
        .args(["--parallelism", &parallelism.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap())
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.log")).unwrap_or_default()
}

/// What record `i` does to its key.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Balance(i64, String),
    Tombstone,
    Bad,
}

/// Record `i`: its key `(id, region)`, partition and value. A key's records
/// all go to one partition, in order.
fn record(i: i64) -> ((i64, &'static str), i32, Value) {
    let id = (i * 7) % 250;
    let region = (i * 13) % 3;
    let partition = ((id + region) % 3) as i32;
    let value = if i % 11 == 3 {
        Value::Tombstone
    } else if i % 503 == 7 {
        Value::Bad
    } else {
        Value::Balance((i * 7919) % 1000, format!("n{i}"))
    };
    ((id, REGIONS[region as usize]), partition, value)
}

fn key_json((id, region): (i64, &str)) -> String {
    format!(r#"{{"id":{id},"region":"{region}"}}"#)
}

/// Writes the records over about six seconds, each with its index in a
/// `trace` header and a timestamp of its own.
fn write_input(bootstrap: String) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(200) {
            for &i in chunk {
                let (key, partition, value) = record(i);
                let key = key_json(key);
                let trace = i.to_string();
                let payload = match &value {
                    Value::Balance(balance, name) => {
                        Some(format!(r#"{{"balance":{balance},"name":"{name}"}}"#))
                    }
                    Value::Tombstone => None,
                    Value::Bad => Some(format!("not json {i}")),
                };
                loop {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: "trace",
                        value: Some(trace.as_bytes()),
                    });
                    let mut record = BaseRecord::<str, str>::to("accounts")
                        .partition(partition)
                        .key(key.as_str())
                        .timestamp(base_ms() + i)
                        .headers(headers);
                    if let Some(payload) = &payload {
                        record = record.payload(payload.as_str());
                    }
                    match producer.send(record) {
                        Ok(()) => break,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    })
}

/// The latest balance and name per key, of keys whose latest value passes
/// `balance >= 500`.
fn reference() -> BTreeMap<(i64, String), (i64, String)> {
    let mut latest: BTreeMap<(i64, String), Option<(i64, String)>> = BTreeMap::new();
    for i in 0..RECORDS {
        let ((id, region), _, value) = record(i);
        match value {
            Value::Balance(balance, name) => {
                latest.insert((id, region.to_string()), Some((balance, name)));
            }
            Value::Tombstone => {
                latest.insert((id, region.to_string()), None);
            }
            Value::Bad => {}
        }
    }
    latest
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .filter(|(_, (balance, _))| *balance >= 500)
        .collect()
}

/// The latest row per key of the upsert topic, without the deleted ones.
fn latest(seen: &[Seen]) -> BTreeMap<(i64, String), (i64, String)> {
    let mut latest = BTreeMap::new();
    for r in seen {
        let key: serde_json::Value = serde_json::from_slice(r.key.as_ref().unwrap()).unwrap();
        let id = key["id"].as_i64().unwrap();
        let region = key["region"].as_str().unwrap().to_string();
        let value = r.value.as_ref().map(|v| {
            let v: serde_json::Value = serde_json::from_slice(v).unwrap();
            (
                v["balance"].as_i64().unwrap(),
                v["name"].as_str().unwrap().to_string(),
            )
        });
        latest.insert((id, region), value);
    }
    latest
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_topic_is_its_latest_row_per_key_through_sigkills_and_rescales() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    broker::create_topics(&bootstrap, &[("accounts", 3), ("rich", 2)]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        format!(
            "CREATE TABLE accounts (id BIGINT, region VARCHAR, balance BIGINT, name VARCHAR,
               PRIMARY KEY (id, region) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'accounts',
               'properties.bootstrap.servers' = '{bootstrap}',
               'key.format' = 'json', 'value.format' = 'json',
               'value.fields-include' = 'EXCEPT_KEY', 'decode-error' = 'skip');
             CREATE TABLE rich (id BIGINT, region VARCHAR, balance BIGINT, name VARCHAR,
               PRIMARY KEY (id, region) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'rich',
               'properties.bootstrap.servers' = '{bootstrap}',
               'key.format' = 'json', 'value.format' = 'json',
               'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = 'rich-test');
             INSERT INTO rich SELECT id, region, balance, name FROM accounts WHERE balance >= 500;"
        ),
    )
    .unwrap();
    let expected = reference();
    assert!(expected.len() > 100, "the reference keeps too few keys");
    let writer = write_input(bootstrap.clone());

    // SIGKILLs at random moments, each restart at another parallelism.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut job = start(dir.path(), 2);
    for parallelism in [3, 1, 3, 2] {
        std::thread::sleep(Duration::from_millis(rng.random_range(700..2_000)));
        job.0.kill().unwrap();
        job.0.wait().unwrap();
        job = start(dir.path(), parallelism);
    }
    writer.join().unwrap();

    let started = Instant::now();
    loop {
        let seen = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "rich"));
        if latest(&seen) == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "after 120 s the sink holds {} keys, the reference {}; the job's log:\n{}",
            latest(&seen).len(),
            expected.len(),
            log_of(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fields_and_metadata_columns_hold_what_the_producer_wrote() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    broker::create_topics(&bootstrap, &[("accounts", 3), ("described", 1)]).await;
    write_input(bootstrap.clone()).join().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        format!(
            "CREATE TABLE accounts (
               id BIGINT, region VARCHAR, balance BIGINT, name VARCHAR,
               part INT METADATA FROM 'partition' VIRTUAL,
               off BIGINT METADATA FROM 'offset',
               ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
               headers MAP<STRING, BYTES> METADATA,
               raw_key BYTES METADATA FROM 'key',
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'accounts',
               'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
               'key.format' = 'json', 'key.fields' = 'id;region',
               'value.format' = 'json', 'value.fields-include' = 'EXCEPT_KEY',
               'decode-error' = 'skip');
             CREATE TABLE described (id BIGINT, region VARCHAR, balance BIGINT, name VARCHAR,
               part INT, off BIGINT, ms BIGINT, trace VARCHAR, raw_key VARCHAR)
             WITH ('connector' = 'kafka', 'topic' = 'described',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json');
             INSERT INTO described
             SELECT id, region, balance, name, part, off, CAST(ts AS BIGINT),
                    CAST(headers['trace'] AS VARCHAR), CAST(raw_key AS VARCHAR)
             FROM accounts;"
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["run", "job.sql", "--parallelism", "2"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Each partition holds its records in order: offset = place in it.
    let mut offsets = [0i64; 3];
    let mut expected = Vec::new();
    for i in 0..RECORDS {
        let (key, partition, value) = record(i);
        let offset = offsets[partition as usize];
        offsets[partition as usize] += 1;
        if let Value::Balance(balance, name) = value {
            expected.push(serde_json::json!({
                "id": key.0, "region": key.1, "balance": balance, "name": name,
                "part": partition, "off": offset, "ms": base_ms() + i,
                "trace": i.to_string(), "raw_key": key_json(key),
            }));
        }
    }
    let seen = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "described"));
    let mut got: Vec<serde_json::Value> = seen
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap())
        .collect();
    let order = |v: &serde_json::Value| (v["part"].as_i64(), v["off"].as_i64());
    got.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(got.len(), expected.len());
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected);
    }
}

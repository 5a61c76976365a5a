//! Exactly once, end to end, against a real broker (noida-db, started by
//! the test): a SQL job reads a 4-partition topic while it is written,
//! counts and sums per customer in 10-second tumbling windows, and writes
//! the windows with the exactly-once Kafka sink; bad records go to a
//! dead-letter topic. The job is SIGKILLed at random moments, six times,
//! and started again each time at another parallelism. A `read_committed`
//! consumer then sees exactly the rows of a plain Rust reference over the
//! same records, none missing and none twice, and every bad record once in
//! the dead-letter topic. A second job with the same transactional-id prefix
//! fences the first.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{self, Seen};
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const BASE_MS: i64 = 1_700_000_000_000;
const RECORDS: i64 = 40_000;

/// A job process, killed when the test ends (passed or not).
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, script: &str, parallelism: usize, extra: &[&str]) -> Job {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("job.log"))
        .unwrap();
    Job(Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["run", script, "--checkpoint-dir", "checkpoints"])
        .args(["--checkpoint-interval", "300ms"])
        .args(["--parallelism", &parallelism.to_string()])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap())
}

fn is_bad(i: i64) -> bool {
    i % 397 == 5
}

/// Record `i`: its partition, key and value.
fn record(i: i64) -> (i32, String, String) {
    let partition = (i % 4) as i32;
    if is_bad(i) {
        return (partition, format!("bad-{i}"), format!("not json {i}"));
    }
    let customer = format!("c{}", (i * 31) % 7);
    let amount = (i * 7919) % 1000;
    let ts = BASE_MS + i * 10;
    (
        partition,
        customer.clone(),
        format!(r#"{{"customer":"{customer}","amount":{amount},"ts":{ts}}}"#),
    )
}

/// Per (customer, window start): orders and their total.
fn reference() -> BTreeMap<(String, i64), (i64, i64)> {
    let mut windows = BTreeMap::new();
    for i in (0..RECORDS).filter(|&i| !is_bad(i)) {
        let customer = format!("c{}", (i * 31) % 7);
        let ts = BASE_MS + i * 10;
        let w: &mut (i64, i64) = windows
            .entry((customer, ts - ts.rem_euclid(10_000)))
            .or_default();
        w.0 += 1;
        w.1 += (i * 7919) % 1000;
    }
    windows
}

/// Writes the records over about twelve seconds, then one far-future record
/// per partition, which closes every window of the others.
fn write_input(bootstrap: String) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let send = |partition: i32, key: &str, value: &str| loop {
            let record = BaseRecord::to("orders")
                .partition(partition)
                .key(key)
                .payload(value);
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(120) {
            for &i in chunk {
                let (partition, key, value) = record(i);
                send(partition, &key, &value);
            }
            std::thread::sleep(Duration::from_millis(36));
        }
        let end = BASE_MS + 10_000_000;
        for partition in 0..4 {
            send(
                partition,
                "end",
                &format!(r#"{{"customer":"end","amount":0,"ts":{end}}}"#),
            );
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    })
}

/// The job: windows to `revenue`; with `full`, dead letters to
/// `bad-orders` and running totals per customer to the upsert topic `totals`.
fn script(bootstrap: &str, prefix: &str, full: bool) -> String {
    let decode_errors = if full {
        "'decode-error' = 'dlq', 'decode-error.topic' = 'bad-orders'"
    } else {
        "'decode-error' = 'skip'"
    };
    let totals = if full {
        format!(
            "CREATE TABLE totals (customer VARCHAR, orders BIGINT, total BIGINT,
               PRIMARY KEY (customer) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'totals',
               'properties.bootstrap.servers' = '{bootstrap}',
               'key.format' = 'json', 'value.format' = 'json',
               'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = '{prefix}-totals');
             INSERT INTO totals SELECT customer, count(*), sum(amount) FROM orders GROUP BY customer;"
        )
    } else {
        String::new()
    };
    format!(
        "CREATE TABLE orders (customer VARCHAR, amount BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'orders',
           'properties.bootstrap.servers' = '{bootstrap}',
           'scan.startup.mode' = 'earliest-offset', 'format' = 'json',
           {decode_errors});
         CREATE TABLE revenue (customer VARCHAR, window_start TIMESTAMP(3), orders BIGINT, total BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'revenue',
           'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json',
           'key.fields' = 'customer',
           'sink.delivery-guarantee' = 'exactly-once',
           'sink.transactional-id-prefix' = '{prefix}');
         INSERT INTO revenue
         SELECT customer, window_start, count(*), sum(amount)
         FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY customer, window_start, window_end;
         {totals}"
    )
}

/// The latest value per key of an upsert topic: `None` for a tombstone.
fn latest(seen: &[Seen]) -> BTreeMap<String, Option<(i64, i64)>> {
    let mut latest = BTreeMap::new();
    for r in seen {
        let key: serde_json::Value = serde_json::from_slice(r.key.as_ref().unwrap()).unwrap();
        let value = r.value.as_ref().map(|v| {
            let v: serde_json::Value = serde_json::from_slice(v).unwrap();
            assert_eq!(v["customer"], key["customer"], "values hold the key too");
            (v["orders"].as_i64().unwrap(), v["total"].as_i64().unwrap())
        });
        latest.insert(key["customer"].as_str().unwrap().to_string(), value);
    }
    latest
}

/// Per customer over every good record (and the four closing ones): orders and total.
fn reference_totals() -> BTreeMap<String, Option<(i64, i64)>> {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in (0..RECORDS).filter(|&i| !is_bad(i)) {
        let t = totals.entry(format!("c{}", (i * 31) % 7)).or_default();
        t.0 += 1;
        t.1 += (i * 7919) % 1000;
    }
    totals.insert("end".into(), (4, 0));
    totals.into_iter().map(|(k, v)| (k, Some(v))).collect()
}

fn window_rows(seen: &[Seen]) -> Vec<((String, i64), (i64, i64))> {
    let mut rows: Vec<_> = seen
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            let start = v["window_start"]
                .as_str()
                .unwrap()
                .parse::<chrono::NaiveDateTime>()
                .unwrap()
                .and_utc()
                .timestamp_millis();
            let customer = v["customer"].as_str().unwrap().to_string();
            assert_eq!(
                r.key.as_deref(),
                Some(format!(r#"{{"customer":"{customer}"}}"#).as_bytes()),
                "records are keyed by customer"
            );
            (
                (customer, start),
                (v["orders"].as_i64().unwrap(), v["total"].as_i64().unwrap()),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_job_writes_each_window_dead_letter_and_latest_total_once() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    broker::create_topics(
        &bootstrap,
        &[
            ("orders", 4),
            ("revenue", 3),
            ("bad-orders", 2),
            ("totals", 3),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        script(&bootstrap, "eo-test", true),
    )
    .unwrap();
    let expected: Vec<_> = reference().into_iter().collect();
    let expected_totals = reference_totals();
    let writer = write_input(bootstrap.clone());

    // Six SIGKILLs at random moments, each restart at another parallelism
    // (1 to 3, 3 to 2, ...).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let mut job = start(dir.path(), "job.sql", 2, &[]);
    for parallelism in [3, 1, 3, 2, 3, 2] {
        std::thread::sleep(Duration::from_millis(rng.random_range(700..2_500)));
        job.0.kill().unwrap();
        job.0.wait().unwrap();
        job = start(dir.path(), "job.sql", parallelism, &[]);
    }
    writer.join().unwrap();

    // The last run catches up: wait for every window, then a little more
    // for any duplicate to show.
    let started = Instant::now();
    loop {
        let seen = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "revenue"));
        let totals = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "totals"));
        if seen.len() >= expected.len() && latest(&totals) == expected_totals {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {} of {} windows after 180 s, totals {:?}; the job's log:\n{}",
            seen.len(),
            expected.len(),
            latest(&totals),
            log_of(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(job);

    let seen = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "revenue"));
    let got = window_rows(&seen);
    let got_keys: BTreeSet<_> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got_keys.len(), got.len(), "a window was written twice");
    assert_eq!(got, expected, "log:\n{}", log_of(dir.path()));
    // The upsert topic's latest value per key is the reference's, and each
    // key's updates only grow (no update was lost and applied later).
    let totals = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "totals"));
    assert_eq!(latest(&totals), expected_totals);
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for r in &totals {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        let orders = v["orders"].as_i64().unwrap();
        let before = last.insert(r.key.clone().unwrap(), orders).unwrap_or(0);
        assert!(
            orders > before,
            "an update went back: {before} then {orders}"
        );
    }

    // Every bad record reached the dead-letter topic once, as it was.
    let letters = tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "bad-orders"));
    let header = |r: &Seen, name: &str| {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {r:?}"))
    };
    let mut bad: Vec<i64> = letters
        .iter()
        .map(|r| {
            let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
            let i: i64 = value.strip_prefix("not json ").unwrap().parse().unwrap();
            assert_eq!(r.key.as_deref(), Some(format!("bad-{i}").as_bytes()));
            assert_eq!(header(r, "headwater.source.topic"), "orders");
            assert_eq!(header(r, "headwater.source.partition"), (i % 4).to_string());
            // Partition p holds records p, p + 4, ...: record i is at offset i / 4.
            assert_eq!(header(r, "headwater.source.offset"), (i / 4).to_string());
            assert!(!header(r, "headwater.error").is_empty());
            i
        })
        .collect();
    bad.sort_unstable();
    let expected_bad: Vec<i64> = (0..RECORDS).filter(|&i| is_bad(i)).collect();
    assert_eq!(bad, expected_bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_with_the_same_prefix_fences_the_first() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    broker::create_topics(&bootstrap, &[("orders", 4), ("revenue", 1)]).await;
    let writer = write_input(bootstrap.clone());
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    for dir in [&first, &second] {
        std::fs::write(
            dir.path().join("job.sql"),
            script(&bootstrap, "shared", false),
        )
        .unwrap();
    }
    let mut a = start(first.path(), "job.sql", 1, &["--restart-attempts", "0"]);
    // Wait until the first job has committed some windows.
    let started = Instant::now();
    while tokio::task::block_in_place(|| broker::read_committed(&bootstrap, "revenue")).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first job committed nothing: {}",
            log_of(first.path())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _b = start(second.path(), "job.sql", 1, &["--restart-attempts", "0"]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = a.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first job still runs beside the second: {}",
            log_of(first.path())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success());
    let log = log_of(first.path());
    assert!(log.contains("fenced"), "{log}");
    assert!(log.contains("shared-0"), "{log}");
    writer.join().unwrap();
}

/// Drops what it is given: a sink has no output.
struct Discard;

#[async_trait::async_trait]
impl headwater::runtime::Collector for Discard {
    async fn collect(
        &mut self,
        _: arrow::array::RecordBatch,
    ) -> Result<(), headwater::runtime::BoxError> {
        Ok(())
    }
    async fn collect_side(
        &mut self,
        _: &str,
        _: arrow::array::RecordBatch,
    ) -> Result<(), headwater::runtime::BoxError> {
        Ok(())
    }
}

/// One subtask of an exactly-once sink to `ids`, driven by hand as the
/// runtime drives it.
struct Subtask {
    operator: Box<dyn headwater::runtime::Operator>,
    ctx: headwater::runtime::OperatorContext,
}

impl Subtask {
    async fn open(bootstrap: &str, index: usize, parallelism: usize) -> Subtask {
        use headwater::operators::sinks::SinkSpec;
        use headwater::prelude::KafkaSink;
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
        ]));
        let schema = headwater::runtime::time::schema_with_event_time(&schema);
        let factory = KafkaSink::json(bootstrap, "ids")
            .exactly_once("by-hand")
            .factory(&schema)
            .unwrap();
        let info = headwater::runtime::SubtaskInfo::new("sink", index, parallelism, 128);
        let mut ctx = headwater::runtime::OperatorContext::standalone(info.clone());
        ctx.checkpointing = true;
        let mut operator = factory(&info).unwrap();
        operator.open(&mut ctx).await.unwrap();
        Subtask { operator, ctx }
    }

    async fn write(&mut self, ids: std::ops::Range<i64>) {
        let batch = arrow::array::RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
            ])),
            vec![std::sync::Arc::new(
                arrow::array::Int64Array::from_iter_values(ids.clone()),
            )],
        )
        .unwrap();
        let times = std::sync::Arc::new(arrow::array::TimestampMillisecondArray::from_iter_values(
            ids.map(|_| 0),
        ));
        let batch = headwater::runtime::time::with_event_time(&batch, times).unwrap();
        self.operator
            .process_batch(batch, &mut self.ctx, &mut Discard)
            .await
            .unwrap();
    }

    async fn checkpoint(&mut self, id: u64) -> Vec<u8> {
        self.operator
            .snapshot_state(id, &mut self.ctx)
            .await
            .unwrap()
            .unwrap()
    }

    async fn complete(&mut self, id: u64) {
        self.operator
            .notify_checkpoint_complete(id, &mut self.ctx)
            .await
            .unwrap();
    }

    /// Restores the states of old subtasks `(index, state)`, as the runtime
    /// gives them: its own alone, or every old one after a rescale.
    async fn restore(&mut self, old_parallelism: usize, states: Vec<(usize, Vec<u8>)>) {
        use headwater::runtime::checkpoint::{Restored, SubtaskState};
        use headwater::runtime::key_groups::KeyGroupRange;
        let restored = Restored {
            checkpoint: 2,
            old_parallelism,
            rescaled: old_parallelism != self.ctx.subtask.parallelism,
            states: states
                .into_iter()
                .map(|(index, bytes)| SubtaskState {
                    index,
                    key_groups: KeyGroupRange::for_subtask(
                        128,
                        old_parallelism as u32,
                        index as u32,
                    ),
                    watermark: None,
                    bytes: Some(bytes),
                })
                .collect(),
        };
        self.operator
            .restore_state(restored, &mut self.ctx)
            .await
            .unwrap();
    }
}

fn committed_ids(bootstrap: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = broker::read_committed(bootstrap, "ids")
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            v["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The crash the SIGKILL test rarely hits, made on purpose: after a
/// checkpoint completes and before its transaction commits. The restore sends
/// the checkpoint's records again, once: a second restore of the same
/// checkpoint (a crash after the first) sends nothing, as does a restore of a
/// checkpoint whose transaction did commit. A rescale (2 to 1) takes over the
/// old subtask's transaction too. Records after the checkpoint are never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_checkpoint_and_commit_loses_nothing_and_repeats_nothing() {
    let broker = broker::start();
    let bootstrap = broker.bootstrap.clone();
    broker::create_topics(&bootstrap, &[("ids", 2)]).await;
    let read = |b: &str| {
        let b = b.to_string();
        tokio::task::block_in_place(move || committed_ids(&b))
    };

    // Checkpoint 1 commits; checkpoint 2 completes, then the crash.
    let mut a = Subtask::open(&bootstrap, 0, 2).await;
    let mut b = Subtask::open(&bootstrap, 1, 2).await;
    a.write(0..100).await;
    b.write(1000..1100).await;
    a.checkpoint(1).await;
    b.checkpoint(1).await;
    a.complete(1).await;
    b.complete(1).await;
    a.write(100..250).await;
    b.write(1100..1200).await;
    let state_a = a.checkpoint(2).await;
    let state_b = b.checkpoint(2).await;
    // After the barrier: these belong to checkpoint 3, which never happens.
    a.write(250..300).await;
    drop((a, b));
    let wanted: Vec<i64> = (0..100).chain(1000..1100).collect();
    assert_eq!(read(&bootstrap), wanted, "only checkpoint 1 is committed");

    // Restored at parallelism 1: subtask 0 commits both old subtasks' records.
    let mut c = Subtask::open(&bootstrap, 0, 1).await;
    c.restore(2, vec![(0, state_a.clone()), (1, state_b.clone())])
        .await;
    let wanted: Vec<i64> = (0..250).chain(1000..1200).collect();
    assert_eq!(read(&bootstrap), wanted);
    assert_eq!(
        c.ctx.metrics.counter("records_recovered").get(),
        250,
        "both old subtasks' pending records"
    );
    drop(c);

    // The same checkpoint restored again (a crash right after the first
    // restore), at parallelism 2: nothing is sent twice.
    let mut d = Subtask::open(&bootstrap, 0, 2).await;
    let mut e = Subtask::open(&bootstrap, 1, 2).await;
    d.restore(2, vec![(0, state_a)]).await;
    e.restore(2, vec![(1, state_b)]).await;
    assert_eq!(read(&bootstrap), wanted);
    // And the job goes on.
    d.write(300..310).await;
    let state_d = d.checkpoint(3).await;
    d.complete(3).await;
    e.checkpoint(3).await;
    e.complete(3).await;
    let wanted: Vec<i64> = (0..250).chain(300..310).chain(1000..1200).collect();
    assert_eq!(read(&bootstrap), wanted);
    drop((d, e));

    // A restore of a checkpoint that did commit sends nothing again.
    let mut f = Subtask::open(&bootstrap, 0, 2).await;
    f.restore(2, vec![(0, state_d)]).await;
    assert_eq!(read(&bootstrap), wanted);
}

//! A job that keeps views is SIGKILLed while it checkpoints, and started
//! again over the same checkpoint directory. A reader polls the views the
//! whole time (across the restart): three views of the same events always
//! agree, and the count it sees never goes backwards (it never saw a row
//! that the crash rolled back). At the end the views equal a plain-Rust
//! reference over the same events, duplicates dropped by event id.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = "
CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT, amount DOUBLE, items INT,
  event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'events.jsonl', 'format' = 'json',
        'rows-per-second' = '1500');

CREATE MATERIALIZED VIEW per_customer AS
SELECT customer_id, count(*) AS events, count(DISTINCT order_id) AS orders, max(amount) AS highest
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn FROM orders)
WHERE rn = 1
GROUP BY customer_id;

-- Keyed by the deduplication's key: one row per event.
CREATE MATERIALIZED VIEW events AS
SELECT event_id, customer_id
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn FROM orders)
WHERE rn = 1;

CREATE MATERIALIZED VIEW total AS
SELECT count(*) AS events
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn FROM orders)
WHERE rn = 1;
";

/// A job process, killed when the test ends (passed or not).
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the job; returns it and its Postgres address.
fn start(dir: &Path) -> (Job, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "run",
            "job.sql",
            "--parallelism",
            "2",
            "--pg-port",
            "0",
            "--http-port",
            "0",
            "--checkpoint-dir",
            "checkpoints",
            "--checkpoint-interval",
            "200ms",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the address").unwrap();
        if let Some(a) = line.strip_prefix("postgres: ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Job(child), addr)
}

async fn connect(addr: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("headwater")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The three views' counts, as of one checkpoint (0 before the first).
async fn counts(client: &tokio_postgres::Client) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT CAST(coalesce((SELECT sum(events) FROM per_customer), 0) AS BIGINT), \
                    coalesce((SELECT max(events) FROM total), 0), \
                    (SELECT count(*) FROM events)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Per customer: events, orders and the top amount, first deliveries only.
fn reference(events: &Path) -> BTreeMap<i64, (i64, i64, f64)> {
    let mut seen = HashSet::new();
    let mut per: BTreeMap<i64, (i64, BTreeSet<i64>, f64)> = BTreeMap::new();
    for line in std::fs::read_to_string(events).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if !seen.insert(v["event_id"].as_str().unwrap().to_string()) {
            continue;
        }
        let e =
            per.entry(v["customer_id"].as_i64().unwrap())
                .or_insert((0, BTreeSet::new(), f64::MIN));
        e.0 += 1;
        e.1.insert(v["order_id"].as_i64().unwrap());
        e.2 = e.2.max(v["amount"].as_f64().unwrap());
    }
    per.into_iter()
        .map(|(c, (n, orders, top))| (c, (n, orders.len() as i64, top)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_a_rolled_back_row_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.sql"), SCRIPT).unwrap();
    let events = dir.path().join("events.jsonl");
    let generated = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["generate", "orders", "--orders", "3000", "--seed", "11"])
        .args(["--duplicate-rate", "0.05", "--output"])
        .arg(&events)
        .status()
        .unwrap();
    assert!(generated.success());
    let expected = reference(&events);
    let total: i64 = expected.values().map(|e| e.0).sum();
    let delivered = std::fs::read_to_string(&events).unwrap().lines().count() as i64;
    assert!(
        delivered > total,
        "the input has duplicates: {delivered} deliveries of {total} events"
    );

    let (mut job, addr) = start(dir.path());
    let mut client = connect(&addr).await;
    let mut last = 0i64;
    let mut reads = 0usize;
    let mut read = |(a, b, c): (i64, i64, i64), last: &mut i64| {
        assert_eq!((a, a), (b, c), "the views disagree at one read");
        assert!(a >= *last, "the count went back from {last} to {a}");
        *last = a;
        reads += 1;
    };
    // Read until a good part of the input is visible, then kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    while last < total / 3 {
        assert!(Instant::now() < deadline, "the views never grew: {last}");
        read(counts(&client).await, &mut last);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job.0.kill().unwrap(); // SIGKILL
    job.0.wait().unwrap();
    let before_crash = last;
    assert!(
        before_crash < total,
        "killed after the input ended; pace it slower"
    );

    let (_job, addr) = start(dir.path());
    client = connect(&addr).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while last < total {
        assert!(
            Instant::now() < deadline,
            "the views stopped at {last} of {total}"
        );
        read(counts(&client).await, &mut last);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, total, "every event once, duplicates dropped");

    let rows = client
        .query(
            "SELECT customer_id, events, orders, highest FROM per_customer ORDER BY customer_id",
            &[],
        )
        .await
        .unwrap();
    let got: BTreeMap<i64, (i64, i64, f64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    assert_eq!(got, expected);
    eprintln!("{reads} reads; killed at {before_crash} of {total} events");
}

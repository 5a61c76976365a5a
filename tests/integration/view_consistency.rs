//! Views are read as of one completed checkpoint: while a job runs, three
//! views of the same events (per customer, per event type, and the total)
//! always add up to the same count, and that count never goes backwards.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = "
CREATE TABLE orders (event_id VARCHAR, event_type VARCHAR, customer_id BIGINT, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND)
WITH ('connector' = 'orders', 'events-per-second' = '20000', 'duplicate-rate' = '0');

CREATE MATERIALIZED VIEW per_customer AS
SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id;

CREATE MATERIALIZED VIEW per_type AS
SELECT event_type, count(*) AS n FROM orders GROUP BY event_type;

CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n FROM orders;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_agree_at_every_read_and_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.sql"), SCRIPT).unwrap();
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
            "--checkpoint-interval",
            "100ms",
        ])
        .current_dir(dir.path())
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
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("headwater")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let query = "SELECT (SELECT sum(n) FROM per_customer), (SELECT sum(n) FROM per_type), (SELECT max(n) FROM total)";
    let mut last = 0i64;
    let mut distinct = 0;
    for _ in 0..300 {
        let row = client.query_one(query, &[]).await.unwrap();
        let (a, b, c): (Option<i64>, Option<i64>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        let (a, b, c) = (a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0));
        assert!(
            a == b && b == c,
            "views of one checkpoint disagree: {a}, {b}, {c}"
        );
        assert!(a >= last, "the count went back from {last} to {a}");
        if a > last {
            distinct += 1;
        }
        last = a;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        distinct >= 5,
        "the views moved on only {distinct} times while the job ran"
    );
}

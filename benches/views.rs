//! Reading materialized views while a job keeps them, through the Postgres
//! wire protocol (tokio-postgres, a prepared statement), in one process:
//!
//! - point lookups by key while the job ingests the `orders` generator as
//!   fast as it can: p50 / p99 latency, and the ingest rate meanwhile;
//! - a full scan of a view of many rows: rows/s;
//! - the delay from an event entering the job (counted at its source) to a
//!   reader seeing it: about the checkpoint interval.
//!
//! Run with `cargo bench --bench views`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater::server::engine::Engine;
use headwater::server::jobs::{JobSpec, Jobs};
use headwater::server::query::QueryLimits;
use headwater::sql::views::ViewQueries;

const SCRIPT: &str = "
CREATE TABLE orders (event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT,
  amount DOUBLE, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND)
WITH ('connector' = 'orders', 'duplicate-rate' = '0');

CREATE MATERIALIZED VIEW per_customer AS
SELECT customer_id, count(*) AS events, sum(amount) AS amount FROM orders GROUP BY customer_id;

CREATE MATERIALIZED VIEW per_order AS
SELECT order_id, count(*) AS events, max(event_time) AS updated FROM orders GROUP BY order_id;

CREATE MATERIALIZED VIEW total AS SELECT count(*) AS events FROM orders;
";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(interval: Duration) {
    let views = headwater::operators::view::ViewRegistry::new();
    let options = headwater::sql::SqlOptions {
        name: "bench-views".into(),
        parallelism: 1,
        views: views.clone(),
        ..Default::default()
    };
    let job = headwater::sql::plan_script(SCRIPT, &options).await.unwrap();
    let spec = JobSpec::of(&job.graph, SCRIPT, job.views.clone());
    let checkpoints = tempfile::tempdir().unwrap();
    let config = headwater::runtime::JobConfig {
        default_parallelism: 1,
        checkpoint: Some(headwater::runtime::checkpoint::CheckpointConfig::new(
            checkpoints.path(),
            interval,
        )),
        ..Default::default()
    };
    let jobs = Arc::new(Jobs::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let queries = ViewQueries::new(views)
        .with_setup(Arc::new(headwater::server::query::add_postgres_catalog));
    let engine = Engine::read_only(queries, jobs.clone(), QueryLimits::default());
    tokio::spawn(headwater::server::pg::serve(listener, engine, None));
    let handle = headwater::runtime::start(job.graph, config).unwrap();
    let source = spec.sources[0].clone();
    let read = |h: &headwater::runtime::JobHandle| h.metrics().operator(&source).rows_out;

    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(addr.port())
        .user("bench")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Let the views fill.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Point lookups under full ingest.
    let lookup = client
        .prepare("SELECT customer_id, events, amount FROM per_customer WHERE customer_id = $1")
        .await
        .unwrap();
    let customers: Vec<i64> = client
        .query("SELECT customer_id FROM per_customer", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut latencies = Vec::new();
    let (rows_before, started) = (read(&handle), Instant::now());
    for i in 0..3000 {
        let id = customers[(i * 7919) % customers.len()];
        let t = Instant::now();
        let rows = client.query(&lookup, &[&id]).await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(rows.len(), 1);
    }
    let ingest = (read(&handle) - rows_before) as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "point lookup (pgwire, prepared) under ingest, checkpoints every {interval:?}: p50 {:.0?}, p99 {:.0?}, {} lookups; job ingesting {:.0} events/s meanwhile",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
        ingest
    );

    // Full scans.
    let mut best = 0.0f64;
    let mut rows = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        let all = client
            .query("SELECT order_id, events, updated FROM per_order", &[])
            .await
            .unwrap();
        rows = all.len();
        best = best.max(rows as f64 / t.elapsed().as_secs_f64());
    }
    println!("view scan to the client (pgwire): {best:.0} rows/s over {rows} rows");
    let mut best_engine = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let row = client
            .query_one("SELECT count(*), max(events) FROM per_order", &[])
            .await
            .unwrap();
        let n: i64 = row.get(0);
        best_engine = best_engine.max(n as f64 / t.elapsed().as_secs_f64());
    }
    println!("view scan inside the server (count over the view): {best_engine:.0} rows/s");

    // Visibility delay: events counted at the source until the view has them.
    let mut delays = Vec::new();
    for _ in 0..20 {
        let entered = read(&handle) as i64;
        let t = Instant::now();
        loop {
            let n: i64 = client
                .query_one("SELECT coalesce(max(events), 0) FROM total", &[])
                .await
                .unwrap()
                .get(0);
            if n >= entered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    delays.sort();
    println!(
        "event to visible, checkpoints every {interval:?}: p50 {:.0?}, max {:.0?}",
        percentile(&delays, 0.5),
        delays[delays.len() - 1]
    );
    handle.stop();
    let _ = handle.wait().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for interval in [Duration::from_secs(1), Duration::from_millis(200)] {
        rt.block_on(run(interval));
    }
}

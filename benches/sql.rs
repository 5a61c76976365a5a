//! What the SQL path costs: the same pipelines written in SQL (`headwater run`'s
//! planner) and in the Rust API, over the same JSON-lines file of 1M bids, at
//! parallelism 1. Prints rows/s of each (best of 3) and the SQL/Rust ratio,
//! then the rows/s of an interval self-join in SQL (each bid with the bids of
//! its auction up to 1 s later: itself and the next one), and of regular
//! joins: the bids with a table of 1k auctions (1k keys, every bid kept in
//! state), and a table of 1M auctions with itself (1M keys).
//!
//! Run with `cargo bench --bench sql`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headwater::prelude::*;

const ROWS: usize = 1_000_000;

fn bids_file() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("bench-sql");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bids.jsonl");
    if !path.exists() {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let channels = ["web", "app", "api", "partner"];
        for i in 0..ROWS {
            writeln!(
                out,
                r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}","date_time":{}}}"#,
                (i * 7) % 1000,
                (i * 13) % 10_000,
                (i * 31) % 10_000,
                channels[i % 4],
                1_735_689_600_000u64 + i as u64
            )
            .unwrap();
        }
    }
    path
}

/// `auctions` rows with ids `0..rows`, in a file named after their number.
fn auctions_file(rows: usize) -> PathBuf {
    let path = bids_file().with_file_name(format!("auctions-{rows}.jsonl"));
    if !path.exists() {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..rows {
            writeln!(
                out,
                r#"{{"id":{i},"seller":{},"reserve":{},"date_time":{}}}"#,
                (i * 17) % 500,
                (i * 31) % 1000,
                1_735_689_600_000u64 + i as u64
            )
            .unwrap();
        }
    }
    path
}

fn schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]))
}

fn source(path: &Path) -> FileSource {
    FileSource::json(path, schema())
        .with_event_time(EventTimeSpec::column("date_time", Duration::from_secs(1)))
}

const TABLE: &str = "CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE TABLE sink (auction BIGINT, a BIGINT, b VARCHAR) WITH ('connector' = 'blackhole');
CREATE TABLE windows (auction BIGINT, window_end TIMESTAMP(3), bids BIGINT, total BIGINT)
WITH ('connector' = 'blackhole');
CREATE TABLE joined (auction BIGINT, a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');";

async fn rust_filter_project(path: &Path) {
    let env = StreamEnvironment::new().with_parallelism(1);
    env.source(source(path))
        .filter(col("price").gt(lit(500)))
        .unwrap()
        .select(vec![
            col("auction"),
            (col("price") * lit(2)).alias("a"),
            datafusion::functions::string::expr_fn::upper(col("channel")).alias("b"),
        ])
        .unwrap()
        .sink(BlackholeSink)
        .unwrap();
    env.execute().unwrap().wait().await.unwrap();
}

async fn rust_tumble(path: &Path) {
    let env = StreamEnvironment::new().with_parallelism(1);
    env.source(source(path))
        .key_by(&["auction"])
        .unwrap()
        .window(Tumbling::of(Duration::from_secs(10)))
        .unwrap()
        .aggregate(vec![
            count(lit(1)).alias("bids"),
            sum(col("price")).alias("total"),
        ])
        .unwrap()
        .sink(BlackholeSink)
        .unwrap();
    env.execute().unwrap().wait().await.unwrap();
}

async fn sql(path: &Path, query: &str) {
    let script = format!(
        "{}\n{query}",
        TABLE.replace("{path}", &path.display().to_string())
    );
    run_script(&script).await;
}

const AUCTIONS: &str = "CREATE TABLE auctions (
  id BIGINT, seller BIGINT, reserve BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{auctions}', 'format' = 'json');";

/// A regular join of the bids with 1k auctions: 1k keys, 1M output rows.
const SQL_REGULAR_JOIN_1K: &str = "INSERT INTO joined SELECT b.auction, b.price, a.seller
FROM bids b JOIN auctions a ON b.auction = a.id;";

/// A regular self-join of 1M auctions on their ids: 1M keys, 1M output rows.
const SQL_REGULAR_JOIN_1M: &str = "INSERT INTO joined SELECT a.id, a.reserve, b.seller
FROM auctions a JOIN auctions b ON a.id = b.id;";

/// Events read per second of a regular join of `query` over the bids and
/// `auctions` auctions; `events` is how many rows both inputs have.
async fn regular_join(bids: &Path, auctions: usize, query: &str) {
    let script = format!(
        "{}\n{}\n{query}",
        TABLE.replace("{path}", &bids.display().to_string()),
        AUCTIONS.replace("{auctions}", &auctions_file(auctions).display().to_string())
    );
    run_script(&script).await;
}

async fn run_script(script: &str) {
    let options = headwater::sql::SqlOptions {
        name: "bench".into(),
        parallelism: 1,
        ..Default::default()
    };
    let job = headwater::sql::plan_script(script, &options).await.unwrap();
    let config = JobConfig {
        default_parallelism: 1,
        ..JobConfig::default()
    };
    headwater::runtime::start(job.graph, config)
        .unwrap()
        .wait()
        .await
        .unwrap();
}

const SQL_FILTER_PROJECT: &str =
    "INSERT INTO sink SELECT auction, price * 2, upper(channel) FROM bids WHERE price > 500;";
const SQL_TUMBLE: &str = "INSERT INTO windows SELECT auction, window_end, count(*), sum(price)
FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_end;";

const SQL_INTERVAL_JOIN: &str = "INSERT INTO joined SELECT a.auction, a.price, b.price
FROM bids a JOIN bids b ON a.auction = b.auction
 AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '1' SECOND;";

fn best_of_3<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    run: impl Fn() -> F,
) -> f64 {
    best_of_3_over(rt, ROWS, run)
}

/// Rows/s over `rows` input rows, the best of 3 runs.
fn best_of_3_over<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    rows: usize,
    run: impl Fn() -> F,
) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            rt.block_on(run());
            rows as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let path = bids_file();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pairs = [
        (
            "filter + projection",
            best_of_3(&rt, || rust_filter_project(&path)),
            best_of_3(&rt, || sql(&path, SQL_FILTER_PROJECT)),
        ),
        (
            "tumbling window count + sum per auction",
            best_of_3(&rt, || rust_tumble(&path)),
            best_of_3(&rt, || sql(&path, SQL_TUMBLE)),
        ),
    ];
    for (name, rust, sql) in pairs {
        println!(
            "{name}: Rust API {:.0} rows/s, SQL {:.0} rows/s (SQL/Rust {:.1}%), parallelism 1",
            rust,
            sql,
            100.0 * sql / rust
        );
    }
    let join = best_of_3(&rt, || sql(&path, SQL_INTERVAL_JOIN));
    println!(
        "interval self-join per auction, 1 s (2 output rows per bid): SQL {join:.0} bids/s, parallelism 1"
    );
    let small = best_of_3_over(&rt, ROWS + 1000, || {
        regular_join(&path, 1000, SQL_REGULAR_JOIN_1K)
    });
    println!(
        "regular join, 1M bids with 1k auctions (1k keys): SQL {small:.0} events/s, parallelism 1"
    );
    let large = best_of_3_over(&rt, 2 * ROWS, || {
        regular_join(&path, ROWS, SQL_REGULAR_JOIN_1M)
    });
    println!(
        "regular self-join, 1M auctions on id (1M keys): SQL {large:.0} events/s, parallelism 1"
    );
}

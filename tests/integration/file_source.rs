//! The filesystem source against independent references: the `headwater
//! generate` command's JSON lines read back equal the generator's own rows, and
//! a CSV file split across subtasks gives each row once.

use crate::common;

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use common::{sorted_json_rows, within};
use headwater::operators::sources::orders::order_schema;
use headwater::prelude::*;

async fn collect(env: &StreamEnvironment, stream: DataStream) -> Vec<RecordBatch> {
    let rx = stream.collect().unwrap();
    let job = env.execute().unwrap();
    let batches = within(60, rx.collect_all()).await;
    within(10, job.wait()).await.unwrap();
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_json_lines_read_back_equal_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "generate", "orders", "--orders", "3000", "--seed", "5", "--output",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());

    let env = StreamEnvironment::new().with_parallelism(1);
    let direct = env.source(OrdersSource::new(5).orders(3000));
    let expected = sorted_json_rows(&collect(&env, direct).await);

    for p in [1, 3] {
        let env = StreamEnvironment::new().with_parallelism(p);
        let read = env.source(
            FileSource::json(&path, order_schema())
                .with_event_time(EventTimeSpec::column("event_time", Duration::from_secs(2))),
        );
        let got = sorted_json_rows(&collect(&env, read).await);
        assert_eq!(got.len(), expected.len(), "parallelism {p}");
        assert!(got == expected, "rows read back differ at parallelism {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_file_split_across_subtasks_gives_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "id,item,price").unwrap();
    const ROWS: i64 = 150_000; // over 3 MiB, so it is cut into byte ranges
    for i in 0..ROWS {
        writeln!(f, "{i},item number {},{}.25", i % 977, i % 1000).unwrap();
    }
    drop(f);
    assert!(std::fs::metadata(&path).unwrap().len() > 3 << 20);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let env = StreamEnvironment::new().with_parallelism(3);
    let rows = env
        .source(FileSource::csv(&path, schema))
        .filter(col("price").gt(lit(500)))
        .unwrap();
    let batches = collect(&env, rows).await;
    let mut ids = Vec::new();
    let mut price_sum = 0.0;
    for b in &batches {
        ids.extend(
            b.column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
        price_sum += b
            .column(2)
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .sum::<f64>();
    }
    ids.sort();
    let expected: Vec<i64> = (0..ROWS)
        .filter(|i| i % 1000 > 500 || (i % 1000 == 500))
        .collect();
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "each row whose price is over 500, once");
    let expected_sum: f64 = expected.iter().map(|i| (i % 1000) as f64 + 0.25).sum();
    assert!((price_sum - expected_sum).abs() < 1e-6 * expected_sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_read_whole_but_for_hidden_and_in_progress_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (file, range) in [("a.jsonl", 0..10), ("b.jsonl", 10..25), ("c.jsonl", 25..26)] {
        let text: String = range
            .clone()
            .map(|i| format!("{{\"id\": {i}}}\n"))
            .collect();
        std::fs::write(dir.path().join(file), text).unwrap();
        expected.extend(range);
    }
    std::fs::write(dir.path().join(".hidden.jsonl"), "{\"id\": 100}\n").unwrap();
    std::fs::write(dir.path().join("_in_progress.jsonl"), "{\"id\": 101}\n").unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let env = StreamEnvironment::new().with_parallelism(2);
    let rows = env.source(FileSource::json(dir.path(), schema));
    let mut ids: Vec<i64> = collect(&env, rows)
        .await
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort();
    assert_eq!(ids, expected);
}

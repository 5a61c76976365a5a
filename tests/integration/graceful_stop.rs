//! A graceful stop ends an unbounded job: sources stop, what is in flight is
//! written, the sinks flush, and the job ends well.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema};
use common::within;
use headwater::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_every_row_to_the_file_sink() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let env = StreamEnvironment::new().with_parallelism(2);
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    env.source(
        DatagenSource::new(schema)
            .field("n", FieldGen::Sequence { start: 0, step: 1 })
            .rows_per_second(20_000.0),
    )
    .sink(FileSink::json(&out))
    .unwrap();
    let job = env.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    job.stop();
    let result = within(10, job.wait()).await.unwrap();
    assert!(result.stopped);
    let written = result.metrics.operator("filesystem_sink").rows_in;
    assert!(written > 1_000, "{written}");
    let mut lines = 0;
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            numbers.push(v["n"].as_i64().unwrap());
            lines += 1;
        }
    }
    assert_eq!(
        lines as u64, written,
        "every row the sink took is in its files"
    );
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), lines, "no row twice");
}

//! The orders and datagen sources resume from a savepoint exactly where they
//! stopped: the rows committed across the two runs equal one uninterrupted run.
//! Datagen does so also at another parallelism (1 to 3, 3 to 2).

use crate::common;

use common::committed_rows;
use std::time::Duration;

use headwater::operators::sources::SourceSpec;
use headwater::prelude::*;

async fn stop_and_resume<S: SourceSpec + Clone + 'static>(source: S) {
    stop_and_resume_at(source, 2, 2).await
}

async fn stop_and_resume_at<S: SourceSpec + Clone + 'static>(source: S, first: usize, then: usize) {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let env = StreamEnvironment::new().with_parallelism(2);
    env.source(source.clone())
        .sink(FileSink::json(&reference))
        .unwrap();
    env.execute().unwrap().wait().await.unwrap();
    let expected = committed_rows(&reference);

    let output = dir.path().join("output");
    let checkpoints = dir.path().join("checkpoints");
    let env = StreamEnvironment::new()
        .with_parallelism(first)
        .with_checkpoints(&checkpoints, Duration::from_millis(100));
    env.source(source.clone())
        .sink(FileSink::json(&output))
        .unwrap();
    let job = env.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let savepoint = job.stop_with_savepoint().await;
    let result = job.wait().await;
    let savepoint = savepoint.unwrap_or_else(|e| panic!("no savepoint: {e}; the job: {result:?}"));
    let before = committed_rows(&output).len();
    assert!(
        before > 0 && before < expected.len(),
        "stopped part way: {before} of {}",
        expected.len()
    );

    let env = StreamEnvironment::new()
        .with_parallelism(then)
        .with_checkpoints(&checkpoints, Duration::from_millis(100))
        .from_savepoint(&savepoint);
    env.source(source).sink(FileSink::json(&output)).unwrap();
    env.execute().unwrap().wait().await.unwrap();
    let got = committed_rows(&output);
    assert_eq!(got.len(), expected.len(), "rows lost or duplicated");
    assert!(got == expected, "rows differ from the uninterrupted run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_resume_where_they_stopped() {
    stop_and_resume(
        OrdersSource::new(3)
            .orders(4_000)
            .events_per_second(10_000.0),
    )
    .await;
}

fn datagen() -> DatagenSource {
    DatagenSource::new(std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Float64, false),
    ])))
    .field("n", FieldGen::Sequence { start: 0, step: 1 })
    .seed(7)
    .row_count(120_000)
    .rows_per_second(40_000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagen_resumes_where_it_stopped() {
    stop_and_resume(datagen()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagen_resumes_where_it_stopped_at_another_parallelism() {
    stop_and_resume_at(datagen(), 1, 3).await;
    stop_and_resume_at(datagen(), 3, 2).await;
}

//! Throughput of the core pipeline, in rows per second.
//!
//! - `filter_project`: in-memory batches replayed by a source, then a filter, a
//!   projection and a blackhole sink, at parallelism 1 and 2.
//! - `json_file`: a JSON-lines file of order events decoded to batches, at
//!   parallelism 1 and 2.
//!
//! Run with `cargo bench --bench pipeline`. Criterion reports elements/s, which
//! are rows/s; divide by the parallelism for rows/s per core.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater::prelude::*;
use headwater::runtime::graph::SourceFactory;
use headwater::runtime::{BoxError, OperatorContext, Source, SourcePoll};

const BATCH: usize = 8192;
const BATCHES_PER_SUBTASK: usize = 256;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn bid_batch(seed: i64) -> RecordBatch {
    let n = BATCH as i64;
    let channels = ["apple", "google", "facebook", "baidu"];
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| (i * 7 + seed) % 1000),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| (i * 13 + seed) % 10_000),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| ((i * 31 + seed) % 10_000) as f64 / 10.0),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| channels[(i % 4) as usize]),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..n).map(|i| 1_700_000_000_000 + seed * n + i),
            )),
        ],
    )
    .unwrap()
}

/// Replays prepared batches: the source costs nothing, the pipeline is measured.
#[derive(Clone)]
struct Replay {
    batches: Vec<RecordBatch>,
}

impl SourceSpec for Replay {
    fn default_name(&self) -> String {
        "replay".into()
    }
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn event_time(&self) -> EventTimeSpec {
        EventTimeSpec::column("ts", Duration::from_secs(1))
    }
    fn factory(&self) -> SourceFactory {
        let batches = self.batches.clone();
        Arc::new(move |_| {
            let queue: VecDeque<RecordBatch> = (0..BATCHES_PER_SUBTASK)
                .map(|i| batches[i % batches.len()].clone())
                .collect();
            Ok(Box::new(ReplaySubtask(queue)) as Box<dyn Source>)
        })
    }
}

struct ReplaySubtask(VecDeque<RecordBatch>);

#[async_trait]
impl Source for ReplaySubtask {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    async fn next(&mut self, _: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        Ok(self
            .0
            .pop_front()
            .map_or(SourcePoll::Finished, SourcePoll::Batch))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn filter_project(c: &mut Criterion) {
    let rt = runtime();
    let replay = Replay {
        batches: (0..16).map(bid_batch).collect(),
    };
    let mut group = c.benchmark_group("filter_project");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for p in [1usize, 2] {
        group.throughput(Throughput::Elements(
            (p * BATCHES_PER_SUBTASK * BATCH) as u64,
        ));
        group.bench_function(format!("parallelism_{p}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let env = StreamEnvironment::new().with_parallelism(p);
                    env.source(replay.clone())
                        .filter(
                            col("price")
                                .gt(lit(500.0))
                                .and(col("channel").not_eq(lit("baidu"))),
                        )
                        .unwrap()
                        .select(vec![
                            col("auction"),
                            col("bidder"),
                            (col("price") * lit(0.908)).alias("euros"),
                            col("ts"),
                        ])
                        .unwrap()
                        .sink(BlackholeSink)
                        .unwrap();
                    env.execute().unwrap().wait().await.unwrap()
                })
            })
        });
    }
    group.finish();
}

fn json_file(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let events = rt.block_on(write_orders(&path, 200_000));
    let mut group = c.benchmark_group("json_file");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(events));
    for p in [1usize, 2] {
        group.bench_function(format!("parallelism_{p}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let env = StreamEnvironment::new().with_parallelism(p);
                    env.source(
                        FileSource::json(
                            &path,
                            headwater::operators::sources::orders::order_schema(),
                        )
                        .with_event_time(EventTimeSpec::column(
                            "event_time",
                            Duration::from_secs(2),
                        )),
                    )
                    .sink(BlackholeSink)
                    .unwrap();
                    let result = env.execute().unwrap().wait().await.unwrap();
                    assert_eq!(result.metrics.operator("blackhole").rows_in, events);
                })
            })
        });
    }
    group.finish();
}

/// Writes the events of `orders` orders as JSON lines; returns how many.
async fn write_orders(path: &std::path::Path, orders: u64) -> u64 {
    let env = StreamEnvironment::new().with_parallelism(1);
    let rx = env
        .source(OrdersSource::new(1).orders(orders))
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = rx.collect_all().await;
    job.wait().await.unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = arrow::json::LineDelimitedWriter::new(file);
    let mut rows = 0;
    for b in &batches {
        writer.write(b).unwrap();
        rows += b.num_rows() as u64;
    }
    writer.finish().unwrap();
    rows
}

criterion_group!(benches, filter_project, json_file);
criterion_main!(benches);

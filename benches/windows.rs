//! Window throughput: a tumbling count per key, in rows per second.
//!
//! Keys are spread uniformly over 1k or 1M keys; event time advances 1 ms
//! per 1000 rows, so a 1 s window holds 1M rows (with 1M keys, ~630k distinct
//! keys per window). `budget_16mib` limits the in-memory pre-aggregation to 16
//! MiB, so partials go through RocksDB. Parallelism 1: one window subtask (the
//! source, which only stamps times on prepared key columns, runs in its own task).
//!
//! Run with `cargo bench --bench windows`.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater::prelude::*;
use headwater::runtime::graph::SourceFactory;
use headwater::runtime::{BoxError, OperatorContext, Source, SourcePoll};

const BATCH: usize = 8192;
const BATCHES: usize = 512;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]))
}

#[derive(Clone)]
struct Keys {
    columns: Arc<Vec<ArrayRef>>,
}

impl Keys {
    fn new(keys: u64) -> Self {
        let columns = (0..64u64)
            .map(|b| {
                Arc::new(Int64Array::from_iter_values((0..BATCH as u64).map(|i| {
                    let x = (b * BATCH as u64 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    ((x >> 17) % keys) as i64
                }))) as ArrayRef
            })
            .collect();
        Keys {
            columns: Arc::new(columns),
        }
    }
}

impl SourceSpec for Keys {
    fn default_name(&self) -> String {
        "keys".into()
    }
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn event_time(&self) -> EventTimeSpec {
        EventTimeSpec::column("ts", Duration::from_millis(100))
    }
    fn factory(&self) -> SourceFactory {
        let keys = self.clone();
        Arc::new(move |_| {
            Ok(Box::new(KeysSubtask {
                keys: keys.clone(),
                sent: 0,
            }) as Box<dyn Source>)
        })
    }
}

struct KeysSubtask {
    keys: Keys,
    sent: usize,
}

#[async_trait]
impl Source for KeysSubtask {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    async fn next(&mut self, _: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        if self.sent == BATCHES {
            return Ok(SourcePoll::Finished);
        }
        let first = (self.sent * BATCH) as i64;
        let times = Int64Array::from_iter_values((0..BATCH as i64).map(|i| (first + i) / 1000));
        let key = self.keys.columns[self.sent % self.keys.columns.len()].clone();
        self.sent += 1;
        Ok(SourcePoll::Batch(RecordBatch::try_new(
            schema(),
            vec![key, Arc::new(times)],
        )?))
    }
}

fn tumbling_count(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tumbling_count");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements((BATCHES * BATCH) as u64));
    for (name, keys, budget) in [
        ("keys_1k", 1_000, None),
        ("keys_1m", 1_000_000, None),
        ("keys_1m_budget_16mib", 1_000_000, Some(16usize << 20)),
    ] {
        let source = Keys::new(keys);
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let env = StreamEnvironment::new().with_parallelism(1);
                    let mut window = env
                        .source(source.clone())
                        .key_by(&["key"])
                        .unwrap()
                        .window(Tumbling::of(Duration::from_secs(1)))
                        .unwrap();
                    if let Some(bytes) = budget {
                        window = window.memory_limit(bytes);
                    }
                    window
                        .aggregate(vec![count(lit(1)).alias("n")])
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

criterion_group!(benches, tumbling_count);
criterion_main!(benches);

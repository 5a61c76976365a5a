//! State larger than memory: a tumbling window over 5M distinct keys, with a
//! 64 MiB state budget and a 32 MiB pre-aggregation budget, gives every key's
//! exact result, and the process's peak RSS stays bounded (printed).
//!
//! A test binary of its own: the peak RSS is the process's, and the other
//! end-to-end tests (`tests/integration`) would add theirs.

#[path = "integration/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use async_trait::async_trait;
use common::within;
use headwater::operators::sources::SourceSpec;
use headwater::prelude::*;
use headwater::runtime::graph::SourceFactory;
use headwater::runtime::{BoxError, OperatorContext, Source, SourcePoll};

const KEYS: u64 = 5_000_000;
const ROUNDS: u64 = 2;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
    ]))
}

/// Event `j` (of `KEYS * ROUNDS`) has key `j % KEYS`, value = key, and a time
/// within the first second; subtask `s` of `p` makes the events `j ≡ s (mod p)`.
#[derive(Clone)]
struct KeySweep;

impl SourceSpec for KeySweep {
    fn default_name(&self) -> String {
        "sweep".into()
    }
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn event_time(&self) -> EventTimeSpec {
        EventTimeSpec::column("ts", Duration::from_secs(1))
    }
    fn factory(&self) -> SourceFactory {
        Arc::new(|subtask| {
            Ok(Box::new(SweepSubtask {
                next: subtask.index as u64,
                step: subtask.parallelism as u64,
            }) as Box<dyn Source>)
        })
    }
}

struct SweepSubtask {
    next: u64,
    step: u64,
}

#[async_trait]
impl Source for SweepSubtask {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    async fn next(&mut self, _: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        let end = KEYS * ROUNDS;
        if self.next >= end {
            return Ok(SourcePoll::Finished);
        }
        let js: Vec<u64> = (0..8192)
            .map(|k| self.next + k * self.step)
            .take_while(|&j| j < end)
            .collect();
        self.next += js.len() as u64 * self.step;
        let keys = Int64Array::from_iter_values(js.iter().map(|j| (j % KEYS) as i64));
        let times = Int64Array::from_iter_values(js.iter().map(|j| (j % 1000) as i64));
        Ok(SourcePoll::Batch(RecordBatch::try_new(
            schema(),
            vec![Arc::new(keys.clone()), Arc::new(times), Arc::new(keys)],
        )?))
    }
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_million_keys_in_a_64_mib_budget() {
    let config = JobConfig {
        default_parallelism: 2,
        state_memory_limit: 64 << 20,
        ..JobConfig::default()
    };
    let env = StreamEnvironment::with_config(config);
    let mut rx = env
        .source(KeySweep)
        .key_by(&["key"])
        .unwrap()
        .window(Tumbling::of(Duration::from_secs(60)))
        .unwrap()
        .memory_limit(32 << 20)
        .aggregate(vec![
            count(lit(1)).alias("n"),
            sum(col("value")).alias("total"),
        ])
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let started = std::time::Instant::now();
    // Check rows as they come, keeping one bit per key.
    let mut seen = vec![0u64; KEYS.div_ceil(64) as usize];
    let mut rows = 0u64;
    within(600, async {
        while let Some(batch) = rx.recv().await {
            let key = batch
                .column_by_name("key")
                .unwrap()
                .as_primitive::<Int64Type>();
            let n = batch
                .column_by_name("n")
                .unwrap()
                .as_primitive::<Int64Type>();
            let total = batch
                .column_by_name("total")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let k = key.value(i);
                assert_eq!(n.value(i), ROUNDS as i64, "count of key {k}");
                assert_eq!(total.value(i), ROUNDS as i64 * k, "sum of key {k}");
                let (word, bit) = ((k as u64 / 64) as usize, k as u64 % 64);
                assert_eq!(seen[word] >> bit & 1, 0, "key {k} emitted twice");
                seen[word] |= 1 << bit;
                rows += 1;
            }
        }
    })
    .await;
    within(60, job.wait()).await.unwrap();
    assert_eq!(rows, KEYS, "every key has one result");
    let peak = peak_rss_mib();
    println!(
        "{} keys, {} events in {:.1} s; peak RSS {peak} MiB",
        KEYS,
        KEYS * ROUNDS,
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak < 512,
        "peak RSS {peak} MiB: state is not bounded by its budget"
    );
}

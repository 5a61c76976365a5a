//! A slow sink keeps the queues at their bound: the rows in flight between a
//! fast source and a slow sink stay bounded, however long the job runs.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use common::within;
use headwater::prelude::*;
use headwater::runtime::{BoxError, Collector, Operator, OperatorContext};

struct SlowSink;

#[async_trait]
impl Operator for SlowSink {
    async fn process_batch(
        &mut self,
        _: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_bounds_the_rows_in_flight() {
    const CAPACITY: usize = 4;
    const BATCH: usize = 1024; // datagen makes blocks of 1024 rows
    let config = JobConfig {
        channel_capacity: CAPACITY,
        default_parallelism: 1,
        ..JobConfig::default()
    };
    let env = StreamEnvironment::with_config(config);
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let source = env.source(DatagenSource::new(schema.clone())); // unbounded, unpaced
    let schema = source.schema_with_event_time();
    source
        .rebalance()
        .apply(
            "slow_sink",
            schema,
            Arc::new(|_| Ok(Box::new(SlowSink) as Box<dyn Operator>)),
        )
        .unwrap();
    let job = env.execute().unwrap();

    // Rows made minus rows taken in: at most a full channel, one batch blocked
    // in send, and one in the sink.
    let bound = ((CAPACITY + 2) * BATCH) as u64;
    let mut max_in_flight = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = job.metrics();
        let made = m.operator("datagen").rows_out;
        let taken = m.operator("slow_sink").rows_in;
        max_in_flight = max_in_flight.max(made.saturating_sub(taken));
    }
    let taken = job.metrics().operator("slow_sink").rows_in;
    job.stop();
    let result = within(10, job.wait()).await.unwrap();
    assert!(taken > 10 * BATCH as u64, "the sink made progress: {taken}");
    assert!(
        max_in_flight <= bound,
        "{max_in_flight} rows in flight, above the bound {bound}"
    );
    // An unpaced source would have made millions of rows in 2 s without back-pressure.
    let made = result.metrics.operator("datagen").rows_out;
    assert!(
        made <= result.metrics.operator("slow_sink").rows_in + bound,
        "made {made}"
    );
}

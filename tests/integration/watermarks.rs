//! The watermark an operator sees is the minimum over its inputs, and an idle
//! input stops holding it back after the idle timeout.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use common::{VecSource, within};
use headwater::prelude::*;
use headwater::runtime::{BoxError, Collector, EventTime, Operator, OperatorContext};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn batch(times: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..times.len() as i64)),
            Arc::new(TimestampMillisecondArray::from(times.to_vec())),
        ],
    )
    .unwrap()
}

/// Records every watermark it is given.
struct Recorder(Arc<Mutex<Vec<i64>>>);

#[async_trait]
impl Operator for Recorder {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        out.collect(batch).await
    }

    async fn on_watermark(
        &mut self,
        wm: EventTime,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<Option<EventTime>, BoxError> {
        self.0.lock().unwrap().push(wm.0);
        Ok(Some(wm))
    }
}

fn source(name: &str, batches: Vec<RecordBatch>) -> VecSource {
    VecSource {
        schema: schema(),
        batches: vec![batches],
        event_time: EventTimeSpec::column("ts", Duration::ZERO),
        then_wait: true,
        name: name.into(),
    }
}

/// Two inputs, fast at 1000..60000 (one batch every 5 ms) and slow at 500 (then
/// silent); returns the watermarks the operator after their union saw within `run_for`,
/// before the job is stopped.
async fn watermarks_seen(idle_timeout: Duration, run_for: Duration) -> Vec<i64> {
    let config = JobConfig {
        idle_timeout,
        default_parallelism: 1,
        ..JobConfig::default()
    };
    let env = StreamEnvironment::with_config(config);
    let fast = env.source(source(
        "fast",
        (1..=60).map(|i| batch(&[i * 1000])).collect(),
    ));
    let slow = env.source(source("slow", vec![batch(&[500])]));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let schema = fast.schema_with_event_time();
    fast.union(vec![slow])
        .unwrap()
        .rebalance()
        .apply(
            "recorder",
            schema,
            Arc::new(move |_| Ok(Box::new(Recorder(recorder.clone())) as Box<dyn Operator>)),
        )
        .unwrap()
        .sink(BlackholeSink)
        .unwrap();
    let job = env.execute().unwrap();
    tokio::time::sleep(run_for).await;
    // What was seen while both inputs ran: once one has ended, it no longer holds back.
    let before_stop = seen.lock().unwrap().clone();
    job.stop();
    let result = within(10, job.wait()).await.unwrap();
    assert!(result.stopped);
    before_stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_over_inputs_while_both_are_active() {
    let seen = watermarks_seen(Duration::from_secs(3600), Duration::from_millis(800)).await;
    // The slow input's watermark (499) holds everything back; nothing passes it.
    assert_eq!(seen, vec![499], "watermarks seen: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_input_stops_holding_the_watermark_back() {
    let seen = watermarks_seen(Duration::from_millis(200), Duration::from_millis(1500)).await;
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "watermarks go forward only: {seen:?}"
    );
    // Once the slow input is idle, the fast one alone decides: max 60000, less 1 ms.
    assert_eq!(seen.first(), Some(&499), "watermarks seen: {seen:?}");
    assert_eq!(seen.last(), Some(&59_999), "watermarks seen: {seen:?}");
}

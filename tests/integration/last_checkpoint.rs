//! The job's last checkpoint (at the end of its input, or a stop with a
//! savepoint) can fail like any other. It is taken again; if it keeps
//! failing, the job fails with the reason, and a stop with a savepoint
//! returns it. Before, the tasks waited for it forever.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use common::{committed_rows, within};
use headwater::prelude::*;
use headwater::runtime::checkpoint::CheckpointConfig;
use headwater::runtime::{BoxError, Collector, JobConfig, Operator, OperatorContext};

/// Passes rows on; its snapshots take longer than the checkpoint timeout
/// while the shared budget of slow snapshots lasts.
struct SlowSnapshots {
    slow_left: Arc<AtomicU32>,
}

#[async_trait]
impl Operator for SlowSnapshots {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        out.collect(batch).await
    }

    async fn snapshot_state(
        &mut self,
        _checkpoint: u64,
        _ctx: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        let slow = self
            .slow_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if slow {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        Ok(None)
    }
}

fn env(dir: &std::path::Path, interval: Duration) -> StreamEnvironment {
    let mut checkpoints = CheckpointConfig::new(dir.join("checkpoints"), interval);
    checkpoints.timeout = Duration::from_millis(500);
    StreamEnvironment::with_config(JobConfig {
        checkpoint: Some(checkpoints),
        default_parallelism: 1,
        restart: RestartStrategy::None,
        ..JobConfig::default()
    })
}

/// orders -> slow snapshots -> exactly-once file sink.
fn pipeline(env: &StreamEnvironment, output: &std::path::Path, orders: OrdersSource, slow: u32) {
    let slow_left = Arc::new(AtomicU32::new(slow));
    let events = env.source(orders);
    let schema = events.schema_with_event_time();
    events
        .apply(
            "slow_snapshots",
            schema,
            Arc::new(move |_| {
                Ok(Box::new(SlowSnapshots {
                    slow_left: slow_left.clone(),
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
        .sink(FileSink::json(output))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_checkpoint_that_times_out_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    // One slow snapshot: the only checkpoint, the last, times out once.
    let env = env(dir.path(), Duration::from_secs(600));
    pipeline(&env, &output, OrdersSource::new(3).orders(2_000), 1);
    let result = within(60, env.execute().unwrap().wait()).await;
    assert!(result.is_ok(), "the job failed: {result:?}");
    let rows = committed_rows(&output);
    let events = OrdersSource::new(3).orders(2_000);
    let expected = {
        let reference = dir.path().join("reference");
        let env = StreamEnvironment::new().with_parallelism(1);
        env.source(events).sink(FileSink::json(&reference)).unwrap();
        within(60, env.execute().unwrap().wait()).await.unwrap();
        committed_rows(&reference)
    };
    assert!(!expected.is_empty());
    assert_eq!(rows.len(), expected.len(), "rows lost or duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_checkpoint_that_always_fails_fails_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Duration::from_secs(600));
    pipeline(
        &env,
        &dir.path().join("out"),
        OrdersSource::new(3).orders(2_000),
        u32::MAX,
    );
    let error = within(60, env.execute().unwrap().wait())
        .await
        .expect_err("the job cannot commit its output");
    let message = error.to_string();
    assert!(
        message.contains("last checkpoint failed") && message.contains("timed out"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_savepoint_that_fails_returns_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Duration::from_secs(600));
    // An endless source: only the stop ends the job.
    pipeline(
        &env,
        &dir.path().join("out"),
        OrdersSource::new(3).events_per_second(2_000.0),
        u32::MAX,
    );
    let job = env.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = within(60, job.stop_with_savepoint()).await;
    let message = answer
        .expect_err("the savepoint cannot complete")
        .to_string();
    assert!(message.contains("timed out"), "{message}");
    let ended = within(60, job.wait()).await;
    assert!(ended.is_err(), "the job ends, failed: {ended:?}");
}

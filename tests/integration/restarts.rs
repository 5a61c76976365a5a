//! A job with checkpoints restarts its tasks from the latest checkpoint when
//! one fails, under its restart strategy, and its exactly-once output is
//! still that of an uninterrupted run. Without checkpoints, or once the
//! restarts are used up, the failure fails the job.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use common::{committed_rows, within};
use headwater::prelude::*;
use headwater::runtime::{BoxError, Collector, Operator, OperatorContext};

/// Passes rows on; subtask 0 fails once it has seen `after` rows, as long as
/// the shared budget of failures lasts.
struct Flaky {
    after: usize,
    seen: usize,
    failures_left: Arc<AtomicU32>,
}

#[async_trait]
impl Operator for Flaky {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.seen += batch.num_rows();
        if ctx.subtask.index == 0
            && self.seen > self.after
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(format!("injected failure after {} rows", self.seen).into());
        }
        out.collect(batch).await
    }
}

fn orders() -> OrdersSource {
    OrdersSource::new(11)
        .orders(6_000)
        .events_per_second(20_000.0)
}

/// orders -> flaky -> per customer and 10 s window: events -> exactly-once file sink.
fn pipeline(
    env: &StreamEnvironment,
    output: &std::path::Path,
    after: usize,
    failures: u32,
    instances: Arc<AtomicUsize>,
) {
    let failures_left = Arc::new(AtomicU32::new(failures));
    let events = env.source(orders());
    let schema = events.schema_with_event_time();
    events
        .apply(
            "flaky",
            schema,
            Arc::new(move |_| {
                instances.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(Flaky {
                    after,
                    seen: 0,
                    failures_left: failures_left.clone(),
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
        .key_by(&["customer_id"])
        .unwrap()
        .window(Tumbling::of(Duration::from_secs(10)))
        .unwrap()
        .aggregate(vec![count(lit(1)).alias("events")])
        .unwrap()
        .sink(FileSink::json(output))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_restarts_from_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let env = StreamEnvironment::new().with_parallelism(2);
    pipeline(&env, &reference, usize::MAX, 0, Arc::default());
    within(60, env.execute().unwrap().wait()).await.unwrap();
    let expected = committed_rows(&reference);
    assert!(expected.len() > 100, "{} rows", expected.len());

    let output = dir.path().join("output");
    let instances = Arc::new(AtomicUsize::new(0));
    let env = StreamEnvironment::new()
        .with_parallelism(2)
        .with_checkpoints(dir.path().join("checkpoints"), Duration::from_millis(100))
        .with_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(50),
        });
    // Two failures, each after checkpoints have completed (~0.3 s of input).
    pipeline(&env, &output, 3_000, 2, instances.clone());
    let result = within(60, env.execute().unwrap().wait()).await.unwrap();
    assert_eq!(result.restarts, 2, "the job restarted twice");
    assert_eq!(
        instances.load(Ordering::SeqCst),
        2 * 3,
        "each restart builds every task again"
    );
    let got = committed_rows(&output);
    assert_eq!(got.len(), expected.len(), "rows lost or duplicated");
    assert!(got == expected, "rows differ from the uninterrupted run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_fails_once_its_restarts_are_used_up() {
    let dir = tempfile::tempdir().unwrap();
    let instances = Arc::new(AtomicUsize::new(0));
    // No checkpoint can complete before the first failure: restarts count up.
    let env = StreamEnvironment::new()
        .with_parallelism(2)
        .with_checkpoints(dir.path().join("checkpoints"), Duration::from_secs(30))
        .with_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(20),
        });
    pipeline(
        &env,
        &dir.path().join("out"),
        0,
        u32::MAX,
        instances.clone(),
    );
    let error = within(60, env.execute().unwrap().wait())
        .await
        .expect_err("the job must fail");
    assert_eq!(error.operator(), Some("flaky"), "{error}");
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert_eq!(
        instances.load(Ordering::SeqCst),
        2 * 3,
        "the first run and 2 restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpoints_a_failure_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let instances = Arc::new(AtomicUsize::new(0));
    let env = StreamEnvironment::new().with_parallelism(2);
    pipeline(&env, &dir.path().join("out"), 0, 1, instances.clone());
    let error = within(60, env.execute().unwrap().wait())
        .await
        .expect_err("the job must fail");
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert_eq!(instances.load(Ordering::SeqCst), 2, "no restart");
}

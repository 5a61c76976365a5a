//! Nothing produced after a job's last barrier is committed. A keyed process
//! function ticks on processing-time timers, numbering its outputs per key
//! from a counter in keyed state, into the exactly-once file sink. The job is
//! stopped with a savepoint and started again from it, twice: every number
//! is committed exactly once, with no gap. Rows sent after the savepoint's
//! barrier (from a timer that fired after it) would be committed outside any
//! checkpoint, and the restored counter would number them again.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use common::{VecSource, committed_rows, within};
use headwater::prelude::*;
use headwater::runtime::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Start {
    user: String,
    ts: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    user: String,
    n: i64,
}

/// From a user's first row on, a processing-time timer every 5 ms; each
/// firing sends the next number of the user's count.
#[derive(Clone)]
struct Ticker {
    count: Arc<ValueState<i64>>,
}

impl KeyedProcessFunction<String, Start, Tick> for Ticker {
    fn process_element(
        &mut self,
        _start: Start,
        ctx: &mut ProcessContext<'_, String>,
        _out: &mut Vec<Tick>,
    ) -> Result<(), BoxError> {
        if ctx.value(&self.count)?.is_none() {
            ctx.set_value(&self.count, &0)?;
            let at = ctx.processing_time() + 5;
            ctx.register_processing_time_timer(at)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: FiredTimer,
        ctx: &mut ProcessContext<'_, String>,
        out: &mut Vec<Tick>,
    ) -> Result<(), BoxError> {
        let n = ctx.value(&self.count)?.unwrap_or(0) + 1;
        ctx.set_value(&self.count, &n)?;
        out.push(Tick {
            user: ctx.key().clone(),
            n,
        });
        let at = ctx.processing_time() + 5;
        ctx.register_processing_time_timer(at)?;
        Ok(())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]))
}

fn starts() -> VecSource {
    let users: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(&users)),
            Arc::new(Int64Array::from_iter_values(0..users.len() as i64)),
        ],
    )
    .unwrap();
    VecSource {
        schema: schema(),
        batches: vec![vec![batch]],
        event_time: EventTimeSpec::column("ts", Duration::from_millis(0)),
        // Only a stop ends the job.
        then_wait: true,
        name: "starts".into(),
    }
}

/// Runs the ticker until stopped with a savepoint; returns the savepoint.
async fn run_once(
    dir: &std::path::Path,
    from: Option<&std::path::Path>,
    output: &std::path::Path,
) -> std::path::PathBuf {
    let mut env = StreamEnvironment::new()
        .with_parallelism(1)
        .with_checkpoints(dir.join("checkpoints"), Duration::from_millis(100));
    if let Some(savepoint) = from {
        env = env.from_savepoint(savepoint);
    }
    env.source(starts())
        .typed::<Start>()
        .unwrap()
        .key_by(|s| s.user.clone())
        .unwrap()
        .process(Ticker {
            count: Arc::new(ValueState::unregistered(StateDescriptor::new("count"))),
        })
        .unwrap()
        .sink(FileSink::json(output))
        .unwrap();
    let job = env.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let savepoint = within(30, job.stop_with_savepoint())
        .await
        .expect("a savepoint");
    within(30, job.wait()).await.unwrap();
    savepoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_after_the_last_barrier_are_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let first = run_once(dir.path(), None, &output).await;
    let second = run_once(dir.path(), Some(&first), &output).await;
    run_once(dir.path(), Some(&second), &output).await;

    let mut numbers: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in committed_rows(&output) {
        let tick: Tick = serde_json::from_str(&line).unwrap();
        numbers.entry(tick.user).or_default().push(tick.n);
    }
    assert_eq!(numbers.len(), 4, "{numbers:?}");
    for (user, mut n) in numbers {
        n.sort_unstable();
        let expected: Vec<i64> = (1..=n.len() as i64).collect();
        assert!(
            n == expected,
            "{user}: numbers committed twice or lost: {:?}",
            n.windows(2)
                .filter(|w| w[1] != w[0] + 1)
                .collect::<Vec<_>>()
        );
        assert!(n.len() > 50, "{user}: only {} ticks", n.len());
    }
}

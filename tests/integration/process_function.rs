//! Keyed process functions: per-key state matches a plain count, event-time
//! timers fire once each in time order, processing-time timers fire on the
//! wall clock.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use common::{VecSource, within};
use headwater::prelude::*;
use headwater::runtime::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user: String,
    ts: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Output {
    user: String,
    /// "click" (with the running count) or "timer" (with the timer's time).
    kind: String,
    value: i64,
}

/// Counts each user's clicks in keyed state, and sets an event-time timer
/// 100 ms after each click.
#[derive(Clone)]
struct CountAndRemind {
    clicks: Arc<ValueState<i64>>,
}

impl CountAndRemind {
    fn new() -> Self {
        CountAndRemind {
            clicks: Arc::new(ValueState::unregistered(StateDescriptor::new("clicks"))),
        }
    }
}

impl KeyedProcessFunction<String, Click, Output> for CountAndRemind {
    fn process_element(
        &mut self,
        click: Click,
        ctx: &mut ProcessContext<'_, String>,
        out: &mut Vec<Output>,
    ) -> Result<(), BoxError> {
        assert_eq!(&click.user, ctx.key());
        let n = ctx.value(&self.clicks)?.unwrap_or(0) + 1;
        ctx.set_value(&self.clicks, &n)?;
        ctx.register_event_time_timer(EventTime(click.ts + 100))?;
        out.push(Output {
            user: click.user,
            kind: "click".into(),
            value: n,
        });
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: FiredTimer,
        ctx: &mut ProcessContext<'_, String>,
        out: &mut Vec<Output>,
    ) -> Result<(), BoxError> {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        assert_eq!(ctx.timestamp().0, timer.time);
        out.push(Output {
            user: ctx.key().clone(),
            kind: "timer".into(),
            value: timer.time,
        });
        Ok(())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]))
}

fn clicks(n: usize) -> Vec<(String, i64)> {
    // Disordered by up to 50 ms; some clicks of one user share a time.
    (0..n)
        .map(|i| {
            let user = format!("u{}", (i * 31) % 23);
            let ts = 1_000 + (i as i64) * 3 - ((i as i64 * 17) % 50);
            (user, ts)
        })
        .collect()
}

fn source(rows: &[(String, i64)], p: usize, then_wait: bool) -> VecSource {
    let mut batches = vec![Vec::new(); p];
    for (i, chunk) in rows.chunks(100).enumerate() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| &r.0))),
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        batches[i % p].push(batch);
    }
    VecSource {
        schema: schema(),
        batches,
        event_time: EventTimeSpec::column("ts", Duration::from_millis(60)),
        then_wait,
        name: "clicks".into(),
    }
}

async fn run(p: usize) -> Vec<Output> {
    let env = StreamEnvironment::new().with_parallelism(p);
    let rx = env
        .source(source(&clicks(5_000), p, false))
        .typed::<Click>()
        .unwrap()
        .key_by(|c| c.user.clone())
        .unwrap()
        .process(CountAndRemind::new())
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let rows = within(60, rx.collect_all()).await.unwrap();
    within(30, job.wait()).await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_counts_each_key_and_event_timers_fire_once_in_time_order() {
    let input = clicks(5_000);
    let mut per_user: BTreeMap<String, i64> = BTreeMap::new();
    let mut timers: BTreeSet<(String, i64)> = BTreeSet::new();
    for (user, ts) in &input {
        *per_user.entry(user.clone()).or_default() += 1;
        timers.insert((user.clone(), ts + 100));
    }
    for p in [1, 3] {
        let rows = run(p).await;
        // Each user's counts are exactly 1..=n, in order.
        let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut fired: Vec<(String, i64)> = Vec::new();
        for r in &rows {
            match r.kind.as_str() {
                "click" => counts.entry(r.user.clone()).or_default().push(r.value),
                _ => fired.push((r.user.clone(), r.value)),
            }
        }
        for (user, n) in &per_user {
            assert_eq!(
                counts[user],
                (1..=*n).collect::<Vec<_>>(),
                "p={p} user {user}"
            );
        }
        // Every distinct (user, time) timer fired exactly once.
        let set: BTreeSet<(String, i64)> = fired.iter().cloned().collect();
        assert_eq!(set.len(), fired.len(), "p={p}: a timer fired twice");
        assert_eq!(set, timers, "p={p}");
        // In time order: globally at p=1; per user (one subtask each) at p=3.
        if p == 1 {
            assert!(
                fired.windows(2).all(|w| w[0].1 <= w[1].1),
                "timers out of order"
            );
        }
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        for (user, time) in &fired {
            let prev = last.insert(user, *time);
            assert!(
                prev.is_none_or(|t| t <= *time),
                "p={p}: {user}'s timers out of order"
            );
        }
    }
}

/// Sets one processing-time timer 200 ms after a user's first click.
#[derive(Clone)]
struct Reminder {
    seen: Arc<ValueState<bool>>,
}

impl KeyedProcessFunction<String, Click, Output> for Reminder {
    fn process_element(
        &mut self,
        click: Click,
        ctx: &mut ProcessContext<'_, String>,
        _out: &mut Vec<Output>,
    ) -> Result<(), BoxError> {
        if ctx.value(&self.seen)?.is_none() {
            ctx.set_value(&self.seen, &true)?;
            let at = ctx.processing_time() + 200;
            ctx.register_processing_time_timer(at)?;
        }
        let _ = click;
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: FiredTimer,
        ctx: &mut ProcessContext<'_, String>,
        out: &mut Vec<Output>,
    ) -> Result<(), BoxError> {
        out.push(Output {
            user: ctx.key().clone(),
            kind: format!("{:?}", timer.domain),
            value: ctx.processing_time() - timer.time,
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_timers_fire_on_the_wall_clock_while_input_is_quiet() {
    let env = StreamEnvironment::new().with_parallelism(1);
    let rows: Vec<(String, i64)> = (0..300).map(|i| (format!("u{}", i % 3), i)).collect();
    let mut rx = env
        .source(source(&rows, 1, true)) // then waits: no watermark will end it
        .typed::<Click>()
        .unwrap()
        .key_by(|c| c.user.clone())
        .unwrap()
        .process(Reminder {
            seen: Arc::new(ValueState::unregistered(StateDescriptor::new("seen"))),
        })
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = within(10, rx.recv()).await.expect("a batch").unwrap();
        got.extend(batch);
    }
    job.stop();
    within(30, job.wait()).await.unwrap();
    let users: BTreeSet<&str> = got.iter().map(|o| o.user.as_str()).collect();
    assert_eq!(users, BTreeSet::from(["u0", "u1", "u2"]));
    for o in &got {
        assert_eq!(o.kind, "ProcessingTime");
        assert!(
            (0..1_000).contains(&o.value),
            "fired {} ms after its time",
            o.value
        );
    }
}

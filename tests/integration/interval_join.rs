//! The Rust API's interval join, inner and full outer, at parallelism 1, 2
//! and 3 over disordered input, against a plain-Rust nested loop written
//! from the definition: a right row joins a left row of the same key when
//! `right time - left time` is within the bounds and the filter holds.

use crate::common;
use crate::window_support;

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use common::within;
use headwater::prelude::*;
use window_support::{Event, events, source};

/// A joined row: the left's (key, ts, value) and the right's, either absent.
type Row = (Option<(i64, i64, i64)>, Option<(i64, i64, i64)>);

const LOWER: i64 = -40;
const UPPER: i64 = 90;

/// The filter: the values differ by less than 1500.
fn passes(l: &Event, r: &Event) -> bool {
    (l.value - r.value).abs() < 1500
}

fn reference(left: &[Event], right: &[Event], outer: bool) -> Vec<Row> {
    let triple = |e: &Event| (e.key, e.ts, e.value);
    let mut rows = Vec::new();
    let mut right_matched = vec![false; right.len()];
    for l in left {
        let mut matched = false;
        for (j, r) in right.iter().enumerate() {
            let d = r.ts - l.ts;
            if r.key == l.key && (LOWER..=UPPER).contains(&d) && passes(l, r) {
                rows.push((Some(triple(l)), Some(triple(r))));
                matched = true;
                right_matched[j] = true;
            }
        }
        if outer && !matched {
            rows.push((Some(triple(l)), None));
        }
    }
    if outer {
        for (j, r) in right.iter().enumerate() {
            if !right_matched[j] {
                rows.push((None, Some(triple(r))));
            }
        }
    }
    rows.sort();
    rows
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let column = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
        let side = |prefix: &str, i: usize| {
            let [k, t, v] = ["key", "ts", "value"].map(|c| column(&format!("{prefix}{c}")));
            k.is_valid(i).then(|| (k.value(i), t.value(i), v.value(i)))
        };
        for i in 0..b.num_rows() {
            rows.push((side("", i), side("right_", i)));
        }
    }
    rows.sort();
    rows
}

async fn run(left: &[Event], right: &[Event], p: usize, join_type: JoinType) -> Vec<Row> {
    let env = StreamEnvironment::new().with_parallelism(p);
    let disorder = Duration::from_millis(200);
    let mut left_source = source(left, p, 250, disorder);
    left_source.name = "left".into();
    let mut right_source = source(right, p, 250, disorder);
    right_source.name = "right".into();
    let rx = env
        .source(left_source)
        .key_by(&["key"])
        .unwrap()
        .interval_join(env.source(right_source).key_by(&["key"]).unwrap())
        .unwrap()
        .between_millis(LOWER, UPPER)
        .join_type(join_type)
        .filter(
            (col("value") - col("right_value"))
                .lt(lit(1500))
                .and((col("right_value") - col("value")).lt(lit(1500))),
        )
        .join()
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rx.collect_all()).await;
    within(30, job.wait()).await.unwrap();
    rows_of(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_joins_equal_a_nested_loop() {
    let left = events(6_000, 30, 150, 21);
    let right = events(5_000, 30, 150, 22);
    for (join_type, outer) in [(JoinType::Inner, false), (JoinType::Full, true)] {
        let expected = reference(&left, &right, outer);
        let joined = expected.iter().filter(|r| r.0.is_some() && r.1.is_some());
        assert!(joined.count() > 1_000, "the test needs joined rows");
        for p in [1, 2, 3] {
            let got = run(&left, &right, p, join_type).await;
            assert_eq!(
                got.len(),
                expected.len(),
                "{join_type:?} at p={p}: row count"
            );
            assert!(got == expected, "{join_type:?} at p={p}: rows differ");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_needs_keys_and_bounds() {
    let env = StreamEnvironment::new();
    let left = env.source(source(&events(10, 2, 0, 1), 1, 5, Duration::ZERO));
    let mut right_source = source(&events(10, 2, 0, 2), 1, 5, Duration::ZERO);
    right_source.name = "right".into();
    let right = env.source(right_source);
    let unkeyed = left
        .clone()
        .interval_join(right.clone().key_by(&["key"]).unwrap());
    assert!(
        unkeyed.err().unwrap().to_string().contains("key_by"),
        "an unkeyed stream is refused"
    );
    let no_bounds = left
        .key_by(&["key"])
        .unwrap()
        .interval_join(right.key_by(&["key"]).unwrap())
        .unwrap()
        .join();
    assert!(
        no_bounds
            .err()
            .unwrap()
            .to_string()
            .contains("between_millis"),
        "an interval join needs its interval"
    );
}

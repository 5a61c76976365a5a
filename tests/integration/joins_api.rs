//! The Rust API's regular and temporal joins, inner and left, at parallelism
//! 1, 2 and 3 over disordered input, against plain-Rust loops written from
//! the definitions. A regular left join is a changelog: its rows are folded
//! (`+I`/`+U` add a row, `-U`/`-D` take it away) before they are compared.

use crate::common;
use crate::window_support;

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use common::within;
use headwater::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use window_support::{Event, events, source};

/// A joined row: the left's (key, ts, value) and the right's, if any.
type Row = ((i64, i64, i64), Option<(i64, i64, i64)>);

fn triple(e: &Event) -> (i64, i64, i64) {
    (e.key, e.ts, e.value)
}

/// Versions: `n` over `keys` keys, ~50 ms apart with up to 100 ms of
/// disorder (within the sources' 200 ms), no two of a key at one time.
fn versions(n: usize, keys: i64, seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    (0..n)
        .map(|i| Event {
            key: rng.random_range(0..keys),
            ts: 1_000 + i as i64 * 50 - rng.random_range(0..=100),
            value: rng.random_range(-1000..1000),
        })
        .filter(|e| seen.insert((e.key, e.ts)))
        .collect()
}

/// The regular join: every pair of equal keys whose values differ by less
/// than 500; a left join adds each left row that has none, padded.
fn regular_reference(left: &[Event], right: &[Event], outer: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in left {
        let before = rows.len();
        for r in right {
            if r.key == l.key && (l.value - r.value).abs() < 500 {
                rows.push((triple(l), Some(triple(r))));
            }
        }
        if outer && rows.len() == before {
            rows.push((triple(l), None));
        }
    }
    rows.sort();
    rows
}

/// The temporal join: each left row with its key's latest version at or
/// before its time; a left join keeps a row that has none, padded.
fn temporal_reference(left: &[Event], right: &[Event], outer: bool) -> Vec<Row> {
    let mut by_key: HashMap<i64, Vec<&Event>> = HashMap::new();
    for r in right {
        by_key.entry(r.key).or_default().push(r);
    }
    let mut rows = Vec::new();
    for l in left {
        let version = by_key
            .get(&l.key)
            .and_then(|vs| vs.iter().filter(|v| v.ts <= l.ts).max_by_key(|v| v.ts));
        match version {
            Some(v) => rows.push((triple(l), Some(triple(v)))),
            None if outer => rows.push((triple(l), None)),
            None => {}
        }
    }
    rows.sort();
    rows
}

/// The rows a changelog leaves (or the rows of an append-only output).
fn folded(batches: &[RecordBatch]) -> Vec<Row> {
    let mut counts: HashMap<Row, i64> = HashMap::new();
    for b in batches {
        let column = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
        let changes = b.column_by_name("_change").map(|c| c.as_string::<i32>());
        for i in 0..b.num_rows() {
            let [k, t, v] = ["key", "ts", "value"].map(column);
            let [rk, rt, rv] = ["right_key", "right_ts", "right_value"].map(column);
            let row = (
                (k.value(i), t.value(i), v.value(i)),
                rk.is_valid(i)
                    .then(|| (rk.value(i), rt.value(i), rv.value(i))),
            );
            let delta = match changes.map(|c| c.value(i)) {
                None | Some("+I") | Some("+U") => 1,
                Some("-U") | Some("-D") => -1,
                Some(other) => panic!("unknown change {other}"),
            };
            *counts.entry(row).or_default() += delta;
        }
    }
    let mut rows = Vec::new();
    for (row, count) in counts {
        assert!(count >= 0, "{row:?} was retracted more often than added");
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    rows.sort();
    rows
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Regular,
    Temporal,
}

async fn run(
    left: &[Event],
    right: &[Event],
    p: usize,
    kind: Kind,
    join_type: JoinType,
) -> Vec<Row> {
    let env = StreamEnvironment::new().with_parallelism(p);
    let disorder = Duration::from_millis(200);
    let mut left_source = source(left, p, 250, disorder);
    left_source.name = "left".into();
    let mut right_source = source(right, p, 50, disorder);
    right_source.name = "right".into();
    let left = env.source(left_source).key_by(&["key"]).unwrap();
    let right = env.source(right_source).key_by(&["key"]).unwrap();
    let builder = match kind {
        Kind::Regular => left.join(right).unwrap().filter(
            (col("value") - col("right_value"))
                .lt(lit(500))
                .and((col("right_value") - col("value")).lt(lit(500))),
        ),
        Kind::Temporal => left.temporal_join(right).unwrap(),
    };
    let rx = builder
        .join_type(join_type)
        .join()
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rx.collect_all()).await;
    within(30, job.wait()).await.unwrap();
    folded(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_and_temporal_joins_equal_plain_loops() {
    let left = events(3_000, 40, 150, 31);
    let right = versions(400, 40, 32);
    for kind in [Kind::Regular, Kind::Temporal] {
        for (join_type, outer) in [(JoinType::Inner, false), (JoinType::Left, true)] {
            let expected = match kind {
                Kind::Regular => regular_reference(&left, &right, outer),
                Kind::Temporal => temporal_reference(&left, &right, outer),
            };
            let joined = expected.iter().filter(|r| r.1.is_some()).count();
            assert!(joined > 1_000, "{kind:?}: the test needs joined rows");
            if outer {
                assert!(
                    joined < expected.len(),
                    "{kind:?}: the test needs unmatched rows"
                );
            }
            for p in [1, 2, 3] {
                let got = run(&left, &right, p, kind, join_type).await;
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{kind:?} {join_type:?} at p={p}: row count"
                );
                assert!(
                    got == expected,
                    "{kind:?} {join_type:?} at p={p}: rows differ"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_refuse_options_of_other_joins() {
    let env = StreamEnvironment::new();
    let left = env.source(source(&events(10, 2, 0, 1), 1, 5, Duration::ZERO));
    let mut right_source = source(&events(10, 2, 0, 2), 1, 5, Duration::ZERO);
    right_source.name = "right".into();
    let right = env.source(right_source);
    let unkeyed = left
        .clone()
        .temporal_join(right.clone().key_by(&["key"]).unwrap());
    assert!(
        unkeyed
            .err()
            .unwrap()
            .to_string()
            .contains("temporal_join() joins keyed streams"),
        "an unkeyed stream is refused"
    );
    let left = left.key_by(&["key"]).unwrap();
    let right = right.key_by(&["key"]).unwrap();
    let bounded = left
        .clone()
        .join(right.clone())
        .unwrap()
        .between_millis(0, 10)
        .join();
    assert!(
        bounded
            .err()
            .unwrap()
            .to_string()
            .contains("between_millis"),
        "a regular join has no interval"
    );
    let full = left
        .temporal_join(right)
        .unwrap()
        .join_type(JoinType::Full)
        .join();
    assert!(
        full.err()
            .unwrap()
            .to_string()
            .contains("inner or a left join"),
        "a temporal join is inner or left"
    );
}

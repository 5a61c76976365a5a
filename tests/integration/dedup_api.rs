//! The Rust API's deduplication at parallelism 1, 2 and 3 over disordered
//! input: keep-first drops redelivered events (each event once), keep-last
//! leaves each key's row of the latest event time once its changelog is
//! folded; both against plain-Rust references.

use crate::common;
use crate::window_support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use common::within;
use headwater::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use window_support::{Event, source};

/// `n` events over `keys` keys with up to 150 ms of disorder, no two of a
/// key at one time.
fn distinct_events(n: usize, keys: i64, seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    (0..n)
        .map(|i| Event {
            key: rng.random_range(0..keys),
            ts: 1_000 + i as i64 * 7 - rng.random_range(0..=150),
            value: rng.random_range(-1000..1000),
        })
        .filter(|e| seen.insert((e.key, e.ts)))
        .collect()
}

/// (key, ts, value) rows with their changes applied.
fn folded(batches: &[RecordBatch]) -> Vec<(i64, i64, i64)> {
    let mut counts: HashMap<(i64, i64, i64), i64> = HashMap::new();
    for b in batches {
        let column = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
        let [k, t, v] = ["key", "ts", "value"].map(column);
        let changes = b.column_by_name("_change").map(|c| c.as_string::<i32>());
        for i in 0..b.num_rows() {
            let delta = match changes.map(|c| c.value(i)) {
                None | Some("+I") | Some("+U") => 1,
                Some("-U") | Some("-D") => -1,
                Some(other) => panic!("unknown change {other}"),
            };
            *counts
                .entry((k.value(i), t.value(i), v.value(i)))
                .or_default() += delta;
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

async fn run(events: &[Event], p: usize, keys: &[&str], keep: Keep) -> Vec<(i64, i64, i64)> {
    let env = StreamEnvironment::new().with_parallelism(p);
    let rx = env
        .source(source(events, p, 200, Duration::from_millis(200)))
        .key_by(keys)
        .unwrap()
        .deduplicate(keep)
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rx.collect_all()).await;
    within(30, job.wait()).await.unwrap();
    folded(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_first_passes_each_event_once_and_keep_last_the_latest_row() {
    // Keep-first: each event (its key and ts are its id) delivered one to three
    // times, the copies up to 40 events later.
    let unique = distinct_events(4_000, 50, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut delivered: Vec<(usize, Event)> = Vec::new();
    for (i, e) in unique.iter().enumerate() {
        for _ in 0..rng.random_range(1..=3) {
            delivered.push((i + rng.random_range(0..40), *e));
        }
    }
    delivered.sort_by_key(|(at, _)| *at);
    let delivered: Vec<Event> = delivered.into_iter().map(|(_, e)| e).collect();
    assert!(
        delivered.len() > unique.len() * 3 / 2,
        "the test needs copies"
    );
    let mut expected: Vec<(i64, i64, i64)> =
        unique.iter().map(|e| (e.key, e.ts, e.value)).collect();
    expected.sort();

    // Keep-last: each key's row of the latest time.
    let mut latest: BTreeMap<i64, Event> = BTreeMap::new();
    for e in &unique {
        if latest.get(&e.key).is_none_or(|l| l.ts < e.ts) {
            latest.insert(e.key, *e);
        }
    }
    let mut expected_last: Vec<(i64, i64, i64)> =
        latest.values().map(|e| (e.key, e.ts, e.value)).collect();
    expected_last.sort();

    for p in [1, 2, 3] {
        let first = run(&delivered, p, &["key", "ts"], Keep::First { ttl: None }).await;
        assert_eq!(
            first.len(),
            expected.len(),
            "keep-first at p={p}: row count"
        );
        assert!(first == expected, "keep-first at p={p}: rows differ");
        let last = run(&unique, p, &["key"], Keep::Last).await;
        assert!(last == expected_last, "keep-last at p={p}: {last:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicate_needs_a_keyed_stream() {
    let env = StreamEnvironment::new();
    let events = distinct_events(10, 2, 1);
    let unkeyed = env
        .source(source(&events, 1, 5, Duration::ZERO))
        .deduplicate(Keep::Last);
    assert!(
        unkeyed.err().unwrap().to_string().contains("key_by"),
        "an unkeyed stream is refused"
    );
}

//! The Rust API's window top-N over a window aggregate, at parallelism 1, 2
//! and 3 over disordered input, against a plain-Rust reference: each
//! window's keys summed, sorted, the first three numbered.

use crate::common;
use crate::window_support;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType, UInt64Type};
use common::within;
use headwater::prelude::*;
use window_support::{Event, events, source};

const SIZE: i64 = 500;

/// (window start, rank, key, total)
type Row = (i64, u64, i64, i64);

fn reference(events: &[Event], n: usize) -> Vec<Row> {
    let mut totals: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for e in events {
        let start = e.ts.div_euclid(SIZE) * SIZE;
        *totals.entry(start).or_default().entry(e.key).or_default() += e.value;
    }
    let mut rows = Vec::new();
    for (start, keys) in totals {
        let mut ranked: Vec<(i64, i64)> = keys.into_iter().collect();
        // Largest total first; the smaller key first among equal totals.
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, (key, total)) in ranked.into_iter().take(n).enumerate() {
            rows.push((start, i as u64 + 1, key, total));
        }
    }
    rows.sort();
    rows
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let int = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
        let start = b
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let rank = b
            .column_by_name("rownum")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let (key, total) = (int("key"), int("total"));
        for i in 0..b.num_rows() {
            rows.push((start.value(i), rank.value(i), key.value(i), total.value(i)));
        }
    }
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_top_n_equals_a_sorted_reference() {
    let events = events(8_000, 25, 150, 51);
    let expected = reference(&events, 3);
    assert!(expected.len() > 200, "the test needs many windows");
    for p in [1, 2, 3] {
        let env = StreamEnvironment::new().with_parallelism(p);
        let rx = env
            .source(source(&events, p, 300, Duration::from_millis(200)))
            .key_by(&["key"])
            .unwrap()
            .window(Tumbling::of(Duration::from_millis(SIZE as u64)))
            .unwrap()
            .aggregate(vec![sum(col("value")).alias("total")])
            .unwrap()
            .window_top_n(
                3,
                &[],
                &[SortKey::descending("total"), SortKey::ascending("key")],
            )
            .unwrap()
            .collect()
            .unwrap();
        let job = env.execute().unwrap();
        let batches = within(120, rx.collect_all()).await;
        within(30, job.wait()).await.unwrap();
        let got = rows_of(&batches);
        assert_eq!(got.len(), expected.len(), "p={p}: row count");
        assert!(got == expected, "p={p}: rows differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_top_n_needs_window_results_and_an_order() {
    let env = StreamEnvironment::new();
    let plain = env.source(source(&events(10, 2, 0, 1), 1, 5, Duration::ZERO));
    let no_window = plain
        .clone()
        .window_top_n(1, &[], &[SortKey::ascending("value")]);
    assert!(
        no_window
            .err()
            .unwrap()
            .to_string()
            .contains("results of a window"),
        "a stream without windows is refused"
    );
    let no_order = plain.window_top_n(1, &[], &[]);
    assert!(
        no_order.err().unwrap().to_string().contains("order"),
        "a top-N needs an order"
    );
}

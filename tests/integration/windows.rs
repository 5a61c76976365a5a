//! Window operator end to end: every window kind, at parallelism 1 and 4, on
//! disordered input, against a plain Rust reference written from the window
//! definitions; session merging and splitting; late rows with and without
//! allowed lateness.

use crate::common;
use crate::window_support;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use common::{VecSource, within};
use headwater::prelude::*;
use window_support::{Event, batch_of, events, schema, source};

/// One result row: (key, window start, window end) → (count, sum, min, max).
type Results = BTreeMap<(i64, i64, i64), (i64, i64, i64, i64)>;

/// Every window a timestamp belongs to, from the definitions (not the operator's slicing).
fn windows_of(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
    match kind {
        WindowKind::Tumbling { size } => {
            let start = ts.div_euclid(size) * size;
            vec![(start, start + size)]
        }
        WindowKind::Hopping { size, slide } => {
            let mut out = Vec::new();
            let mut start = ts.div_euclid(slide) * slide;
            while start + size > ts {
                out.push((start, start + size));
                start -= slide;
            }
            out
        }
        WindowKind::Cumulating { step, max_size } => {
            let period = ts.div_euclid(max_size) * max_size;
            (1..=max_size / step)
                .map(|k| (period, period + k * step))
                .filter(|&(_, end)| end > ts)
                .collect()
        }
        WindowKind::Session { .. } => unreachable!(),
    }
}

fn add(results: &mut Results, key: (i64, i64, i64), value: i64) {
    let e = results.entry(key).or_insert((0, 0, i64::MAX, i64::MIN));
    e.0 += 1;
    e.1 += value;
    e.2 = e.2.min(value);
    e.3 = e.3.max(value);
}

/// The reference: plain Rust over all events.
fn reference(kind: WindowKind, events: &[Event]) -> Results {
    let mut results = Results::new();
    if let WindowKind::Session { gap } = kind {
        let mut by_key: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
        for e in events {
            by_key.entry(e.key).or_default().push(e);
        }
        for (key, mut evs) in by_key {
            evs.sort_by_key(|e| e.ts);
            let mut members: Vec<&Event> = Vec::new();
            let close = |members: &mut Vec<&Event>, results: &mut Results| {
                let start = members[0].ts;
                let end = members.last().unwrap().ts + gap;
                for e in members.drain(..) {
                    add(results, (key, start, end), e.value);
                }
            };
            for e in evs {
                if let Some(last) = members.last()
                    && e.ts > last.ts + gap
                {
                    close(&mut members, &mut results);
                }
                members.push(e);
            }
            close(&mut members, &mut results);
        }
        return results;
    }
    for e in events {
        for (start, end) in windows_of(kind, e.ts) {
            add(&mut results, (e.key, start, end), e.value);
        }
    }
    results
}

fn collect_results(batches: &[RecordBatch]) -> Vec<((i64, i64, i64), (i64, i64, i64, i64))> {
    let mut rows = Vec::new();
    for b in batches {
        let int = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let time = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<TimestampMillisecondType>()
                .clone()
        };
        let (key, start, end) = (int("key"), time("window_start"), time("window_end"));
        let (n, total, lo, hi) = (int("n"), int("total"), int("lo"), int("hi"));
        for i in 0..b.num_rows() {
            rows.push((
                (key.value(i), start.value(i), end.value(i)),
                (n.value(i), total.value(i), lo.value(i), hi.value(i)),
            ));
        }
    }
    rows
}

fn aggregates() -> Vec<datafusion::logical_expr::Expr> {
    vec![
        count(lit(1)).alias("n"),
        sum(col("value")).alias("total"),
        min(col("value")).alias("lo"),
        max(col("value")).alias("hi"),
    ]
}

/// Runs the window over `events` and returns its results and the late-row count.
async fn run(
    kind: WindowKind,
    events: &[Event],
    p: usize,
    memory_limit: Option<usize>,
) -> (Vec<((i64, i64, i64), (i64, i64, i64, i64))>, u64) {
    let env = StreamEnvironment::new().with_parallelism(p);
    let mut windowed = env
        .source(source(events, p, 300, Duration::from_millis(200)))
        .key_by(&["key"])
        .unwrap()
        .window(kind)
        .unwrap();
    if let Some(bytes) = memory_limit {
        windowed = windowed.memory_limit(bytes);
    }
    let rx = windowed.aggregate(aggregates()).unwrap().collect().unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rx.collect_all()).await;
    let result = within(30, job.wait()).await.unwrap();
    let late: u64 = result
        .metrics
        .operators
        .iter()
        .map(|(_, m)| m.counters.get("late_rows").copied().unwrap_or(0))
        .sum();
    (collect_results(&batches), late)
}

async fn check(kind: WindowKind) {
    let events = events(20_000, 40, 150, 7);
    let expected = reference(kind, &events);
    assert!(expected.len() > 100, "the test needs many windows");
    for (p, memory) in [(1, None), (4, None), (4, Some(1))] {
        let (rows, late) = run(kind, &events, p, memory).await;
        assert_eq!(
            late, 0,
            "{kind:?} p={p}: no row is late under this watermark"
        );
        let got: Results = rows.iter().copied().collect();
        assert_eq!(
            rows.len(),
            got.len(),
            "{kind:?} p={p}: a window was emitted twice"
        );
        assert_eq!(
            got.len(),
            expected.len(),
            "{kind:?} p={p} memory={memory:?}"
        );
        for (k, v) in &expected {
            assert_eq!(
                got.get(k),
                Some(v),
                "{kind:?} p={p} memory={memory:?}: window {k:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_equal_the_reference() {
    check(Tumbling::of(Duration::from_millis(500))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_equal_the_reference() {
    check(Hopping::of(
        Duration::from_millis(1000),
        Duration::from_millis(250),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulating_windows_equal_the_reference() {
    check(Cumulating::of(
        Duration::from_millis(200),
        Duration::from_millis(1000),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_equal_the_reference() {
    // About one event per key every 280 ms: gaps of 300 ms both join and split sessions.
    check(Session::with_gap(Duration::from_millis(300))).await;
}

fn ev(key: i64, ts: i64) -> Event {
    Event { key, ts, value: ts }
}

/// Runs batches in order at parallelism 1; the watermark after a batch is the
/// largest time so far, less `out_of_orderness`, less 1.
async fn run_batches(
    kind: WindowKind,
    out_of_orderness: Duration,
    lateness: Duration,
    batches: Vec<Vec<Event>>,
) -> (Vec<((i64, i64, i64), (i64, i64, i64, i64))>, Vec<i64>, u64) {
    let env = StreamEnvironment::new().with_parallelism(1);
    let src = VecSource {
        schema: schema(),
        batches: vec![batches.iter().map(|b| batch_of(b)).collect()],
        event_time: EventTimeSpec::column("ts", out_of_orderness),
        then_wait: false,
        name: "events".into(),
    };
    let results = env
        .source(src)
        .key_by(&["key"])
        .unwrap()
        .window(kind)
        .unwrap()
        .allowed_lateness(lateness)
        .aggregate(aggregates())
        .unwrap();
    let late = results.late_rows().unwrap().collect().unwrap();
    let rx = results.collect().unwrap();
    let job = env.execute().unwrap();
    let (batches, late_batches) = within(60, async {
        tokio::join!(rx.collect_all(), late.collect_all())
    })
    .await;
    let result = within(30, job.wait()).await.unwrap();
    let counted: u64 = result
        .metrics
        .operators
        .iter()
        .map(|(_, m)| m.counters.get("late_rows").copied().unwrap_or(0))
        .sum();
    let mut late_ts: Vec<i64> = late_batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("ts")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    late_ts.sort();
    (collect_results(&batches), late_ts, counted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_merge_when_a_row_bridges_them_and_split_past_the_gap() {
    let gap = Session::with_gap(Duration::from_millis(10));
    // Key 1: 0 and 5 make [0, 15); 20 makes [20, 30); then 12 bridges both (12 <= 15, 20 <= 22).
    // Key 2: 0 and 11 are 11 apart: two sessions. Keys 3 (across batches) and 4
    // (in one batch): 0 and 10 are exactly the gap apart: one session.
    let batches = vec![
        vec![
            ev(1, 0),
            ev(1, 5),
            ev(1, 20),
            ev(2, 0),
            ev(3, 0),
            ev(4, 0),
            ev(4, 10),
        ],
        vec![ev(1, 12), ev(2, 11), ev(3, 10)],
        vec![ev(9, 1_000)],
    ];
    // A watermark far behind: nothing fires before the input ends.
    let (rows, late, _) = run_batches(
        gap,
        Duration::from_millis(1_000),
        Duration::ZERO,
        batches.clone(),
    )
    .await;
    assert!(late.is_empty(), "{late:?}");
    let got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|((k, s, e), (n, ..))| (*k, *s, *e, *n))
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, 0, 30, 4),
            (2, 0, 10, 1),
            (2, 11, 21, 1),
            (3, 0, 20, 2),
            (4, 0, 20, 2),
            (9, 1_000, 1_010, 1)
        ]
    );

    // The same rows with the watermark right behind them: sessions fire after
    // the first batch, and the late rows (allowed for 100 ms) update them.
    let (rows, late, _) =
        run_batches(gap, Duration::ZERO, Duration::from_millis(100), batches).await;
    assert!(late.is_empty(), "{late:?}");
    let got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|((k, s, e), (n, ..))| (*k, *s, *e, *n))
        .collect();
    // Watermark 19 fires [0,15) of key 1, [0,10) of keys 2 and 3. Then 12
    // bridges key 1's sessions into [0,30), still open; 11 starts a new
    // session of key 2; 10 extends key 3's fired session to [0,20), whose end
    // has passed, so it is sent again at once.
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            (1, 0, 15, 2),
            (1, 0, 30, 4),
            (2, 0, 10, 1),
            (2, 11, 21, 1),
            (3, 0, 10, 1),
            (3, 0, 20, 2),
            (4, 0, 20, 2),
            (9, 1_000, 1_010, 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_update_fired_windows_within_the_lateness_and_go_to_the_side_output_after() {
    let tumbling = Tumbling::of(Duration::from_millis(10));
    let batches = vec![
        vec![ev(1, 1), ev(1, 2), ev(1, 15)], // watermark 14: [0, 10) fires with 2 rows
        vec![ev(1, 5)],                      // late, within 20 ms: [0, 10) again with 3
        vec![ev(1, 40)],                     // watermark 39: [10, 20) fires; [0, 10) is dropped
        vec![ev(1, 3), ev(1, 25), ev(1, 8)], // 3 and 8 too late; 25 fires [20, 30) at once
        vec![ev(1, 26)],                     // late, within: [20, 30) again with 2
    ];
    let (rows, late, counted) =
        run_batches(tumbling, Duration::ZERO, Duration::from_millis(20), batches).await;
    let got: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|((k, s, _), (n, ..))| (*k, *s, *n))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 0, 2),
            (1, 0, 3),
            (1, 10, 1),
            (1, 20, 1),
            (1, 20, 2),
            (1, 40, 1)
        ],
        "results in the order sent"
    );
    assert_eq!(late, vec![3, 8]);
    assert_eq!(counted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lateness_every_late_row_reaches_the_side_output() {
    let hopping = Hopping::of(Duration::from_millis(20), Duration::from_millis(10));
    let batches = vec![
        vec![ev(1, 1), ev(2, 12), ev(1, 35)], // watermark 34: [-10,10), [0,20), [10,30) fire
        vec![ev(1, 9), ev(2, 25), ev(1, 31)], // 9: all its windows fired: late. 25: [20,40) is open
    ];
    let (rows, late, counted) = run_batches(hopping, Duration::ZERO, Duration::ZERO, batches).await;
    assert_eq!(late, vec![9]);
    assert_eq!(counted, 1);
    let got: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|((k, s, _), (n, ..))| (*k, *s, *n))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    // Key 2's row at 25 went into [10, 30) too, but that window had fired:
    // with no lateness it is not sent again.
    assert_eq!(
        sorted,
        vec![
            (1, -10, 1),
            (1, 0, 1),
            (1, 20, 2),
            (1, 30, 2),
            (2, 0, 1),
            (2, 10, 1),
            (2, 20, 1)
        ]
    );
}

/// Aggregates whose state is not a plain number (avg's count and sum, the
/// HyperLogLog sketch of approx_distinct, the value set of count distinct),
/// and a FILTER clause: the window's results, with partials spilled through
/// RocksDB at parallelism 3, equal DataFusion's batch query over the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_datafusion_aggregate_matches_the_same_query_in_datafusion() {
    use datafusion::functions_aggregate::expr_fn::count_distinct;
    use datafusion::logical_expr::ExprFunctionExt;
    use datafusion::prelude::SessionContext;

    let events = events(8_000, 25, 100, 11);
    let env = StreamEnvironment::new().with_parallelism(3);
    let rx = env
        .source(source(&events, 3, 250, Duration::from_millis(200)))
        .key_by(&["key"])
        .unwrap()
        .window(Tumbling::of(Duration::from_millis(700)))
        .unwrap()
        .memory_limit(1)
        .aggregate(vec![
            avg(col("value")).alias("mean"),
            approx_distinct(col("value")).alias("approx"),
            count_distinct(col("value") % lit(10)).alias("digits"),
            sum(col("value"))
                .filter(col("value").gt(lit(0)))
                .build()
                .unwrap()
                .alias("positive"),
        ])
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rx.collect_all()).await;
    within(30, job.wait()).await.unwrap();

    let ctx = SessionContext::new();
    ctx.register_batch("events", batch_of(&events)).unwrap();
    let oracle = ctx
        .sql(
            "SELECT key, (ts - ((ts % 700) + 700) % 700) AS window_start, avg(value) AS mean, \
             approx_distinct(value) AS approx, count(DISTINCT value % 10) AS digits, \
             sum(value) FILTER (WHERE value > 0) AS positive \
             FROM events GROUP BY 1, 2",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();

    type Row = (f64, u64, i64, Option<i64>);
    let read = |batches: &[RecordBatch], start_is_timestamp: bool| {
        let mut rows: BTreeMap<(i64, i64), Row> = BTreeMap::new();
        for b in batches {
            let key = b.column_by_name("key").unwrap().as_primitive::<Int64Type>();
            let start = b.column_by_name("window_start").unwrap();
            let start: Vec<i64> = if start_is_timestamp {
                start
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec()
            } else {
                start.as_primitive::<Int64Type>().values().to_vec()
            };
            let mean = b
                .column_by_name("mean")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>();
            let approx = b
                .column_by_name("approx")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>();
            let digits = b
                .column_by_name("digits")
                .unwrap()
                .as_primitive::<Int64Type>();
            let positive = b
                .column_by_name("positive")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let positive =
                    (!arrow::array::Array::is_null(positive, i)).then(|| positive.value(i));
                let row = (mean.value(i), approx.value(i), digits.value(i), positive);
                assert!(
                    rows.insert((key.value(i), start[i]), row).is_none(),
                    "duplicate window"
                );
            }
        }
        rows
    };
    let got = read(&batches, true);
    let expected = read(&oracle, false);
    assert!(expected.len() > 100);
    assert_eq!(got.len(), expected.len());
    for (k, e) in &expected {
        let g = &got[k];
        assert!(
            (g.0 - e.0).abs() <= 1e-9 * e.0.abs().max(1.0),
            "avg of {k:?}: {} vs {}",
            g.0,
            e.0
        );
        assert_eq!((g.1, g.2, g.3), (e.1, e.2, e.3), "window {k:?}");
    }
}

#[tokio::test]
async fn bad_aggregates_are_refused_with_the_expression() {
    let env = StreamEnvironment::new();
    let keyed = || {
        env.source(source(&events(10, 2, 0, 1), 1, 10, Duration::ZERO))
            .key_by(&["key"])
            .unwrap()
    };
    let unknown = keyed()
        .window(Tumbling::of(Duration::from_secs(1)))
        .unwrap()
        .aggregate(vec![sum(col("price"))])
        .err()
        .expect("an unknown column is refused")
        .to_string();
    assert!(unknown.contains("price"), "{unknown}");
    let not_aggregate = keyed()
        .window(Tumbling::of(Duration::from_secs(1)))
        .unwrap()
        .aggregate(vec![col("value")])
        .err()
        .expect("a plain column is not an aggregate")
        .to_string();
    assert!(not_aggregate.contains("value"), "{not_aggregate}");
    let bad_hop = keyed()
        .window(Hopping::of(Duration::from_secs(10), Duration::from_secs(3)))
        .err()
        .expect("size not a multiple of slide")
        .to_string();
    assert!(bad_hop.contains("whole number of slides"), "{bad_hop}");
    let unkeyed = env
        .source(source(&events(10, 2, 0, 1), 1, 10, Duration::ZERO))
        .window(Tumbling::of(Duration::from_secs(1)))
        .err()
        .expect("window needs key_by")
        .to_string();
    assert!(unkeyed.contains("key_by"), "{unkeyed}");
}

//! The same job gives the same multiset of rows at parallelism 1, 2 and 4, and
//! that multiset equals a plain Rust reference over the same events.

use crate::common;

use common::within;
use headwater::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    event_id: String,
    event_type: String,
    order_id: i64,
    customer_id: i64,
    amount: f64,
    items: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Selected {
    order_id: i64,
    customer_id: i64,
    event_type: String,
    double_amount: f64,
}

#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Out {
    customer_id: i64,
    order_id: i64,
    kind: String,
    cents: i64,
}

fn source() -> OrdersSource {
    OrdersSource::new(9).orders(4_000).duplicate_rate(0.05)
}

/// Arrow filter and select, a hash exchange, typed flat_map and filter.
async fn run(parallelism: usize) -> Vec<Out> {
    let env = StreamEnvironment::new().with_parallelism(parallelism);
    let rows = env
        .source(source().batch_size_for_test(97))
        .filter(col("amount").gt(lit(300)))
        .unwrap()
        .select(vec![
            col("order_id"),
            col("customer_id"),
            col("event_type"),
            (col("amount") * lit(2.0)).alias("double_amount"),
        ])
        .unwrap()
        .typed::<Selected>()
        .unwrap()
        .key_by(|s| s.customer_id)
        .unwrap()
        .flat_map(|s| {
            let out = Out {
                customer_id: s.customer_id,
                order_id: s.order_id,
                kind: s.event_type.to_uppercase(),
                cents: (s.double_amount * 100.0).round() as i64,
            };
            // Shipped orders count twice, to exercise flat_map.
            if s.event_type == "order.shipped" {
                vec![out.clone(), out]
            } else {
                vec![out]
            }
        })
        .unwrap()
        .filter(|o| o.customer_id % 7 != 0)
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let mut rows = within(60, rows.collect_all()).await.unwrap();
    let result = within(10, job.wait()).await.unwrap();
    assert!(!result.stopped);
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// The same computation in plain Rust, over the source's events read on their own.
async fn reference() -> Vec<Out> {
    let env = StreamEnvironment::new().with_parallelism(1);
    let events = env
        .source(source())
        .typed::<Event>()
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let events = within(60, events.collect_all()).await.unwrap();
    job.wait().await.unwrap();
    let mut out = Vec::new();
    for e in events {
        if e.amount <= 300.0 || e.customer_id % 7 == 0 {
            continue;
        }
        let o = Out {
            customer_id: e.customer_id,
            order_id: e.order_id,
            kind: e.event_type.to_uppercase(),
            cents: (e.amount * 2.0 * 100.0).round() as i64,
        };
        if e.event_type == "order.shipped" {
            out.push(o.clone());
        }
        out.push(o);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

trait TestBatches {
    fn batch_size_for_test(self, n: usize) -> Self;
}

impl TestBatches for OrdersSource {
    fn batch_size_for_test(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_rows_at_parallelism_1_2_4_and_equal_to_reference() {
    let expected = reference().await;
    assert!(
        expected.len() > 1_000,
        "the reference should have plenty of rows: {}",
        expected.len()
    );
    for p in [1, 2, 4] {
        let got = run(p).await;
        assert_eq!(got.len(), expected.len(), "row count at parallelism {p}");
        assert!(
            got == expected,
            "rows differ from the reference at parallelism {p}"
        );
    }
}

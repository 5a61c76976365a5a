//! The typed API: a type that does not match the stream is refused before the
//! job starts, and union merges typed streams.

use crate::common;

use common::within;
use headwater::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Wrong {
    order_id: i64,
    price_in_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    event_id: String,
    order_id: i64,
}

#[tokio::test]
async fn a_type_with_fields_the_stream_lacks_is_refused() {
    let env = StreamEnvironment::new();
    let error = env
        .source(OrdersSource::new(1).orders(10))
        .typed::<Wrong>()
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("price_in_cents") && message.contains("order_id, customer_id"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_of_typed_streams_keeps_every_row() {
    let env = StreamEnvironment::new().with_parallelism(2);
    let a = env
        .source(OrdersSource::new(1).orders(500))
        .typed::<Event>()
        .unwrap();
    let b = env
        .source(OrdersSource::new(2).orders(700))
        .typed::<Event>()
        .unwrap();
    let b = b
        .map(|e| Event {
            event_id: format!("b-{}", e.event_id),
            ..e
        })
        .unwrap();
    let rows = a.union(vec![b]).unwrap().collect().unwrap();
    let job = env.execute().unwrap();
    let rows = within(60, rows.collect_all()).await.unwrap();
    let result = within(10, job.wait()).await.unwrap();
    let from_a = result.metrics.operator("orders").rows_out;
    let from_b = result.metrics.operator("orders_2").rows_out;
    assert_eq!(rows.len() as u64, from_a + from_b);
    assert_eq!(
        rows.iter().filter(|e| e.event_id.starts_with("b-")).count() as u64,
        from_b
    );
    assert!(from_a > 1000 && from_b > 1400);
}

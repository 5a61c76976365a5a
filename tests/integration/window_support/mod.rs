//! Events for the window tests: keys, disordered times and values, as
//! batches dealt to source subtasks.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use headwater::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::VecSource;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Int64, true),
    ]))
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub key: i64,
    pub ts: i64,
    pub value: i64,
}

/// `n` events over `keys` keys, time moving forward ~7 ms per event with up to
/// `disorder` ms of jitter backwards, so rows arrive out of order.
pub fn events(n: usize, keys: i64, disorder: i64, seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| Event {
            key: rng.random_range(0..keys),
            ts: 1_000 + i as i64 * 7 - rng.random_range(0..=disorder),
            value: rng.random_range(-1000..1000),
        })
        .collect()
}

pub fn batch_of(events: &[Event]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.key))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.ts))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.value))),
        ],
    )
    .unwrap()
}

/// Events in batches of `batch` rows, dealt round-robin to `p` source subtasks.
pub fn source(events: &[Event], p: usize, batch: usize, out_of_orderness: Duration) -> VecSource {
    let mut batches = vec![Vec::new(); p];
    for (i, chunk) in events.chunks(batch).enumerate() {
        batches[i % p].push(batch_of(chunk));
    }
    VecSource {
        schema: schema(),
        batches,
        event_time: EventTimeSpec::column("ts", out_of_orderness),
        then_wait: false,
        name: "events".into(),
    }
}

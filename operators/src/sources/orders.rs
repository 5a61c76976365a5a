//! `orders`: the order-lifecycle events of an online shop, deterministic by seed.
//!
//! Each order is created, then either paid, reserved in the warehouse and
//! shipped, or cancelled (before or after payment). Every event carries
//! `event_id`, `event_type`, `order_id`, `customer_id`, `amount`, `items` and
//! `event_time`.
//!
//! Events arrive out of order, by at most `max_delay` in event time, and a share
//! of them (`duplicate_rate`) arrives twice with the same `event_id`, as
//! at-least-once brokers deliver. Every order is a function of the seed and its
//! number alone, and order `n` is made by subtask `n % parallelism`: the events
//! are the same at any parallelism.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow::array::{
    Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::graph::SourceFactory;
use headwater_runtime::{
    BoxError, EventTimeSpec, OperatorContext, Source, SourcePoll, SubtaskInfo,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SourceSpec;
use super::rate_limit::RateLimiter;

/// The event types, in lifecycle order.
pub const EVENT_TYPES: [&str; 5] = [
    "order.created",
    "payment.processed",
    "inventory.reserved",
    "order.shipped",
    "order.cancelled",
];

const CREATED: u8 = 0;
const PAID: u8 = 1;
const RESERVED: u8 = 2;
const SHIPPED: u8 = 3;
const CANCELLED: u8 = 4;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("items", DataType::Int32, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
});

/// The schema of order events.
pub fn order_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The `orders` generator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersSource {
    pub seed: u64,
    /// The number of orders; `None` for an unbounded stream.
    pub orders: Option<u64>,
    /// How many orders are created per second of event time.
    pub orders_per_second: f64,
    /// The most an event arrives after a later one; the watermark allows for it.
    pub max_delay: Duration,
    /// The share of events delivered twice.
    pub duplicate_rate: f64,
    pub customers: u64,
    /// The event time of the first order, in ms since the epoch.
    pub start_time_ms: i64,
    /// Wall-clock pace in events per second, over all subtasks; `None` for as fast as possible.
    pub events_per_second: Option<f64>,
    pub batch_size: usize,
}

impl Default for OrdersSource {
    fn default() -> Self {
        OrdersSource {
            seed: 0,
            orders: None,
            orders_per_second: 100.0,
            max_delay: Duration::from_secs(2),
            duplicate_rate: 0.01,
            customers: 1000,
            start_time_ms: 1_735_689_600_000, // 2025-01-01T00:00:00Z
            events_per_second: None,
            batch_size: 8192,
        }
    }
}

impl OrdersSource {
    pub fn new(seed: u64) -> Self {
        OrdersSource {
            seed,
            ..Default::default()
        }
    }

    /// Stops after this many orders (a bounded stream).
    pub fn orders(mut self, orders: u64) -> Self {
        self.orders = Some(orders);
        self
    }

    /// Paces the stream to about this many events per second of wall-clock time.
    pub fn events_per_second(mut self, rate: f64) -> Self {
        self.events_per_second = Some(rate);
        self
    }

    pub fn duplicate_rate(mut self, rate: f64) -> Self {
        self.duplicate_rate = rate.clamp(0.0, 1.0);
        self
    }

    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Starts event time at the current wall-clock time, for live demos.
    pub fn starting_now(mut self) -> Self {
        self.start_time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self
    }
}

impl SourceSpec for OrdersSource {
    fn default_name(&self) -> String {
        "orders".into()
    }

    fn schema(&self) -> SchemaRef {
        order_schema()
    }

    fn event_time(&self) -> EventTimeSpec {
        EventTimeSpec::column("event_time", self.max_delay)
    }

    fn factory(&self) -> SourceFactory {
        let spec = self.clone();
        Arc::new(move |subtask: &SubtaskInfo| {
            let rate = spec
                .events_per_second
                .map(|r| RateLimiter::new(r / subtask.parallelism as f64));
            Ok(Box::new(OrdersGenerator {
                next_order: subtask.index as u64,
                step: subtask.parallelism as u64,
                pending: BinaryHeap::new(),
                sequence: 0,
                rate,
                spec: spec.clone(),
            }) as Box<dyn Source>)
        })
    }
}

/// An event waiting for its delivery time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Pending {
    delivery: i64,
    sequence: u64,
    event_time: i64,
    order_id: i64,
    customer_id: i64,
    amount: f64,
    items: i32,
    kind: u8,
    step: u8,
}

impl Eq for Pending {}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.delivery, self.sequence).cmp(&(other.delivery, other.sequence))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct OrdersGenerator {
    spec: OrdersSource,
    next_order: u64,
    step: u64,
    pending: BinaryHeap<Reverse<Pending>>,
    sequence: u64,
    rate: Option<RateLimiter>,
}

impl OrdersGenerator {
    fn created_at(&self, order: u64) -> i64 {
        let rate = self.spec.orders_per_second.max(1e-3); // NaN and 0 mean "slowest"
        self.spec
            .start_time_ms
            .saturating_add((order as f64 * 1000.0 / rate) as i64)
    }

    fn has_more_orders(&self) -> bool {
        self.spec.orders.is_none_or(|n| self.next_order < n)
    }

    /// Plans every event of one order, with its delivery times.
    fn plan_order(&mut self, order: u64) {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.spec.seed ^ order.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let created = self.created_at(order);
        let customer_id = rng.random_range(1..=self.spec.customers.max(1)) as i64;
        let items = rng.random_range(1..=5);
        let amount = (rng.random_range(500..50_000) as f64) / 100.0 * items as f64;
        let amount = (amount * 100.0).round() / 100.0;
        let mut events = vec![(CREATED, created)];
        let fate: f64 = rng.random();
        if fate < 0.08 {
            events.push((CANCELLED, created + rng.random_range(1_000..30_000)));
        } else {
            let paid = created + rng.random_range(1_000..10_000);
            events.push((PAID, paid));
            if fate < 0.12 {
                events.push((CANCELLED, paid + rng.random_range(1_000..20_000)));
            } else {
                let reserved = paid + rng.random_range(500..5_000);
                events.push((RESERVED, reserved));
                events.push((SHIPPED, reserved + rng.random_range(10_000..60_000)));
            }
        }
        let max_delay = self.spec.max_delay.as_millis() as i64;
        for (step, (kind, event_time)) in events.into_iter().enumerate() {
            let copies = if rng.random::<f64>() < self.spec.duplicate_rate {
                2
            } else {
                1
            };
            for _ in 0..copies {
                // Most events arrive promptly, a few close to the bound.
                let u: f64 = rng.random();
                let delay = (max_delay as f64 * u * u * u) as i64;
                self.sequence += 1;
                self.pending.push(Reverse(Pending {
                    delivery: event_time.saturating_add(delay),
                    sequence: self.sequence,
                    event_time,
                    order_id: order as i64 + 1,
                    customer_id,
                    amount,
                    items,
                    kind,
                    step: step as u8,
                }));
            }
        }
    }

    /// Up to `rows` events in delivery order, or `None` when all are sent.
    fn generate(&mut self, rows: usize) -> Option<RecordBatch> {
        let mut out = Vec::with_capacity(rows);
        while out.len() < rows {
            let next_created = if self.has_more_orders() {
                self.created_at(self.next_order)
            } else {
                i64::MAX
            };
            match self.pending.peek() {
                // Nothing planned later can be delivered before `next_created`.
                Some(Reverse(p)) if p.delivery <= next_created => {
                    out.push(self.pending.pop().expect("peeked").0);
                }
                _ if self.has_more_orders() => {
                    let order = self.next_order;
                    self.next_order += self.step;
                    self.plan_order(order);
                }
                _ => break,
            }
        }
        (!out.is_empty()).then(|| to_batch(&out))
    }
}

fn to_batch(events: &[Pending]) -> RecordBatch {
    let n = events.len();
    let mut event_id = StringBuilder::with_capacity(n, n * 12);
    let mut event_type = StringBuilder::with_capacity(n, n * 16);
    let mut order_id = Int64Builder::with_capacity(n);
    let mut customer_id = Int64Builder::with_capacity(n);
    let mut amount = Float64Builder::with_capacity(n);
    let mut items = Int32Builder::with_capacity(n);
    let mut event_time = TimestampMillisecondBuilder::with_capacity(n);
    let mut id = String::with_capacity(24);
    for e in events {
        use std::fmt::Write;
        id.clear();
        let _ = write!(id, "o{}-{}", e.order_id, e.step);
        event_id.append_value(&id);
        event_type.append_value(EVENT_TYPES[e.kind as usize]);
        order_id.append_value(e.order_id);
        customer_id.append_value(e.customer_id);
        amount.append_value(e.amount);
        items.append_value(e.items);
        event_time.append_value(e.event_time);
    }
    RecordBatch::try_new(
        order_schema(),
        vec![
            Arc::new(event_id.finish()),
            Arc::new(event_type.finish()),
            Arc::new(order_id.finish()),
            Arc::new(customer_id.finish()),
            Arc::new(amount.finish()),
            Arc::new(items.finish()),
            Arc::new(event_time.finish()),
        ],
    )
    .expect("columns match the order schema")
}

#[async_trait]
impl Source for OrdersGenerator {
    fn schema(&self) -> SchemaRef {
        order_schema()
    }

    async fn next(&mut self, _ctx: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        let rows = match &mut self.rate {
            Some(rate) => {
                let rows = rate.batch_size(self.spec.batch_size);
                rate.acquire(rows).await;
                rows
            }
            None => self.spec.batch_size.max(1),
        };
        Ok(match self.generate(rows) {
            Some(batch) => SourcePoll::Batch(batch),
            None => SourcePoll::Finished,
        })
    }

    /// The next order to plan, and the planned events not yet delivered.
    async fn snapshot_state(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let pending: Vec<Pending> = self.pending.iter().map(|p| p.0).collect();
        let state = (self.step, self.next_order, self.sequence, pending);
        Ok(Some(postcard::to_stdvec(&state)?))
    }

    async fn restore_state(&mut self, restored: Restored) -> Result<(), BoxError> {
        let Some(state) = restored.own_state("the orders source")? else {
            return Ok(());
        };
        let (step, next_order, sequence, pending): (u64, u64, u64, Vec<Pending>) =
            postcard::from_bytes(state)
                .map_err(|e| format!("a stored orders position does not decode: {e}"))?;
        if step != self.step {
            return Err(format!("a stored orders position is of parallelism {step}").into());
        }
        self.next_order = next_order;
        self.sequence = sequence;
        self.pending = pending.into_iter().map(Reverse).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, TimestampMillisecondArray};
    use arrow::datatypes::TimestampMillisecondType;

    use super::*;

    fn all_events(spec: &OrdersSource, parallelism: u64) -> Vec<RecordBatch> {
        let mut batches = Vec::new();
        for index in 0..parallelism {
            let mut g = OrdersGenerator {
                spec: spec.clone(),
                next_order: index,
                step: parallelism,
                pending: BinaryHeap::new(),
                sequence: 0,
                rate: None,
            };
            while let Some(b) = g.generate(100) {
                batches.push(b);
            }
        }
        batches
    }

    #[test]
    fn lateness_stays_within_the_bound() {
        let spec = OrdersSource::new(3)
            .orders(2_000)
            .max_delay(Duration::from_millis(1500));
        let batches = all_events(&spec, 1);
        let mut max_seen = i64::MIN;
        let mut late = 0;
        for b in &batches {
            let t: &TimestampMillisecondArray =
                b.column(6).as_primitive::<TimestampMillisecondType>();
            for v in t.values() {
                assert!(
                    max_seen == i64::MIN || *v >= max_seen - 1500,
                    "an event {}ms late",
                    max_seen - v
                );
                late += (*v < max_seen) as usize;
                max_seen = max_seen.max(*v);
            }
        }
        assert!(late > 0, "the stream should be out of order");
    }

    #[test]
    fn same_events_at_any_parallelism_with_duplicates() {
        let spec = OrdersSource::new(11).orders(500).duplicate_rate(0.05);
        let ids = |p| {
            let mut ids: Vec<String> = all_events(&spec, p)
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            ids.sort();
            ids
        };
        let one = ids(1);
        assert_eq!(one, ids(3));
        let distinct: std::collections::HashSet<_> = one.iter().collect();
        assert!(
            distinct.len() < one.len(),
            "some events are delivered twice"
        );
        assert!(one.len() - distinct.len() > 20);
    }
}

//! `examples/kafka_orders.sql` in Rust: order events in from Kafka,
//! per-minute revenue and each order's status out to Kafka, exactly once.
//!
//!     cargo run --release --example kafka_orders -- [--checkpoint-dir DIR] [--bootstrap HOST:PORT]
//!
//! It needs a broker (127.0.0.1:9092 unless `--bootstrap` says otherwise) and
//! the `orders` topic filled by `examples/kafka_load.sql`: see "Kafka quick
//! start" in the README. It runs until Ctrl-C, which stops it with a final
//! checkpoint; started again over the same checkpoint directory, it goes on
//! where it stopped. It writes:
//! - `revenue-per-minute-rs`: paid revenue per minute of event time;
//! - `order-status-rs`: per order, the furthest stage it reached (1 created,
//!   2 paid, 3 inventory reserved, 4 shipped, 5 cancelled) and its events, an
//!   upsert topic keyed by `order_id`, kept by a keyed process function;
//! - `orders-dlq-rs`: records that are not order events, as they came.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use headwater::prelude::*;
use headwater::runtime::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderEvent {
    event_type: String,
    order_id: i64,
}

/// What `order-status-rs` holds per order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderStatus {
    order_id: i64,
    stage: i32,
    events: i64,
}

/// The stage of an event type, in lifecycle order.
fn stage(event_type: &str) -> i32 {
    match event_type {
        "order.created" => 1,
        "payment.processed" => 2,
        "inventory.reserved" => 3,
        "order.shipped" => 4,
        "order.cancelled" => 5,
        _ => 0,
    }
}

/// Keeps each order's furthest stage and event count in keyed state, and
/// sends the order's new status with every event.
#[derive(Clone)]
struct TrackStatus {
    status: Arc<ValueState<(i32, i64)>>,
}

impl KeyedProcessFunction<i64, OrderEvent, OrderStatus> for TrackStatus {
    fn process_element(
        &mut self,
        event: OrderEvent,
        ctx: &mut ProcessContext<'_, i64>,
        out: &mut Vec<OrderStatus>,
    ) -> Result<(), BoxError> {
        let (furthest, events) = ctx.value(&self.status)?.unwrap_or((0, 0));
        let now = (furthest.max(stage(&event.event_type)), events + 1);
        ctx.set_value(&self.status, &now)?;
        out.push(OrderStatus {
            order_id: event.order_id,
            stage: now.0,
            events: now.1,
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() -> headwater::Result<()> {
    let (checkpoints, servers) = parse_args();
    let env = StreamEnvironment::new()
        .with_parallelism(2)
        .with_name("kafka-orders-rs")
        .with_checkpoints(&checkpoints, Duration::from_secs(1));

    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("order_id", DataType::Int64, true),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]));
    let orders = env.source(
        KafkaSource::json(&servers, Topics::Named(vec!["orders".into()]), schema)
            .with_property("group.id", "kafka-orders-rs")
            .with_startup(StartupMode::EarliestOffset)
            .with_event_time(EventTimeSpec::column("event_time", Duration::from_secs(2)))
            .with_idle_timeout(Duration::from_secs(5))
            .on_decode_error(DecodeErrorPolicy::DeadLetter),
    );
    // Bad records: to their own topic, exactly once.
    orders.dead_letters().sink(KafkaSink::dead_letters(
        &servers,
        "orders-dlq-rs",
        "kafka-orders-rs-dlq",
    ))?;

    orders
        .clone()
        .filter(col("event_type").eq(lit("payment.processed")))?
        .key_by(&["customer_id"])?
        .window(Tumbling::of(Duration::from_secs(60)))?
        .aggregate(vec![
            count(lit(1)).alias("payments"),
            sum(col("amount")).alias("revenue"),
        ])?
        .sink(
            KafkaSink::json(&servers, "revenue-per-minute-rs")
                .exactly_once("kafka-orders-rs-revenue"),
        )?;

    orders
        .select(vec![col("event_type"), col("order_id")])?
        .typed::<OrderEvent>()?
        .key_by(|e| e.order_id)?
        .process(TrackStatus {
            status: Arc::new(ValueState::unregistered(StateDescriptor::new("status"))),
        })?
        .sink(
            KafkaSink::upsert(&servers, "order-status-rs", &["order_id"])
                .exactly_once("kafka-orders-rs-status"),
        )?;

    eprintln!("{}", env.explain());
    eprintln!("Reading topic orders on {servers}; Ctrl-C stops the job with a final checkpoint.");
    let job = env.execute()?;
    let stop = job.stop_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping...");
            stop.cancel();
        }
    });
    let result = job.wait().await?;
    eprintln!(
        "stopped after {:.1}s: {} events read",
        result.duration.as_secs_f64(),
        result.metrics.operator("kafka").rows_out
    );
    Ok(())
}

fn parse_args() -> (String, String) {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    (
        value("--checkpoint-dir").unwrap_or_else(|| "/tmp/kafka-orders-rs".into()),
        value("--bootstrap").unwrap_or_else(|| "127.0.0.1:9092".into()),
    )
}

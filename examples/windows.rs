//! Event-driven metrics: drop redelivered events with a keyed process
//! function, then revenue per customer in one-minute tumbling windows.
//!
//!     cargo run --release --example windows
//!
//! The orders source redelivers 2% of its events (same `event_id`) and sends
//! events up to 5 s out of order. The dedup function keeps one flag per
//! `event_id` in RocksDB, expiring after ten minutes (state TTL). The window
//! then aggregates with DataFusion aggregates, pre-aggregating each batch.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use datafusion::prelude::cast;
use headwater::prelude::*;
use headwater::runtime::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    event_id: String,
    event_type: String,
    order_id: i64,
    customer_id: i64,
    amount: f64,
    event_time: i64,
}

/// Passes the first event of each `event_id`, drops redeliveries.
#[derive(Clone)]
struct FirstDelivery {
    seen: Arc<ValueState<bool>>,
}

impl KeyedProcessFunction<String, Order, Order> for FirstDelivery {
    fn process_element(
        &mut self,
        order: Order,
        ctx: &mut ProcessContext<'_, String>,
        out: &mut Vec<Order>,
    ) -> Result<(), BoxError> {
        if ctx.value(&self.seen)?.is_none() {
            ctx.set_value(&self.seen, &true)?;
            out.push(order);
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Revenue {
    customer_id: i64,
    window_start: i64,
    payments: i64,
    revenue: f64,
    orders: i64,
}

#[tokio::main]
async fn main() -> headwater::Result<()> {
    let env = StreamEnvironment::new().with_parallelism(2);
    let orders = env
        .source(OrdersSource::new(7).orders(50_000).duplicate_rate(0.02))
        .select(vec![
            col("event_id"),
            col("event_type"),
            col("order_id"),
            col("customer_id"),
            col("amount"),
            // Epoch milliseconds, for the typed row.
            cast(col("event_time"), DataType::Int64).alias("event_time"),
        ])?;
    let unique = orders
        .typed::<Order>()?
        .key_by(|o| o.event_id.clone())?
        .process(FirstDelivery {
            seen: Arc::new(ValueState::unregistered(
                StateDescriptor::new("seen").with_ttl(Duration::from_secs(600)),
            )),
        })?;
    let revenue = unique
        .into_data_stream()
        .filter(col("event_type").eq(lit("payment.processed")))?
        .key_by(&["customer_id"])?
        .window(Tumbling::of(Duration::from_secs(60)))?
        .allowed_lateness(Duration::from_secs(10))
        .aggregate(vec![
            count(lit(1)).alias("payments"),
            sum(col("amount")).alias("revenue"),
            approx_distinct(col("order_id")).alias("orders"),
        ])?;
    let late = revenue.late_rows()?.collect()?;
    let results = revenue
        .select(vec![
            col("customer_id"),
            cast(col("window_start"), DataType::Int64).alias("window_start"),
            col("payments"),
            col("revenue"),
            cast(col("orders"), DataType::Int64).alias("orders"),
        ])?
        .typed::<Revenue>()?
        .collect()?;
    let job = env.execute()?;
    let (rows, late) = tokio::join!(results.collect_all(), late.collect_all());
    let result = job.wait().await?;
    let mut rows = rows?;
    rows.sort_by(|a, b| b.revenue.total_cmp(&a.revenue));
    println!("top customer-minutes by revenue:");
    for r in rows.iter().take(10) {
        println!(
            "  customer {:>5}  minute {}  {:>3} payments  {:>10.2}  ({} orders)",
            r.customer_id,
            EventTime(r.window_start),
            r.payments,
            r.revenue,
            r.orders
        );
    }
    let payments: i64 = rows.iter().map(|r| r.payments).sum();
    println!(
        "{} windows, {} payments, {} late rows; job took {:.2?}",
        rows.len(),
        payments,
        late.iter().map(|b| b.num_rows()).sum::<usize>(),
        result.duration
    );
    Ok(())
}

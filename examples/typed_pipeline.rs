//! The README's pipeline: Arrow-level filter and select, then typed rows keyed
//! by customer, written as JSON lines to `out/`.
//!
//!     cargo run --release --example typed_pipeline

use headwater::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    order_id: i64,
    customer_id: i64,
    event_type: String,
    amount: f64,
}

#[tokio::main]
async fn main() -> headwater::Result<()> {
    let env = StreamEnvironment::new().with_parallelism(4);
    // Arrow level: DataFusion expressions, evaluated on whole batches.
    let paid = env
        .source(OrdersSource::new(7).orders(100_000))
        .filter(col("event_type").eq(lit("payment.processed")))?
        .select(vec![
            col("order_id"),
            col("customer_id"),
            col("event_type"),
            col("amount"),
        ])?;
    // Typed level: serde rows and closures.
    paid.typed::<Order>()?
        .key_by(|o| o.customer_id)?
        .map(|o| Order {
            amount: o.amount * 0.9,
            ..o
        })?
        .sink(FileSink::json("out/"))?;
    let result = env.execute()?.wait().await?;
    println!(
        "{} rows written",
        result.metrics.operator("filesystem_sink").rows_in
    );
    Ok(())
}

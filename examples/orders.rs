//! The demo: a typed pipeline over the `orders` generator, at parallelism 2.
//!
//! Big payments are picked out of a paced, out-of-order stream of shop events,
//! keyed by customer, tagged, and printed as they come. Ctrl-C stops the job
//! gracefully; otherwise it ends after `--orders` orders (default 20,000).
//!
//!     cargo run --release --example orders -- --orders 20000 --rate 4000

use headwater::prelude::*;
use serde::{Deserialize, Serialize};

/// One event of the `orders` source (a subset of its columns, by name).
#[derive(Debug, Serialize, Deserialize)]
struct OrderEvent {
    event_id: String,
    event_type: String,
    order_id: i64,
    customer_id: i64,
    amount: f64,
    items: i32,
}

/// What the demo prints.
#[derive(Debug, Serialize, Deserialize)]
struct BigPayment {
    customer_id: i64,
    order_id: i64,
    amount: f64,
    items: i32,
    tier: String,
}

#[tokio::main]
async fn main() -> headwater::Result<()> {
    let (orders, rate) = parse_args();
    let env = StreamEnvironment::new()
        .with_parallelism(2)
        .with_name("orders-demo");

    env.source(
        OrdersSource::new(42)
            .orders(orders)
            .events_per_second(rate)
            .starting_now(),
    )
    .typed::<OrderEvent>()?
    .filter(|e| e.event_type == "payment.processed" && e.amount >= 1_000.0)?
    .key_by(|e| e.customer_id)?
    .map(|e| BigPayment {
        customer_id: e.customer_id,
        order_id: e.order_id,
        amount: e.amount,
        items: e.items,
        tier: if e.amount >= 2_000.0 {
            "gold".into()
        } else {
            "silver".into()
        },
    })?
    .sink(StdoutSink::table())?;

    eprintln!(
        "Running the orders demo at parallelism 2: {orders} orders at {rate} events/s. Ctrl-C stops it."
    );
    eprintln!("{}", env.explain());
    let job = env.execute()?;
    let stop = job.stop_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping...");
            stop.cancel();
        }
    });
    let result = job.wait().await?;
    let events = result.metrics.operator("orders").rows_out;
    let printed = result.metrics.operator("stdout").rows_in;
    eprintln!(
        "{} after {:.1}s: {events} events read, {printed} big payments printed.",
        if result.stopped {
            "Stopped"
        } else {
            "Finished"
        },
        result.duration.as_secs_f64()
    );
    Ok(())
}

fn parse_args() -> (u64, f64) {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    (
        value("--orders").unwrap_or(20_000.0) as u64,
        value("--rate").unwrap_or(4_000.0),
    )
}
